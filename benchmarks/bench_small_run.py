"""Small-run benchmark: headtune against the ways one would otherwise train a head on a frozen encoder.

On one stratified, seeded IMDb sample (4,000 train / 2,000 test by default), the same backbone and the
same settings, it runs in turn:

  seed-style      transformers Trainer, backbone frozen: the backbone re-runs every epoch and evaluation
  encode+sklearn  one length-sorted backbone pass, then scikit-learn LogisticRegression on the features
  headtune-cold   `headtune train` as a subprocess, with an empty feature cache
  headtune-warm   the same command again, features from the cache
  floor           one bare forward pass over exactly the batches headtune runs: the work nobody can skip

then prints a table and the targets, and writes benchmarks/results/small_run_<host>.{json,png}.
See benchmarks/README.md for how to read the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import _common as common
from headtune.cache import texts_digest
from headtune.config import LR_SCHEDULES, DataConfig, FeatureConfig, TrainConfig
from headtune.data import Splits, load_splits
from headtune.features import autocast_dtype, resolve_device, tokenize
from headtune.heads import HEADS, head_spec
from headtune.metrics import classification_metrics
from headtune.modeling import freeze_backbone

SYSTEMS = ("seed-style", "encode+sklearn", "headtune-cold", "headtune-warm", "floor")
# Systems timed as a fresh interpreter, as `headtune train` is: interpreter start, imports, reading the data
# and loading the model count for every end-to-end system alike. Only the floor is timed in-process.
IN_CHILD = ("seed-style", "encode+sklearn")
ACCURACY_SLACK = 0.01  # "within 1 point": headtune may be at most one percentage point less accurate


@dataclass(frozen=True)
class Settings:
    """What every system shares, so their numbers are comparable."""

    model: str
    dataset: str
    train_size: int
    test_size: int
    max_length: int
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str  # "linear" or "constant", in headtune and in Trainer alike
    seed: int
    device: str
    max_tokens_per_batch: int  # headtune's defaults: the floor must run headtune's batches
    shard_size: int
    pad_to_multiple_of: int
    sklearn_max_iter: int
    floor_repeats: int


@dataclass
class Result:
    system: str
    wall_s: float
    accuracy: float | None  # on the test sample; None for the floor, which trains nothing
    f1: float | None
    real_tokens: int | None  # token positions the backbone processed, without and with padding
    padded_tokens: int | None
    details: dict = field(default_factory=dict)


@dataclass
class SplitPlan:
    """One split as headtune's pass sees it: token ids, lengths, batches (text indices), width multiple."""

    ids: list[list[int]]
    lengths: np.ndarray
    batches: list[np.ndarray]
    multiple: int  # headtune's --pad-to-multiple-of


# --------------------------------------------------------------------------- arguments

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    train = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"Comma-separated subset of: {', '.join(SYSTEMS)} (default: all, in that order).")
    parser.add_argument("--model", default=None, help="Backbone folder or Hub name (default: the MiniLM package).")
    parser.add_argument("--dataset", default=str(common.IMDB_DIR), help="Dataset folder (default: %(default)s).")
    parser.add_argument("--train-size", type=int, default=None, help="Train sample size (default: small run, 4000).")
    parser.add_argument("--test-size", type=int, default=None, help="Test sample size (default: small run, 2000).")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=train.epochs)
    parser.add_argument("--batch-size", type=int, default=train.batch_size)
    parser.add_argument("--lr", type=float, default=train.lr)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=train.lr_schedule)
    parser.add_argument("--seed", type=int, default=train.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N, for every system.")
    parser.add_argument("--sklearn-max-iter", type=int, default=2000,
                        help="LogisticRegression max_iter; enough for lbfgs to converge on these features.")
    parser.add_argument("--floor-repeats", type=int, default=1,
                        help="Time the floor's pass this many times and keep the fastest (on a shared machine).")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--keep-headtune-output", type=Path, default=None,
                        help="Copy headtune cold/warm's output folder (model/, metrics.json, images/) here.")
    parser.add_argument("--child", choices=IN_CHILD, help=argparse.SUPPRESS)  # internal: one system, see run_in_child
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.systems = parse_systems(parser, args.systems)
    return args


