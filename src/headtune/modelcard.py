"""model/README.md: a Hugging Face model card for the trained folder, from the run's metrics."""
from __future__ import annotations

import json

from . import hub
from .config import KEPT_END


def _yaml_list(items) -> str:
    return "".join(f"\n- {json.dumps(item)}" for item in items)


def _usage(settings: dict) -> str:
    remote = settings["loading"] == "trust_remote_code"
    trust = ", trust_remote_code=True" if remote else ""
    return (
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="path/to/model", top_k=None{trust})\n'
        "# truncation=True cuts a long text as training did (to the tokenizer's model_max_length, on its side);\n"
        "# without it the pipeline cuts nothing: other probabilities, or an error past the encoder's positions\n"
        'classifier("Put the text to classify here.", truncation=True)\n'
        "```\n\n"
        + ("This folder holds headtune's small modeling file (`modeling_headtune.py`: the backbone, "
           f"{settings['pooling']} pooling over its last hidden states, a linear classifier), so transformers "
           "loads it with `trust_remote_code=True`. `headtune predict --model path/to/model TEXT` loads it "
           "without running code from the folder.\n" if remote else
           "It is an ordinary transformers checkpoint: `AutoModelForSequenceClassification.from_pretrained` "
           "loads it as is. `headtune predict --model path/to/model TEXT` works too.\n"))


def model_card(metrics: dict, settings: dict, parameters: dict) -> str:
    """The card's text: YAML front matter (library, pipeline tag, base model, datasets, measured metrics,
    tags), how the head was trained, before/after results and a usage snippet that loads this folder."""
    config, names = metrics["config"], metrics["metric_names"]
    base, dataset = settings["base_model"], settings["data"]["dataset"]
    after, before = metrics["after"], metrics["before"]
    front = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    if not hub.looks_local(base):
        front.append(f"base_model: {json.dumps(base)}")
    if not hub.looks_local(dataset):
        front.append(f"datasets:{_yaml_list([dataset])}")
    front.append("tags:" + _yaml_list(["headtune", "text-classification", "frozen-backbone",
                                      metrics["task"].replace("_", "-")]))
    front.append("metrics:" + _yaml_list(["accuracy", "f1"]))
    front.append("model-index:\n- name: " + json.dumps(base.rstrip("/").split("/")[-1] + "-headtune")
                 + "\n  results:\n  - task:\n      type: text-classification\n    dataset:\n      name: "
                 + json.dumps(dataset) + "\n      type: " + json.dumps(dataset) + "\n      split: test\n    metrics:"
                 + f"\n    - type: accuracy\n      value: {after['accuracy']:.4f}"
                 + "\n      name: " + json.dumps(f"test {names['accuracy']}")  # F1 (yes: good): quoted
                 + f"\n    - type: f1\n      value: {after['f1']:.4f}\n      name: " + json.dumps(f"test {names['f1']}"))
    front.append("---")
    data = metrics["data"]
    if data.get("folds"):
        validation = (f"{data['folds']}-fold cross-validation of the training texts (the choices below on "
                      f"out-of-fold scores; the saved head then trained on all of them)")
    else:
        validation = (f"{data['validation']:,} validation texts ("
                      + ("held out of the training sample" if data["validation_source"] == "train"
                         else "the dataset's own") + ")") if data["validation"] else "no validation split"
    lr = metrics["lr"]
    grid = ", ".join(f"{row['lr']:g}" for row in lr["sweep"])
    chosen_by = "micro F1" if lr.get("chosen_by") == "f1" else "accuracy"
    held = "out-of-fold" if data.get("folds") else "validation"
    kept_by = f"by the best {held} {chosen_by}" if config["train"]["keep"] == "best" and \
        (data["validation"] or data.get("folds")) else "the last epoch"
    lr_text = f"{lr['chosen']:g}, chosen on the {held} scores from {grid}" if lr["mode"] == "auto" \
        else f"{lr['chosen']:g}"
    calibration = metrics.get("calibration") or {}
    lines = [
        "\n".join(front), "",
        f"# {base.rstrip('/').split('/')[-1]} head-only classifier",
        "",
        f"A text classifier trained with [headtune](https://pypi.org/project/headtune/): the pretrained encoder "
        f"`{base}` stays frozen and only a classification head is trained, on features from one backbone pass.",
        "",
        "## Training",
        "",
        f"- Backbone: `{base}`{_cut(config['model'].get('depth'), metrics.get('depth'))}, frozen "
        f"({parameters['frozen']:,} parameters).",
        f"- Head: {', '.join(parameters['head_modules'])} ({parameters['trainable']:,} trainable parameters).",
        f"- Pooling: {metrics['pooling']} (the head reads `{parameters['feature_point']}`).",
        f"- Labels ({len(metrics['labels'])}): {', '.join(metrics['labels'][:20])}"
        + (", ..." if len(metrics['labels']) > 20 else "") + ".",
        f"- Data: `{dataset}`, {data['train']:,} training texts, {validation}, {data['test']:,} test texts; "
        f"texts truncated to {config['model']['max_length']} tokens, keeping their "
        f"{KEPT_END[config['model'].get('truncation_side', 'right')]}.",
        f"- Epochs: {config['train']['epochs']} (kept: epoch {metrics['kept_epoch']}, {kept_by}), "
        f"batch size {config['train']['batch_size']}, AdamW, learning rate {lr_text}, "
        f"{config['train']['lr_schedule']} schedule, class weights {config['train']['class_weight']}, "
        f"seed {config['train']['seed']}"
        + ("; trained on features centred on the training mean, folded into the first layer's bias." if
           metrics.get("centred") else "."),
    ]
    passed = metrics.get("environment", {}).get("autocast", "fp32")
    if passed == "torch.qint8":  # the folder cannot hold the quantized backbone's features: say whose figures these are
        lines.append("- Backbone pass: int8 (`--precision int8`, dynamic quantization of its Linear layers). This "
                     "folder holds the fp32 backbone, whose features differ a little: loaded from here, the model "
                     "scores somewhat otherwise than the results below, which were measured on the int8 features.")
    elif passed != "fp32":
        lines.append(f"- Backbone pass: {passed.removeprefix('torch.')} autocast (the results below were measured "
                     f"on those features; this folder holds fp32 weights).")
    if calibration.get("temperature"):
        lines.append(f"- Calibration: temperature {calibration['temperature']:.3f} fitted on the {held} scores and "
                     f"folded into the final layer (test ECE {calibration['ece_before']:.4f} -> "
                     f"{calibration['ece_after']:.4f}).")
    if metrics.get("threshold") is not None:
        lines.append(f"- Decision threshold: {metrics['threshold']:.2f} per label.")
    lines += ["", "## Results (test split)", "",
              f"| | {names['accuracy']} | {names['f1']} |", "|---|---|---|",
              f"| before training (random head) | {before['accuracy']:.4f} | {before['f1']:.4f} |",
              f"| after training | **{after['accuracy']:.4f}** | **{after['f1']:.4f}** |", "",
              "## Usage", "", _usage(settings)]
    return "\n".join(lines)


def _cut(depth: int | str | None, choice: dict | None) -> str:
    """--depth N (or auto's choice): the saved model is the backbone's first layers only."""
    if not isinstance(depth, int):
        return ""
    if choice and depth == choice["layers"]:
        return f", read at its last layer (chosen by {choice['chosen_by']})"
    cut = ", cut to its first layer" if depth == 1 else f", cut to its first {depth} layers"
    return cut + (f" (of {choice['layers']}, chosen by {choice['chosen_by']})" if choice else "")
