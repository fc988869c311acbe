"""The saved model: the pretrained model's frozen body plus the trained head, as a checkpoint folder
that transformers loads.

Two kinds of folder, chosen by what the head reads (architectures.Reading):
- ordinary: the architecture's own `...ForSequenceClassification` expresses the reading, so the folder is
  what `save_pretrained` writes (config.json, model.safetensors, tokenizer files), tensor for tensor;
- pooled: a reading the class cannot express (mean pooling on BERT, say). The folder then holds
  headtune's small modeling file (pooled_model.py, copied as modeling_headtune.py) and names it in
  config.json's `auto_map`: transformers loads it with `trust_remote_code=True`; headtune loads it with
  its own copy of that file and runs no code from the folder.

The body (every weight outside the new head) is the same in every run on a model, so the run that
loads the model stores it in the cache beside the features; a later run whose features and body are
both cached writes its checkpoint from there, without loading the model.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .architectures import Family, HeadPlan
from .architectures.parts import Chain
from .cache import FeatureCache, cache_key
from .config import FeatureConfig
from .modeling import ConfigView

BODY_FILE = "body.safetensors"
TOKENIZER_FILE = "tokenizer.safetensors"  # the tokenizer's saved files, as bytes
TOKENIZER_CONFIG = "tokenizer_config.json"  # written by every tokenizer's save_pretrained
MODELING_FILE = "modeling_headtune.py"
POOLED_CLASS = "HeadtunePooledForSequenceClassification"
AUTO_MAP = {"AutoConfig": "modeling_headtune.HeadtunePooledConfig",
            "AutoModelForSequenceClassification": f"modeling_headtune.{POOLED_CLASS}"}


@dataclass
class Body:
    """Everything a checkpoint needs besides the trained head, and all of it without transformers."""

    tensors: dict[str, torch.Tensor]  # the classification model's state dict without its new head's keys
    architecture: str  # the model class config.json names, e.g. "BertForSequenceClassification"
    parameters: int  # frozen parameters (buffers in the state dict are not parameters)
    config: ConfigView  # the backbone's config, every value (heads are built from it)
    template: dict  # the backbone config as save_pretrained writes it (only what differs from the defaults)
    tokenizer_files: dict[str, bytes]  # the tokenizer as save_tokenizer writes it
    max_positions: int  # the longest input the model and tokenizer take


def own_head_keys(family: Family, config) -> set[str]:
    """The keys of the new head parts of the family's own class (built on the meta device: no memory; the
    names do not depend on the number of labels)."""
    with torch.device("meta"):
        return set(Chain(family.new_head(config, 2)).state_dict())


def body_of(model: nn.Module, family: Family, tokenizer=None, max_positions: int = 0) -> Body:
    """The loaded model's body; with the tokenizer, all a later run needs to write a checkpoint without it."""
    new = own_head_keys(family, model.config)
    # on the host: the cache's checksum reads the bytes, and the checkpoint is written from host memory
    tensors = {k: v.cpu() for k, v in model.state_dict().items() if k not in new}
    frozen = sum(p.numel() for name, p in model.named_parameters() if name not in new)
    template = {k: v for k, v in model.config.to_diff_dict().items() if k not in LABELLED}
    files = {}
    if tokenizer is not None:
        with tempfile.TemporaryDirectory() as folder:
            save_tokenizer(tokenizer, Path(folder))
            files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
    return Body(tensors, type(model).__name__, frozen, ConfigView.of(model.config), template, files, max_positions)


# config keys a run sets itself: labels, problem type, class, dtype (and what the backbone's own run recorded)
LABELLED = ("id2label", "label2id", "problem_type", "architectures", "dtype", "torch_dtype", "_name_or_path",
            "auto_map")


def body_cache(cfg: FeatureConfig, identity: dict) -> FeatureCache | None:
    """The cache entry of a model's body: keyed by the weights' identity alone (not the texts)."""
    if cfg.no_cache:
        return None
    parts = {**identity, "content": "checkpoint body"}
    return FeatureCache(cfg.cache_dir, cache_key(parts), parts)


def load_body(cache: FeatureCache | None) -> Body | None:
    found = cache.read(cache.folder / BODY_FILE) if cache else None
    files = cache.read(cache.folder / TOKENIZER_FILE) if found else None
    if found is None or files is None:
        return None
    tensors, meta = found
    return Body(tensors, meta["architecture"], int(meta["parameters"]),
                ConfigView(json.loads(meta["config"]), json.loads(meta["attribute_map"])),
                json.loads(meta["template"]), {name: t.numpy().tobytes() for name, t in files[0].items()},
                int(meta["max_positions"]))


def save_body(cache: FeatureCache, body: Body) -> None:
    cache.write(cache.folder / TOKENIZER_FILE, {name: torch.frombuffer(bytearray(data), dtype=torch.uint8)
                                                for name, data in body.tokenizer_files.items()})
    cache.write(cache.folder / BODY_FILE, body.tensors,
                {"architecture": body.architecture, "parameters": str(body.parameters),
                 "config": json.dumps(body.config.to_dict()), "attribute_map": json.dumps(body.config.attribute_map),
                 "template": json.dumps(body.template), "max_positions": str(body.max_positions)})