def parse_systems(parser: argparse.ArgumentParser, text: str) -> list[str]:
    asked = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in SYSTEMS]
    if unknown or not asked:
        parser.error(f"--systems: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(SYSTEMS)}")
    if "headtune-warm" in asked and "headtune-cold" not in asked:
        parser.error("--systems: headtune-warm reads the cache headtune-cold fills; select both")
    return [s for s in SYSTEMS if s in asked]  # always the documented order: warm must follow cold


def make_settings(args: argparse.Namespace, sizes: tuple[int, int], device: torch.device) -> Settings:
    features = FeatureConfig().for_device(device.type)  # headtune's batching defaults on this device
    return Settings(model=args.model or common.minilm_path(), dataset=args.dataset, train_size=sizes[0],
                    test_size=sizes[1], max_length=args.max_length, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, lr_schedule=args.lr_schedule, seed=args.seed, device=str(device),
                    max_tokens_per_batch=features.max_tokens_per_batch, shard_size=features.shard_size,
                    pad_to_multiple_of=features.pad_to_multiple_of,
                    sklearn_max_iter=args.sklearn_max_iter, floor_repeats=args.floor_repeats)


# --------------------------------------------------------------------------- shared pieces of the systems

def load_frozen_classifier(s: Settings, num_labels: int):
    """Tokenizer, and a sequence-classification model with a fresh head and everything else frozen.

    Plain transformers loading, as a notebook does it; headtune's registry only names the head modules,
    so every system trains (or reads features for) the same head.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(s.model)
    torch.manual_seed(s.seed)  # the new head is initialised from the global RNG
    model, info = AutoModelForSequenceClassification.from_pretrained(s.model, num_labels=num_labels,
                                                                     output_loading_info=True)
    spec = head_spec(model, set(info.get("missing_keys", ())))
    freeze_backbone(model, spec)
    return model.to(s.device), tokenizer, spec


def check_feature_systems(s: Settings, systems: list[str]) -> None:
    """encode+sklearn and the floor read the features before the head: refuse before any slow work
    when headtune has no head mapping for this architecture (it would fall back to full-model training)."""
    from transformers import AutoConfig

    needs = [x for x in systems if x in ("encode+sklearn", "floor")]
    model_type = AutoConfig.from_pretrained(s.model).model_type if needs else None
    if needs and model_type not in HEADS:
        raise SystemExit(f"bench_small_run: {' and '.join(needs)} need headtune's cached-feature head mapping, "
                         f"which model type '{model_type}' lacks; leave them out with --systems")


def plan_split(tokenizer, texts: list[str], s: Settings, shard_size: int | None) -> SplitPlan:
    tok = tokenize(tokenizer, texts, s.max_length)
    lengths = np.array([len(ids) for ids in tok.ids])
    batches = common.headtune_batches(lengths, s.max_tokens_per_batch, shard_size, s.pad_to_multiple_of)
    return SplitPlan(tok.ids, lengths, batches, s.pad_to_multiple_of)


def score(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and F1 as headtune defines them (`headtune.metrics`), so every system is scored alike."""
    return classification_metrics(labels, predictions, num_labels)


# --------------------------------------------------------------------------- the systems

class TokenCounter:
    """Counts the token positions every model forward receives: real (attention mask) and padded."""

    def __init__(self, model: torch.nn.Module):
        self.real = self.padded = 0
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.padded += kwargs["input_ids"].numel()
        self.real += int(kwargs["attention_mask"].sum())


