"""Small-run benchmark: headtune against the ways one would otherwise train a head on a frozen encoder.

On one stratified, seeded IMDb sample (4,000 train / 2,000 test by default), the same backbone and the
same settings, it runs in turn:

  seed-style      transformers Trainer, backbone frozen: the backbone re-runs every epoch and evaluation
  encode+sklearn  one length-sorted full forward pass (headtune's pooling), then scikit-learn LogisticRegression
  headtune-cold   `python -m headtune train` with its defaults, as a subprocess, with an empty feature cache
  headtune-warm   the same command again, features and model body from the cache
  floor           one bare full forward pass over exactly the batches headtune runs: the work nobody can skip

then prints a table, headtune's stages, the targets, and writes benchmarks/results/small_run_<host>.{json,png}.
See benchmarks/README.md for how to read the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import _common as common
from headtune.cache import texts_digest
from headtune.config import LR_SCHEDULES, DataConfig, FeatureConfig, TrainConfig
from headtune.data import Splits, load_splits
from headtune.features import autocast_dtype, resolve_device
from headtune.metrics import classification_metrics

SYSTEMS = ("seed-style", "encode+sklearn", "headtune-cold", "headtune-warm", "floor")
# Systems timed as a fresh interpreter, as `headtune train` is: interpreter start, imports, reading the data
# and loading the model count for every end-to-end system alike. Only the floor is timed in-process.
IN_CHILD = ("seed-style", "encode+sklearn")
ACCURACY_SLACK = 0.01  # "within 1 point": headtune may be at most one percentage point less accurate
SEED_STYLE_LR = 3e-2  # headtune's fixed rate before --lr auto (chosen by tune_head.py); Trainer needs one rate
WARM_LIMIT = {"cpu": 0.05, "cuda": 0.25}  # the issue's "warm <= x of cold", per device
WARM_SECONDS = 5.0  # the CPU target "warm run <= 5 s"


@dataclass(frozen=True)
class Settings:
    """What every system shares, so their numbers are comparable."""

    model: str
    dataset: str
    train_size: int  # the training sample (headtune cross-validates on it, then trains on all of it)
    test_size: int
    max_length: int
    epochs: int
    batch_size: int
    seed: int  # the sample's seed (headtune's --sample-seed) and seed-style's / LogisticRegression's seed
    seed_style_lr: float
    seed_style_lr_schedule: str
    device: str
    pooling: str  # what headtune's --pooling auto reads for this model; encode+sklearn and the floor read it too
    trimmed: bool  # headtune's own pass runs the last layer for the first token only (the cls reading)
    max_tokens_per_batch: int  # headtune's defaults on the device: the floor runs headtune's batches
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
    parser.add_argument("--seed", type=int, default=DataConfig().sample_seed,
                        help="Seed of the sample (headtune's --sample-seed), of seed-style and of LogisticRegression.")
    parser.add_argument("--seed-style-lr", type=float, default=SEED_STYLE_LR,
                        help="seed-style's learning rate (Trainer trains one rate; headtune runs --lr auto).")
    parser.add_argument("--seed-style-lr-schedule", choices=LR_SCHEDULES, default=train.lr_schedule,
                        help="seed-style's lr_scheduler_type (default: linear, Trainer's default).")
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
    from transformers import AutoConfig

    model = args.model or common.minilm_path()
    features = FeatureConfig().for_device(device.type)  # headtune's batching defaults on this device
    plan = common.head_plan(AutoConfig.from_pretrained(model), model)
    return Settings(model=model, dataset=args.dataset, train_size=sizes[0], test_size=sizes[1],
                    max_length=args.max_length, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                    seed_style_lr=args.seed_style_lr, seed_style_lr_schedule=args.seed_style_lr_schedule,
                    device=str(device), pooling=plan.reading.name, trimmed=common.trimmed(plan),
                    max_tokens_per_batch=features.max_tokens_per_batch, shard_size=features.shard_size,
                    pad_to_multiple_of=features.pad_to_multiple_of,
                    sklearn_max_iter=args.sklearn_max_iter,
                    floor_repeats=args.floor_repeats)


def feature_config(s: Settings) -> FeatureConfig:
    return FeatureConfig(max_tokens_per_batch=s.max_tokens_per_batch, shard_size=s.shard_size,
                         pad_to_multiple_of=s.pad_to_multiple_of)


def load_sample(dataset: str, train_size: int | None, test_size: int | None, seed: int,
                headtune_view: bool = False) -> Splits:
    """The small-run sample: the whole training sample, what seed-style and encode+sklearn train on, without
    validation; or headtune's view of the same rows with its default validation (5 folds of all of them)."""
    validation = {} if headtune_view else {"val_fraction": 0.0}
    return load_splits(DataConfig(dataset=dataset, small_run=True, train_size=train_size, test_size=test_size,
                                  sample_seed=seed, **validation))