def _dtype(body: Body) -> str:
    dtype = next((t.dtype for t in body.tensors.values() if t.is_floating_point()), torch.float32)
    return str(dtype).removeprefix("torch.")


def _labels(label_names: list[str], problem_type: str) -> dict:
    return {"id2label": {str(i): name for i, name in enumerate(label_names)},
            "label2id": {name: i for i, name in enumerate(label_names)}, "problem_type": problem_type}


def ordinary_config(plan: HeadPlan, label_names: list[str], body: Body, problem_type: str) -> dict:
    """config.json of an ordinary checkpoint: the backbone's, as save_pretrained writes it, as its classifier's
    (labels, problem type, architecture, dtype, and what the class needs for the reading)."""
    return {**body.template, **plan.reading.class_config, **_labels(label_names, problem_type),
            "architectures": [body.architecture], "dtype": _dtype(body)}


def pooled_config(plan: HeadPlan, label_names: list[str], body: Body, problem_type: str) -> dict:
    """config.json of headtune's pooled model (pooled_model.HeadtunePooledConfig, as save_pretrained writes it)."""
    encoder = {k: v for k, v in body.config.to_dict().items() if k not in LABELLED}
    return {"architectures": [POOLED_CLASS], "auto_map": dict(AUTO_MAP),
            "classifier_dropout": plan.family.dropout(body.config), "dtype": _dtype(body), "encoder": encoder,
            **_labels(label_names, problem_type), "model_type": "headtune_pooled", "pooling": plan.reading.pooling,
            "transformers_version": body.template.get("transformers_version")}


def pooled_state(body: Body, plan: HeadPlan) -> dict[str, torch.Tensor]:
    """The body under headtune's pooled model's names: the backbone's weights as `backbone.*`; the family's
    pretrained head parts (BERT's pooler, ...) are left out, since the pooled model reads no pooler."""
    family = plan.family
    dropped = set()
    if family.pretrained is not None:
        with torch.device("meta"):
            dropped = set(Chain(family.pretrained(body.config)).state_dict())
    prefix = family.prefix + "."
    state = {}
    for key, tensor in body.tensors.items():
        if key in dropped:
            continue
        if not key.startswith(prefix):  # never expected: a family whose body has weights outside its backbone
            raise ValueError(f"weight {key} is outside the {family.name} backbone '{family.prefix}'")
        state["backbone." + key[len(prefix):]] = tensor
    return state


def save_checkpoint(folder: Path, body: Body, head: nn.Module, plan: HeadPlan, label_names: list[str],
                    problem_type: str, max_length: int, truncation_side: str) -> None:
    """Write body + trained head + config + tokenizer as a checkpoint folder (ordinary or pooled); from the
    body alone, so the same files come out whether or not this run loaded the model. The tokenizer cuts texts
    to `max_length` tokens from `truncation_side`, as this run's did (see tokenizer_config_of_run)."""
    folder.mkdir(parents=True, exist_ok=True)
    head_state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    if plan.reading.own_head:
        # pretrained head parts that trained (--train-pretrained-head) replace their frozen copies in the body
        state = {k: v for k, v in body.tensors.items() if k not in head_state}
        config = ordinary_config(plan, label_names, body, problem_type)
    else:
        state = pooled_state(body, plan)
        config = pooled_config(plan, label_names, body, problem_type)
        shutil.copyfile(Path(__file__).with_name("pooled_model.py"), folder / MODELING_FILE)
    overlap = set(head_state) & set(state)
    if overlap:  # a head key in the body would be silently replaced; never expected
        raise ValueError(f"head keys also in the model body: {sorted(overlap)}")
    save_file({k: v.contiguous() for k, v in {**state, **head_state}.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    # as transformers writes config.json (PreTrainedConfig.to_json_file)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name, data in body.tokenizer_files.items():
        if name == TOKENIZER_CONFIG:
            data = tokenizer_config_of_run(data, max_length, truncation_side)
        (folder / name).write_bytes(data)


def tokenizer_config_of_run(tokenizer_config: bytes, max_length: int, side: str) -> bytes:
    """tokenizer_config.json cutting texts as the run did: `model_max_length` is the run's --max-length (what
    `pipeline(..., truncation=True)` cuts to when given no max_length) and `truncation_side` its side. The body
    is cached per model, not per run: its tokenizer files hold the settings of whichever run stored it."""
    values = json.loads(tokenizer_config)
    values["model_max_length"], values["truncation_side"] = max_length, side
    # as transformers writes it (PreTrainedTokenizerBase.save_pretrained): unchanged settings, unchanged bytes
    return (json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save the tokenizer without the truncation and padding of its last call, which a fast tokenizer's
    tokenizer.json would otherwise record: the same tokenizer then saves the same files in every run."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(folder)