def run_seed_style(s: Settings, splits: Splits, work: Path) -> Result:
    """The notebook workflow: Trainer, frozen backbone, dynamic padding, evaluation every epoch.

    The backbone re-runs on every training batch (with dropout, as Trainer puts the model in train
    mode) and on every evaluation; that repeated work is what headtune's cached pass removes.
    """
    import datasets
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    class EvaluationLog(TrainerCallback):
        """One progress line per evaluation, instead of Trainer's dict dumps on stdout."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            common.log(f"seed-style: epoch {state.epoch or 0:g}: test accuracy {metrics['eval_accuracy']:.4f}")

    num_labels = len(splits.label_names)
    start = time.perf_counter()
    model, tokenizer, _ = load_frozen_classifier(s, num_labels)

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=s.max_length)

    data = {name: datasets.Dataset.from_dict({"text": split.texts, "label": split.labels.tolist()})
            .map(encode, batched=True) for name, split in (("train", splits.train), ("test", splits.test))}

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return score(prediction.label_ids, logits.argmax(-1), num_labels)

    args = TrainingArguments(
        output_dir=str(work / "seed-style"), eval_strategy="epoch", save_strategy="no", report_to="none",
        learning_rate=s.lr, lr_scheduler_type=s.lr_schedule, num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size, weight_decay=TrainConfig().weight_decay, seed=s.seed,
        use_cpu=s.device == "cpu", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["test"],
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[EvaluationLog()])
    trainer.remove_callback(PrinterCallback)  # present because disable_tqdm=True
    counter = TokenCounter(model)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    wall = time.perf_counter() - start
    counter.handle.remove()
    history = [{"epoch": e["epoch"], "accuracy": e["eval_accuracy"], "f1": e["eval_f1"]}
               for e in trainer.state.log_history if "eval_accuracy" in e]
    return Result("seed-style", wall, after["eval_accuracy"], after["eval_f1"], counter.real, counter.padded,
                  {"before": {"accuracy": before["eval_accuracy"], "f1": before["eval_f1"]}, "evaluations": history,
                   "lr_schedule": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))})


def run_encode_sklearn(s: Settings, splits: Splits) -> Result:
    """Encode once in length-sorted batches (no cache, so no shards), then LogisticRegression."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    num_labels = len(splits.label_names)
    start = time.perf_counter()
    model, tokenizer, spec = load_frozen_classifier(s, num_labels)
    dtype = autocast_dtype(model.device, "auto")  # headtune's default precision, so the features match
    passes = {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        plan = plan_split(tokenizer, split.texts, s, shard_size=None)
        # a user's own encode-once script: an ordinary full forward, in headtune's batches
        passes[name] = common.backbone_pass(model, common.plain(spec), plan.ids, plan.batches,
                                            tokenizer.pad_token_id or 0, dtype, plan.multiple)
    fit_start = time.perf_counter()
    classifier = LogisticRegression(max_iter=s.sklearn_max_iter, random_state=s.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(passes["train"].features.numpy(), splits.train.labels)
    predictions = classifier.predict(passes["test"].features.numpy())
    wall = time.perf_counter() - start
    metrics = score(splits.test.labels, predictions, num_labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return Result("encode+sklearn", wall, metrics["accuracy"], metrics["f1"],
                  sum(p.real_tokens for p in passes.values()), sum(p.padded_tokens for p in passes.values()),
                  {"backbone_seconds": sum(p.seconds for p in passes.values()),
                   "fit_and_predict_seconds": time.perf_counter() - fit_start, "lbfgs_iterations": int(
                       np.max(classifier.n_iter_)), "converged": converged})


def headtune_command(s: Settings, cache_dir: Path, output_dir: Path, overwrite: bool) -> list[str]:
    """The real CLI, in a fresh interpreter: its import and model-load costs count, as a user pays them."""
    command = [sys.executable, "-m", "headtune.cli", "train", "--dataset", s.dataset, "--model", s.model,
               "--train-size", str(s.train_size), "--test-size", str(s.test_size),
               "--max-length", str(s.max_length), "--epochs", str(s.epochs), "--batch-size", str(s.batch_size),
               "--lr", repr(s.lr), "--lr-schedule", s.lr_schedule, "--seed", str(s.seed), "--sample-seed", str(s.seed), "--device", s.device,
               "--max-tokens-per-batch", str(s.max_tokens_per_batch), "--shard-size", str(s.shard_size),
               "--pad-to-multiple-of", str(s.pad_to_multiple_of),
               "--cache-dir", str(cache_dir), "--output-dir", str(output_dir)]
    return command + (["--overwrite"] if overwrite else [])


def run_headtune(s: Settings, splits: Splits, work: Path, warm: bool) -> Result:
    system = "headtune-warm" if warm else "headtune-cold"
    cache_dir, output_dir = work / "headtune-cache", work / "headtune-output"
    command = headtune_command(s, cache_dir, output_dir, overwrite=warm)
    log_path = work / f"{system}.log"
    with open(log_path, "w") as log_file:
        start = time.perf_counter()
        # env passed explicitly: once this process has used the tokenizers library's thread pool, its fork
        # handler can set TOKENIZERS_PARALLELISM=false in a child, which would slow headtune's tokenizing.
        done = subprocess.run(command, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-15:]
        raise SystemExit(f"bench_small_run: {system} failed (exit {done.returncode}):\n" + "\n".join(tail))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    passes, timings = metrics["backbone_pass"], metrics["timings_s"]
    # Costs the floor (timed in-process) is not timed for, shown so that ratio can be read fairly:
    # outside headtune's own clock (metrics.json is written before the save finishes, so the save
    # cannot be told apart): interpreter start, imports, saving model/ and charts; and its "data"
    # stage: checking the model folder and reading and sampling the dataset.
    fixed = {"outside_headtune_clock_s": round(wall - timings["total_before_save"], 3),
             "data_stage_s": timings["data"]}
    return Result(system, wall, metrics["after"]["accuracy"], metrics["after"]["f1"],
                  sum(p["real_tokens"] for p in passes.values()), sum(p["padded_tokens"] for p in passes.values()),
                  {"command": shlex.join(command), "backbone_pass": passes, "timings_s": timings,
                   "costs_in_process_systems_skip": fixed,
                   "backbone_seconds": sum(p["seconds"] for p in passes.values()),
                   "same_texts": same_texts(cache_dir, splits), "history": metrics["history"],
                   "model_loaded": metrics["environment"]["model_loaded"]})


def same_texts(cache_dir: Path, splits: Splits) -> bool:
    """Whether headtune's cache holds exactly this benchmark's train and test texts (keys hash the texts)."""
    cached = {json.loads(p.read_text()).get("texts") for p in cache_dir.glob("*/key.json")}  # bodies: no texts
    return {texts_digest(splits.train.texts), texts_digest(splits.test.texts)} <= cached


def run_floor(s: Settings, splits: Splits, plans: dict[str, SplitPlan]) -> Result:
    """Only the forward loop over headtune's batches is timed: model loaded, texts tokenized beforehand."""
    model, tokenizer, spec = load_frozen_classifier(s, len(splits.label_names))
    spec = common.plain(spec)  # the bare forward of the whole backbone, which headtune's pass trims
    dtype, pad_id = autocast_dtype(model.device, "auto"), tokenizer.pad_token_id or 0
    # One untimed batch first: the first forward pays one-off setup (kernel choice, allocator pools)
    # that is not backbone work.
    common.backbone_pass(model, spec, plans["train"].ids, plans["train"].batches[:1], pad_id, dtype,
                         plans["train"].multiple)
    runs = []
    for _ in range(s.floor_repeats):  # the fastest pass is the floor; the others only show the noise
        passes = {name: common.backbone_pass(model, spec, p.ids, p.batches, pad_id, dtype, p.multiple)
                  for name, p in plans.items()}
        runs.append(passes)
    seconds = [sum(p.seconds for p in passes.values()) for passes in runs]
    passes = runs[int(np.argmin(seconds))]
    return Result("floor", min(seconds), None, None,
                  sum(p.real_tokens for p in passes.values()), sum(p.padded_tokens for p in passes.values()),
                  {"batches": sum(p.batches for p in passes.values()), "seconds_per_repeat": seconds})


# --------------------------------------------------------------------------- reading the results

def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def check_targets(results: dict[str, Result]) -> list[dict]:
    """The goals headtune is held to; a target whose systems did not run is reported as skipped."""
    cold = results.get("headtune-cold")

    def target(name: str, needs: str, value, limit: float, passes) -> dict:
        ran = cold is not None and needs in results
        ok = bool(passes(value)) if ran and value is not None else None
        return {"target": name, "value": value if ran else None, "limit": limit, "passed": ok}

    def get(system: str, attr: str):
        return getattr(results[system], attr) if system in results else None

    def accuracy_gap(system: str):  # headtune minus the other, in points; may be positive
        return None if cold is None or system not in results else 100 * (cold.accuracy - get(system, "accuracy"))

    wall = cold.wall_s if cold else None
    return [
        target("headtune cold >= 4x faster than seed-style", "seed-style",
               ratio(get("seed-style", "wall_s"), wall), 4.0, lambda v: v >= 4.0),
        target("headtune cold accuracy >= seed-style - 1 point", "seed-style",
               accuracy_gap("seed-style"), -100 * ACCURACY_SLACK, lambda v: v >= -100 * ACCURACY_SLACK),
        target("headtune cold <= 1.0x encode+sklearn time", "encode+sklearn",
               ratio(wall, get("encode+sklearn", "wall_s")), 1.0, lambda v: v <= 1.0),
        target("headtune cold accuracy >= encode+sklearn - 1 point", "encode+sklearn",
               accuracy_gap("encode+sklearn"), -100 * ACCURACY_SLACK, lambda v: v >= -100 * ACCURACY_SLACK),
        target("headtune cold <= 1.10x floor", "floor", ratio(wall, get("floor", "wall_s")), 1.10, lambda v: v <= 1.10),
        target("headtune warm <= 5% of cold", "headtune-warm",
               ratio(get("headtune-warm", "wall_s"), wall), 0.05, lambda v: v <= 0.05),
        target("headtune padded tokens <= 1.05x real", "headtune-cold",
               ratio(get("headtune-cold", "padded_tokens"), get("headtune-cold", "real_tokens")), 1.05,
               lambda v: v <= 1.05),
    ]


def throughput(results: dict[str, Result], plans: dict[str, SplitPlan] | None, flops: common.EncoderFlops | None
               ) -> dict:
    """Achieved backbone GFLOP/s of the floor and of headtune cold's pass (padded = work done, real = useful)."""
    if plans is None or flops is None:
        return {}
    seconds = {"floor": getattr(results.get("floor"), "wall_s", None),
               "headtune-cold": results["headtune-cold"].details["backbone_seconds"]
               if "headtune-cold" in results else None}
    out = {"model": flops.describe()}
    for system, secs in seconds.items():
        trimmed = system == "headtune-cold"  # its last layer runs the first token only
        work = {"real": sum(flops.real(p.lengths, trimmed) for p in plans.values()),
                "padded": sum(flops.padded(p.lengths, p.batches, trimmed, p.multiple) for p in plans.values())}
        if secs:
            out[system] = {"backbone_seconds": round(secs, 3), "gflop": {k: round(v / 1e9, 1) for k, v in work.items()},
                           "gflops_padded": round(work["padded"] / secs / 1e9, 2),
                           "gflops_real": round(work["real"] / secs / 1e9, 2)}
    return out


def format_table(results: dict[str, Result]) -> str:
    cold = results.get("headtune-cold")

    def cell(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = f"{'system':<16}{'wall s':>10}{'x cold':>8}{'accuracy':>10}{'F1':>8}{'real tokens':>14}{'padded tokens':>15}"
    rows = [header, "-" * len(header)]
    for r in results.values():
        rows.append(f"{r.system:<16}{r.wall_s:>10.2f}{cell(ratio(r.wall_s, cold and cold.wall_s), '.2f'):>8}"
                    f"{cell(r.accuracy, '.4f'):>10}{cell(r.f1, '.4f'):>8}"
                    f"{cell(r.real_tokens, ',d'):>14}{cell(r.padded_tokens, ',d'):>15}")
    return "\n".join(rows)


def format_fixed_costs(results: dict[str, Result]) -> str:
    """What headtune cold's time includes and the floor's does not: read before comparing with it."""
    cold = results.get("headtune-cold")
    if cold is None:
        return ""
    c = cold.details["costs_in_process_systems_skip"]
    return (f"headtune cold's time includes {sum(c.values()):.1f} s the floor is not timed for: "
            f"{c['outside_headtune_clock_s']:.1f} s interpreter start, imports and saving model/, "
            f"{c['data_stage_s']:.1f} s checking the model folder and reading the dataset")


def format_targets(targets: list[dict]) -> str:
    rows = ["targets"]
    for t in targets:
        status = {True: "PASS", False: "FAIL", None: "skip"}[t["passed"]]
        value = "not run" if t["value"] is None else f"{t['value']:.3g}"
        rows.append(f"  {status}  {t['target']}: {value} (limit {t['limit']:g})")
    return "\n".join(rows)


def format_throughput(rates: dict) -> str:
    rows = [f"backbone throughput (FLOPs: {rates['model']['formula']})"] if rates else []
    for system in ("floor", "headtune-cold"):
        if system in rates:
            r = rates[system]
            rows.append(f"  {system:<14} {r['gflops_padded']:8.2f} GFLOP/s done, {r['gflops_real']:8.2f} useful "
                        f"({r['backbone_seconds']:.2f} s backbone)")
    return "\n".join(rows)


def bar_chart(results: dict[str, Result], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    names = list(results)
    walls = [results[n].wall_s for n in names]
    cold = results.get("headtune-cold")
    colors = ["#2f6db5" if n.startswith("headtune") else "#4d4d4d" if n == "floor" else "#9aa5b1" for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.6), dpi=120)
    bars = ax.barh(names, walls, color=colors)
    ax.invert_yaxis()  # first system on top, as in the printed table
    labels = [(f"{w:,.0f} s" if w >= 100 else f"{w:.1f} s")
              + (f"  ({w / cold.wall_s:.3g}x cold)" if cold and n != "headtune-cold" else "")
              for n, w in zip(names, walls)]
    ax.bar_label(bars, labels, padding=4, fontsize=9)
    # warm runs are seconds and seed-style runs can be an hour: only a log axis shows both
    log_axis = max(walls) / max(min(walls), 1e-9) > 20
    if log_axis:
        ax.set_xscale("log")
        ax.set_xlim(min(walls) / 2, max(walls) * 12)  # room for the label right of the longest bar
    else:
        ax.set_xlim(0, max(walls) * 1.35)
    ax.set_xlabel("wall seconds" + (" (log scale)" if log_axis else "") + ", lower is better")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def run_systems(s: Settings, splits: Splits, systems: list[str], plans: dict[str, SplitPlan] | None,
                argv: list[str], keep: Path | None = None) -> dict[str, Result]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="headtune-bench-") as tmp:
        work = Path(tmp)
        runners = {"seed-style": lambda: run_in_child("seed-style", argv, work),
                   "encode+sklearn": lambda: run_in_child("encode+sklearn", argv, work),
                   "headtune-cold": lambda: run_headtune(s, splits, work, warm=False),
                   "headtune-warm": lambda: run_headtune(s, splits, work, warm=True),
                   "floor": lambda: run_floor(s, splits, plans)}
        for system in systems:
            load = common.load_average()
            common.log(f"{system}: running (1-min load average {load})")
            results[system] = runners[system]()
            results[system].details["load_average_at_start"] = load
            common.log(f"{system}: {results[system].wall_s:.1f} s")
        if keep is not None and (work / "headtune-output").is_dir():
            shutil.copytree(work / "headtune-output", keep, dirs_exist_ok=True)
    return results


def run_in_child(system: str, argv: list[str], work: Path) -> Result:
    """Run one system in a fresh interpreter (this script with --child) and time the whole process."""
    result_path = work / f"{system}.result.json"
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", system,
               "--child-result", str(result_path)]
    start = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_small_run: {system} failed (exit {done.returncode})")
    result = Result(**json.loads(result_path.read_text()))
    result.details["in_process_s"] = result.wall_s  # from model load to the last prediction
    result.details["command"] = shlex.join(command)
    result.wall_s = wall
    return result


def run_child(args: argparse.Namespace, s: Settings, splits: Splits) -> int:
    """--child: run one system here and leave its Result for the parent, which times this process."""
    work = Path(tempfile.mkdtemp(prefix="headtune-bench-child-"))
    result = run_seed_style(s, splits, work) if args.child == "seed-style" else run_encode_sklearn(s, splits)
    args.child_result.write_text(json.dumps(asdict(result)))
    return 0


def plan_headtune_pass(s: Settings, splits: Splits) -> tuple[dict[str, SplitPlan], common.EncoderFlops]:
    """Headtune's tokens and batches for both splits (untimed), for the floor and the FLOP counts."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(s.model)
    plans = {name: plan_split(tokenizer, split.texts, s, s.shard_size)
             for name, split in (("train", splits.train), ("test", splits.test))}
    return plans, common.EncoderFlops.from_config(AutoConfig.from_pretrained(s.model))


def plan_check(results: dict[str, Result], plans: dict[str, SplitPlan] | None) -> bool | None:
    """Whether the floor's batches hold exactly the padded tokens headtune reported for its own pass."""
    if plans is None or "headtune-cold" not in results:
        return None
    planned = sum(common.padded_tokens(p.lengths, p.batches, p.multiple) for p in plans.values())
    return planned == results["headtune-cold"].padded_tokens


def model_label(model: str) -> str:
    """A short name for chart titles: the folder, or its parent when the folder is just called `model`."""
    path = Path(model)
    if not path.exists():
        return model  # a Hub name
    path = path.resolve()
    return path.parent.name if path.name == "model" else path.name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.quiet_libraries()
    device = resolve_device(args.device)
    data_cfg = DataConfig(dataset=args.dataset, small_run=True, train_size=args.train_size, test_size=args.test_size,
                          sample_seed=args.seed)
    splits = load_splits(data_cfg)  # the one sample every system sees; headtune draws the same one
    # sizes as drawn (--small-run caps them at a split's size), passed to headtune explicitly
    s = make_settings(args, (len(splits.train.texts), len(splits.test.texts)), device)
    if args.child:
        return run_child(args, s, splits)
    check_feature_systems(s, args.systems)
    needs_plan = {"floor", "headtune-cold"} & set(args.systems)
    plans, flops = plan_headtune_pass(s, splits) if needs_plan else (None, None)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    child_argv = [a for a in (sys.argv[1:] if argv is None else argv)]
    results = run_systems(s, splits, args.systems, plans, child_argv, args.keep_headtune_output)
    targets = check_targets(results)
    rates = throughput(results, plans, flops)
    matches = plan_check(results, plans)

    print(format_table(results))
    print()
    if "headtune-cold" in results:
        print(format_fixed_costs(results))
        print()
    print(format_targets(targets))
    if rates:
        print()
        print(format_throughput(rates))
    if matches is False:
        print("\nWARNING: the floor's batches differ from headtune's pass (padded tokens disagree); "
              "check that the benchmark passes headtune's --max-tokens-per-batch and --shard-size")
    if any(r.details.get("same_texts") is False for r in results.values()):
        print("\nWARNING: headtune trained on other texts than the benchmark's sample; the comparison is void")

    host = common.host_kind(device)
    title = (f"{model_label(s.model)} head-only on IMDb {s.train_size:,}/{s.test_size:,}, max length {s.max_length}, "
             f"{s.epochs} epochs, {host}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out_dir / f"small_run_{host}.json", args.out_dir / f"small_run_{host}.png"
    bar_chart(results, title, png_path)
    common.write_json(json_path, {
        "benchmark": "small_run", "started_utc": started, "command": shlex.join([sys.executable, *sys.argv]),
        "host_kind": host, "environment": common.environment(device), "settings": asdict(s),
        "systems": list(results), "results": {k: asdict(v) for k, v in results.items()},
        "ratio_to_headtune_cold": {k: ratio(v.wall_s, results["headtune-cold"].wall_s) for k, v in results.items()}
        if "headtune-cold" in results else {},
        "targets": targets, "throughput": rates, "floor_batches_match_headtune": matches,
        "chart": png_path.name})
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