def score(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and F1 as headtune defines them (`headtune.metrics`), so every system is scored alike."""
    return classification_metrics(labels, predictions, num_labels)


# --------------------------------------------------------------------------- the systems

def run_seed_style(s: Settings, splits: Splits, work: Path) -> Result:
    """The notebook workflow (see _common.run_seed_style): Trainer, frozen backbone, dynamic padding,
    evaluation of the random head, after every epoch and after training."""
    start = time.perf_counter()
    out = common.run_seed_style(
        s.model, splits.train.texts, splits.train.labels, splits.test.texts, splits.test.labels,
        max_length=s.max_length, epochs=s.epochs, batch_size=s.batch_size, lr=s.seed_style_lr,
        lr_schedule=s.seed_style_lr_schedule, seed=s.seed, device=s.device, work=work,
        num_labels=len(splits.label_names))
    return Result("seed-style", time.perf_counter() - start, out.pop("accuracy"), out.pop("f1"),
                  out.pop("real_tokens"), out.pop("padded_tokens"), out)


def run_encode_sklearn(s: Settings, splits: Splits) -> Result:
    """Encode once with an ordinary full forward (headtune's pooling: MiniLM's mean of the last hidden states,
    DistilBERT's first token), length-sorted batches over the whole split (no cache, so no shards), then
    LogisticRegression."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    num_labels = len(splits.label_names)
    start = time.perf_counter()
    model, tokenizer, _ = common.load_frozen_classifier(s.model, num_labels, s.seed, s.device)
    model.eval()
    plan = common.head_plan(model, s.model)
    reader = common.reader_of(model, plan, trim=False)  # a user's own script: the full forward
    dtype = autocast_dtype(model.device, "auto")  # headtune's default precision, so the features match
    passes, tokenize_s = {}, 0.0
    for name, split in (("train", splits.train), ("test", splits.test)):
        split_plan = common.plan_split(tokenizer, split.texts, s.max_length, feature_config(s), shards=False)
        tokenize_s += split_plan.tokenize_s
        passes[name] = common.backbone_pass(reader, model.device, split_plan, tokenizer.pad_token_id or 0, dtype)
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
                  {"pooling": plan.reading.name, "tokenize_seconds": tokenize_s,
                   "backbone_seconds": sum(p.seconds for p in passes.values()),
                   "fit_and_predict_seconds": time.perf_counter() - fit_start, "lbfgs_iterations": int(
                       np.max(classifier.n_iter_)), "converged": converged})


def headtune_command(s: Settings, cache_dir: Path, output_dir: Path, overwrite: bool) -> list[str]:
    """The real CLI with its defaults, in a fresh interpreter: its import and model-load costs count, as a user
    pays them. Only what the benchmark fixes is passed (sample, length, epochs, batch size, device)."""
    command = [sys.executable, "-m", "headtune", "train", "--dataset", s.dataset, "--model", s.model,
               "--train-size", str(s.train_size), "--test-size", str(s.test_size),
               "--max-length", str(s.max_length), "--epochs", str(s.epochs), "--batch-size", str(s.batch_size),
               "--sample-seed", str(s.seed), "--device", s.device,
               "--cache-dir", str(cache_dir), "--output-dir", str(output_dir)]
    return command + (["--overwrite"] if overwrite else [])


SAVED_LINE = re.compile(r"saved model/.* in ([0-9.]+)s")


def stages(wall: float, metrics: dict, log_text: str) -> dict:
    """Where a headtune run's wall time went, from its metrics.json (`timings_s`, `backbone_pass`) and its log.

    outside: interpreter start, imports and argument parsing before `workflow.run`'s clock starts, and the
    interpreter's exit; save: writing model/, the charts and metrics.json (from the run's last log line, which
    reports its total with the save; None if that line is missing). The features stage is the backbone pass
    (or the cache read) of every split; tokenize is the part of it spent tokenizing.
    """
    timings, passes = metrics["timings_s"], metrics["backbone_pass"].values()
    found = SAVED_LINE.findall(log_text)
    with_save = float(found[-1]) if found else None
    out = {"wall": wall, "outside": wall - (with_save or timings["total_before_save"]),
           "check": timings.get("check"), "data": timings.get("data"), "depth": timings.get("depth"),
           "model": timings.get("model"),
           "features": timings.get("features"),
           "features_backbone": sum(p.get("seconds", 0.0) for p in passes),
           "features_tokenize": sum(p.get("tokenize_seconds", 0.0) for p in passes),
           "train": timings.get("train"), "finish": timings.get("finish"),
           "save": None if with_save is None else with_save - timings["total_before_save"],
           "total_before_save": timings["total_before_save"], "total_with_save": with_save}
    return {k: None if v is None else round(v, 3) for k, v in out.items()}


def run_headtune(s: Settings, headtune_splits: Splits, work: Path, warm: bool) -> Result:
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
    log_text = log_path.read_text()
    if done.returncode != 0:
        tail = log_text.strip().splitlines()[-15:]
        raise SystemExit(f"bench_small_run: {system} failed (exit {done.returncode}):\n" + "\n".join(tail))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    passes = metrics["backbone_pass"]
    return Result(system, wall, metrics["after"]["accuracy"], metrics["after"]["f1"],
                  sum(p["real_tokens"] for p in passes.values()), sum(p["padded_tokens"] for p in passes.values()),
                  {"command": shlex.join(command), "stages_s": stages(wall, metrics, log_text),
                   "backbone_pass": passes, "timings_s": metrics["timings_s"],
                   "backbone_seconds": sum(p["seconds"] for p in passes.values()),
                   "pooling": metrics["pooling"], "lr": metrics["lr"]["chosen"], "kept_epoch": metrics["kept_epoch"],
                   "layers_read": metrics["config"]["model"]["depth"], "depth_auto": metrics.get("depth") is not None,
                   "data": metrics["data"], "same_texts": same_texts(cache_dir, headtune_splits),
                   "history": metrics["history"], "model_loaded": metrics["environment"]["model_loaded"],
                   "autocast": metrics["environment"]["autocast"], "log_tail": log_text.strip().splitlines()[-12:]})


def split_texts(splits: Splits) -> dict[str, list[str]]:
    texts = {"train": splits.train.texts}
    if splits.validation is not None:
        texts["validation"] = splits.validation.texts
    texts["test"] = splits.test.texts
    return texts


def same_texts(cache_dir: Path, splits: Splits) -> bool:
    """Whether headtune's cache holds exactly this benchmark's train, validation and test texts (keys hash them)."""
    cached = {json.loads(p.read_text()).get("texts") for p in cache_dir.glob("*/key.json")}  # bodies: no texts
    return {texts_digest(t) for t in split_texts(splits).values()} <= cached


def plan_headtune_pass(s: Settings, headtune_splits: Splits) -> tuple[dict[str, common.SplitPlan], common.EncoderFlops]:
    """Headtune's tokens and batches for every split it passes (untimed), for the floor and the FLOP counts."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(s.model)
    plans = {name: common.plan_split(tokenizer, texts, s.max_length, feature_config(s))
             for name, texts in split_texts(headtune_splits).items()}
    return plans, common.EncoderFlops.from_config(AutoConfig.from_pretrained(s.model))


def run_floor(s: Settings, num_labels: int, plans: dict[str, common.SplitPlan]) -> Result:
    """Only the forward loop over headtune's batches is timed: model loaded, texts tokenized beforehand, and every
    batch shape run once untimed first (the first forward of a shape pays one-off setup that is not backbone work:
    kernel choice, allocator pools; on CPU one batch does it)."""
    model, tokenizer, _ = common.load_frozen_classifier(s.model, num_labels, s.seed, s.device)
    model.eval()
    plan = common.head_plan(model, s.model)
    reader = common.reader_of(model, plan, trim=False)  # the bare forward of the whole backbone
    dtype, pad_id = autocast_dtype(model.device, "auto"), tokenizer.pad_token_id or 0
    for name, p in plans.items():
        warm = common.first_of_each_shape(p.batches) if s.device.startswith("cuda") else p.batches[:1]
        common.backbone_pass(reader, model.device, p, pad_id, dtype, warm)
    runs = []
    for _ in range(s.floor_repeats):  # the fastest pass is the floor; the others only show the noise
        runs.append({name: common.backbone_pass(reader, model.device, p, pad_id, dtype) for name, p in plans.items()})
    seconds = [sum(p.seconds for p in passes.values()) for passes in runs]
    passes = runs[int(np.argmin(seconds))]
    return Result("floor", min(seconds), None, None,
                  sum(p.real_tokens for p in passes.values()), sum(p.padded_tokens for p in passes.values()),
                  {"batches": sum(p.batches for p in passes.values()), "seconds_per_repeat": seconds,
                   "shapes": sum(p.shapes for p in plans.values())})


# --------------------------------------------------------------------------- reading the results

def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def check_targets(results: dict[str, Result], device_type: str) -> list[dict]:
    """The goals headtune is held to. `judged`: whether the target is the issue's for this device (on a GPU only
    cold >= 4x seed-style and warm <= 25 % of cold are; the others are shown for information). A target whose
    systems did not run is skipped."""
    cold = results.get("headtune-cold")
    gpu = device_type == "cuda"

    def target(name: str, needs: str, value, limit: float, passes, judged: bool = True) -> dict:
        ran = cold is not None and needs in results
        ok = bool(passes(value)) if ran and value is not None else None
        return {"target": name, "value": value if ran else None, "limit": limit, "passed": ok, "judged": judged}

    def get(system: str, attr: str):
        return getattr(results[system], attr) if system in results else None

    def accuracy_gap(system: str):  # headtune minus the other, in points; may be positive
        if cold is None or system not in results or get(system, "accuracy") is None:
            return None
        return 100 * (cold.accuracy - get(system, "accuracy"))

    wall = cold.wall_s if cold else None
    warm_limit = WARM_LIMIT["cuda" if gpu else "cpu"]
    return [
        target("headtune cold >= 4x faster than seed-style", "seed-style",
               ratio(get("seed-style", "wall_s"), wall), 4.0, lambda v: v >= 4.0),
        target("headtune cold accuracy >= seed-style - 1 point", "seed-style",
               accuracy_gap("seed-style"), -100 * ACCURACY_SLACK, lambda v: v >= -100 * ACCURACY_SLACK, not gpu),
        target("headtune cold <= 1.0x encode+sklearn time", "encode+sklearn",
               ratio(wall, get("encode+sklearn", "wall_s")), 1.0, lambda v: v <= 1.0, not gpu),
        target("headtune cold accuracy >= encode+sklearn - 1 point", "encode+sklearn",
               accuracy_gap("encode+sklearn"), -100 * ACCURACY_SLACK, lambda v: v >= -100 * ACCURACY_SLACK, not gpu),
        target("headtune cold <= 1.10x floor", "floor", ratio(wall, get("floor", "wall_s")), 1.10,
               lambda v: v <= 1.10, not gpu),
        target(f"headtune warm <= {warm_limit:.0%} of cold", "headtune-warm",
               ratio(get("headtune-warm", "wall_s"), wall), warm_limit, lambda v: v <= warm_limit),
        target("headtune padded tokens <= 1.05x real", "headtune-cold",
               ratio(get("headtune-cold", "padded_tokens"), get("headtune-cold", "real_tokens")), 1.05,
               lambda v: v <= 1.05, not gpu),
        target(f"headtune warm run <= {WARM_SECONDS:g} s (CPU target)", "headtune-warm",
               get("headtune-warm", "wall_s"), WARM_SECONDS, lambda v: v <= WARM_SECONDS, not gpu),
    ]


def headtune_flops(flops: common.EncoderFlops, split: str, details: dict, trimmed: bool
                   ) -> tuple[common.EncoderFlops, bool]:
    """The FLOP model of headtune's pass over `split`, and whether its last layer is trimmed: with --depth auto the
    training texts went through every layer (in full: every layer's output is read), the other splits through the
    model cut to the chosen layer; --depth N runs N layers."""
    if details.get("depth_auto") and split == "train":
        return flops, False
    layers = details.get("layers_read")
    return (replace(flops, layers=layers) if isinstance(layers, int) else flops), trimmed


def throughput(results: dict[str, Result], plans: dict[str, common.SplitPlan] | None,
               flops: common.EncoderFlops | None, trimmed: bool) -> dict:
    """Achieved backbone GFLOP/s of the floor (full forward) and of headtune cold's pass (its own FLOPs: the cls
    reading trims the last layer), padded = work done, real = useful."""
    if plans is None or flops is None:
        return {}
    seconds = {"floor": getattr(results.get("floor"), "wall_s", None),
               "headtune-cold": results["headtune-cold"].details["backbone_seconds"]
               if "headtune-cold" in results else None}
    out = {"model": flops.describe(), "headtune_trimmed": trimmed}
    for system, secs in seconds.items():
        if not secs:  # not run (yet: the JSON is written after every system)
            continue
        work = {"real": 0.0, "padded": 0.0}
        for split, plan in plans.items():
            f, cut = headtune_flops(flops, split, results["headtune-cold"].details, trimmed) \
                if system == "headtune-cold" else (flops, False)
            work["real"] += f.real(plan.lengths, cut)
            work["padded"] += f.padded(plan, cut)
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


STAGE_COLUMNS = (("outside", "outside"), ("check", "check"), ("data", "data"), ("depth", "depth"), ("model", "model"),
                 ("features", "features"), ("features_tokenize", "tokenize"),
                 ("train", "train"), ("finish", "finish"), ("save", "save"), ("wall", "wall"))


def format_stages(results: dict[str, Result]) -> str:
    """headtune cold's and warm's wall seconds by stage (tokenize is part of features)."""
    runs = [r for name, r in results.items() if name.startswith("headtune")]
    if not runs:
        return ""
    header = f"{'headtune stages, s':<19}" + "".join(f"{label:>9}" for _, label in STAGE_COLUMNS)
    rows = [header]
    for r in runs:
        st = r.details["stages_s"]
        rows.append(f"{r.system:<19}" + "".join("        -" if st.get(k) is None else f"{st[k]:>9.2f}"
                                                for k, _ in STAGE_COLUMNS))
    rows.append("  outside: interpreter start, imports, exit; check: the model (transformers when not cached); "
                "depth: --depth auto's choice (cold: the training texts' every-layer pass); tokenize: part of features; "
                "save: model/, charts, metrics.json")
    return "\n".join(rows)


def format_targets(targets: list[dict]) -> str:
    rows = ["targets"]
    for t in targets:
        status = {True: "PASS", False: "FAIL", None: "skip"}[t["passed"]] if t["judged"] or t["passed"] is None \
            else "info"
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

def run_systems(s: Settings, headtune_splits: Splits, num_labels: int, systems: list[str],
                plans: dict[str, common.SplitPlan] | None, argv: list[str], keep: Path | None = None,
                after_each=lambda results: None) -> dict[str, Result]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="headtune-bench-") as tmp:
        work = Path(tmp)
        runners = {"seed-style": lambda: run_in_child("seed-style", argv, work),
                   "encode+sklearn": lambda: run_in_child("encode+sklearn", argv, work),
                   "headtune-cold": lambda: run_headtune(s, headtune_splits, work, warm=False),
                   "headtune-warm": lambda: run_headtune(s, headtune_splits, work, warm=True),
                   "floor": lambda: run_floor(s, num_labels, plans)}
        for system in systems:
            load = common.load_average()
            common.log(f"{system}: running (1-min load average {load})")
            results[system] = runners[system]()
            results[system].details["load_average_at_start"] = load
            common.log(f"{system}: {results[system].wall_s:.1f} s")
            after_each(results)
        if keep is not None and (work / "headtune-output").is_dir():
            shutil.copytree(work / "headtune-output", keep, dirs_exist_ok=True)
    return results


def run_in_child(system: str, argv: list[str], work: Path) -> Result:
    """Run one system in a fresh interpreter (this script with --child) and time the whole process."""
    out = common.run_as_child(__file__, system, argv, work)
    wall, command = out.pop("process_wall_s"), out.pop("command")
    result = Result(**out)
    result.details["in_process_s"] = result.wall_s  # from model load to the last prediction
    result.details["command"] = command
    result.wall_s = wall
    return result


def run_child(args: argparse.Namespace, s: Settings, splits: Splits) -> int:
    """--child: run one system here and leave its Result for the parent, which times this process."""
    work = Path(tempfile.mkdtemp(prefix="headtune-bench-child-"))
    try:
        result = run_seed_style(s, splits, work) if args.child == "seed-style" else run_encode_sklearn(s, splits)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.child_result.write_text(json.dumps(asdict(result), default=str))
    return 0


def plan_check(results: dict[str, Result], plans: dict[str, common.SplitPlan] | None) -> bool | None:
    """Whether the floor's batches hold exactly the padded tokens headtune reported for its own pass."""
    if plans is None or "headtune-cold" not in results:
        return None
    return sum(p.padded_tokens for p in plans.values()) == results["headtune-cold"].padded_tokens


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
    # the one sample every system sees: seed-style and encode+sklearn train on all of its training rows
    splits = load_sample(args.dataset, args.train_size, args.test_size, args.seed)
    # sizes as drawn (--small-run caps them at a split's size), passed to headtune explicitly
    s = make_settings(args, (len(splits.train.texts), len(splits.test.texts)), device)
    if args.child:
        return run_child(args, s, splits)
    # headtune's view of the same rows: train (cross-validated: its --folds) / test
    headtune_splits = load_sample(args.dataset, args.train_size, args.test_size, args.seed, headtune_view=True)
    needs_plan = {"floor", "headtune-cold"} & set(args.systems)
    plans, flops = plan_headtune_pass(s, headtune_splits) if needs_plan else (None, None)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    child_argv = list(sys.argv[1:] if argv is None else argv)
    host = common.host_kind(device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out_dir / f"small_run_{host}.json", args.out_dir / f"small_run_{host}.png"

    def save(results: dict[str, Result], complete: bool) -> None:
        common.write_json(json_path, {
            "benchmark": "small_run", "complete": complete, "started_utc": started,
            "command": shlex.join([sys.executable, *sys.argv]), "host_kind": host,
            "environment": common.environment(device), "settings": asdict(s),
            "samples": {"seed-style and encode+sklearn": {"train": len(splits.train.texts),
                                                          "test": len(splits.test.texts)},
                        "headtune": {name: len(t) for name, t in split_texts(headtune_splits).items()}},
            "systems": list(results), "results": {k: asdict(v) for k, v in results.items()},
            "ratio_to_headtune_cold": {k: ratio(v.wall_s, results["headtune-cold"].wall_s)
                                       for k, v in results.items()} if "headtune-cold" in results else {},
            "headtune_stages_s": {k: v.details["stages_s"] for k, v in results.items() if k.startswith("headtune")},
            "targets": check_targets(results, device.type), "throughput": throughput(results, plans, flops, s.trimmed),
            "floor_batches_match_headtune": plan_check(results, plans),
            "floor_plan": {"padded_tokens": sum(p.padded_tokens for p in plans.values()),
                           "shapes": sum(p.shapes for p in plans.values())} if plans else None,
            "chart": png_path.name})

    # the JSON is rewritten after every system: what ran so far survives a time limit on the whole run
    results = run_systems(s, headtune_splits, len(splits.label_names), args.systems, plans, child_argv,
                          args.keep_headtune_output, lambda done: save(done, complete=False))
    targets = check_targets(results, device.type)
    rates = throughput(results, plans, flops, s.trimmed)
    matches = plan_check(results, plans)

    print(format_table(results))
    print()
    if any(name.startswith("headtune") for name in results):
        print(format_stages(results))
        print()
    print(format_targets(targets))
    if rates:
        print()
        print(format_throughput(rates))
    if matches is False:
        print("\nWARNING: the floor's batches differ from headtune's pass (padded tokens disagree); "
              "check that the benchmark plans headtune's batches as headtune.features.extract_features does")
    if any(r.details.get("same_texts") is False for r in results.values()):
        print("\nWARNING: headtune trained on other texts than the benchmark's sample; the comparison is void")

    title = (f"{model_label(s.model)} head-only on IMDb {s.train_size:,}/{s.test_size:,}, max length {s.max_length}, "
             f"{s.epochs} epochs, {host}")
    bar_chart(results, title, png_path)
    save(results, complete=True)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
