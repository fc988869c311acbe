"""One dataclass per concern; the CLI flags are generated from these fields.

Each field's `help` metadata is both its documentation and its `--help` text, so a
flag is described exactly once. Every config validates itself in `__post_init__`
and raises `HeadtuneError` naming the flag, so the Python API and the CLI refuse
bad values with the same one-line message.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import HeadtuneError, flag

SMALL_RUN_TRAIN = 4_000
SMALL_RUN_TEST = 2_000


DEVICE_HELP = "Where to run: auto (CUDA if available, else CPU), cpu, cuda or cuda:N."
PICKLE_HELP = "Allow loading pickle-based weights (pytorch_model.bin), which can run code. Off: safetensors only."


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


def default_cache_dir() -> str:
    """`$HEADTUNE_CACHE`, else `$XDG_CACHE_HOME/headtune`, else `~/.cache/headtune`."""
    if os.environ.get("HEADTUNE_CACHE"):
        return os.environ["HEADTUNE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(base, "headtune")


def _positive(name: str, value, kind=int) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and value > 0
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        what = "an integer" if kind is int else "a number"
        raise HeadtuneError(f"{flag(name)} must be {what} above 0 (got {value!r})")


def _check_seed(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise HeadtuneError(f"{flag(name)} must be an integer from 0 to {2**32 - 1} (got {value!r})")


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise HeadtuneError(f"--device must be auto, cpu, cuda or cuda:N (got {device!r})")


@dataclass
class DataConfig:
    dataset: str = field(default="imdb", metadata=_help(
        "Hugging Face Hub dataset name, or a local folder: train/test .parquet/.csv/.jsonl files, "
        "or an aclImdb-style folder (train/pos/*.txt, train/neg/*.txt, test/...)."))
    text_column: str = field(default="text", metadata=_help("Column holding the texts."))
    label_column: str = field(default="label", metadata=_help("Column holding the labels (integers or strings)."))
    label_names: list[str] | None = field(default=None, metadata=_help(
        "Names for integer labels 0..K-1, in order. Default: the dataset's own names; "
        "integer labels 0/1 without names are called neg/pos (the IMDb convention).", nargs="+"))
    small_run: bool = field(default=False, metadata=_help(
        f"Use a stratified, seeded sample of {SMALL_RUN_TRAIN:,} train / {SMALL_RUN_TEST:,} test examples."))
    train_size: int | None = field(default=None, metadata=_help(
        "Stratified, seeded sample of this many training examples (overrides --small-run). Default: the whole split."))
    test_size: int | None = field(default=None, metadata=_help(
        "Stratified, seeded sample of this many test examples (overrides --small-run). Default: the whole split."))
    sample_seed: int = field(default=42, metadata=_help(
        "Seed of the sample --small-run, --train-size and --test-size draw. Separate from --seed, so runs "
        "that differ only in head settings (--seed included) see the same texts and reuse cached features."))
    drop_invalid: bool = field(default=False, metadata=_help(
        "Drop rows whose text is empty, whitespace, null or not a string (default: refuse them)."))
    encoding: str = field(default="utf-8", metadata=_help("Text encoding of local CSV files."))

    def __post_init__(self):
        if not str(self.dataset).strip():
            raise HeadtuneError("--dataset must not be empty")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _check_seed("sample_seed", self.sample_seed)
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            raise HeadtuneError(f"--label-names must be distinct (got {self.label_names})")

    @property
    def sizes(self) -> tuple[int | None, int | None]:
        """The (train, test) sample sizes asked for; None keeps the whole split."""
        train = self.train_size if self.train_size is not None else (SMALL_RUN_TRAIN if self.small_run else None)
        test = self.test_size if self.test_size is not None else (SMALL_RUN_TEST if self.small_run else None)
        return train, test


@dataclass
class ModelConfig:
    model: str = field(default="distilbert-base-uncased", metadata=_help(
        "Hugging Face Hub model name or a local model folder (config, tokenizer, safetensors weights)."))
    revision: str | None = field(default=None, metadata=_help("Hub revision (branch, tag or commit) of --model."))
    max_length: int = field(default=512, metadata=_help("Truncate texts to this many tokens."))
    device: str = field(default="auto", metadata=_help(DEVICE_HELP))
    precision: str = field(default="auto", metadata=_help(
        "Backbone precision: auto (bf16 on Ampere+ GPUs, fp16 on older GPUs, fp32 on CPU), fp32, bf16, fp16.",
        choices=["auto", "fp32", "bf16", "fp16"]))
    trust_remote_code: bool = field(default=False, metadata=_help(
        "Allow model code from the Hub to run (off: only transformers' own architectures load)."))
    allow_pickle: bool = field(default=False, metadata=_help(PICKLE_HELP))

    def __post_init__(self):
        _positive("max_length", self.max_length)
        _check_device(self.device)
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise HeadtuneError(f"--precision must be auto, fp32, bf16 or fp16 (got {self.precision!r})")


# The pass's batching defaults per device: (max_tokens_per_batch, shard_size, pad_to_multiple_of).
# CPU: throughput per token hardly grows past small batches and every padded token costs compute, so
# batches stay small and exact. CUDA: big batches fill the GPU, and each new batch shape costs a one-time
# kernel setup (~0.1 s on an H200, paid in full because the pass runs once), so lengths are rounded up
# to a multiple of 32 and shards are big, which keeps the number of distinct shapes in the dozens.
PASS_DEFAULTS = {"cpu": (4096, 512, 1), "cuda": (65536, 8192, 32)}


@dataclass
class FeatureConfig:
    cache_dir: str = field(default_factory=default_cache_dir, metadata=_help(
        "Where backbone features are cached (safetensors). Default: $HEADTUNE_CACHE or ~/.cache/headtune."))
    no_cache: bool = field(default=False, metadata=_help("Do not read or write the feature cache."))
    max_tokens_per_batch: int | None = field(default=None, metadata=_help(
        "Token budget of one backbone batch (rows x padded length) over length-sorted texts. "
        "Default: 4096 on CPU, 65536 on CUDA.", metavar="TOKENS"))
    shard_size: int | None = field(default=None, metadata=_help(
        "Texts per cache shard; an interrupted backbone pass resumes from the last finished shard. "
        "Default: 512 on CPU, 8192 on CUDA."))
    pad_to_multiple_of: int | None = field(default=None, metadata=_help(
        "Pad each batch's length up to a multiple of this, so batches repeat a few shapes "
        "(on CUDA each new shape costs a one-time setup). Default: 1 on CPU, 32 on CUDA.", metavar="N"))

    def __post_init__(self):
        for name in ("max_tokens_per_batch", "shard_size", "pad_to_multiple_of"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))

    def for_device(self, device_type: str) -> FeatureConfig:
        """This config with the unset batching settings filled in with `device_type`'s defaults."""
        tokens, shard, multiple = PASS_DEFAULTS["cuda" if device_type == "cuda" else "cpu"]
        return replace(self, max_tokens_per_batch=self.max_tokens_per_batch or tokens,
                       shard_size=self.shard_size or shard, pad_to_multiple_of=self.pad_to_multiple_of or multiple)


LR_SCHEDULES = ("linear", "constant")  # see training.lr_factor


@dataclass
class TrainConfig:
    epochs: int = field(default=3, metadata=_help("Passes over the training set."))
    lr: float = field(default=3e-2, metadata=_help(
        "AdamW learning rate of the head. The head starts from random weights, so it is far higher than "
        "the 2e-5 used to fine-tune a whole model."))
    batch_size: int = field(default=16, metadata=_help("Examples per head-training step."))
    lr_schedule: str = field(default="linear", metadata=_help(
        "Learning-rate schedule: linear (decays to 0 over all steps, as transformers' Trainer does by default) "
        "or constant.", choices=list(LR_SCHEDULES)))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    seed: int = field(default=42, metadata=_help(
        "Seed for head initialisation, shuffling and dropout (the data sample has --sample-seed)."))

    def __post_init__(self):
        _positive("epochs", self.epochs)
        _positive("lr", self.lr, float)
        _positive("batch_size", self.batch_size)
        if self.lr_schedule not in LR_SCHEDULES:
            raise HeadtuneError(f"--lr-schedule must be linear or constant (got {self.lr_schedule!r})")
        _check_seed("seed", self.seed)
        if not isinstance(self.weight_decay, (int, float)) or not 0 <= self.weight_decay < math.inf:
            raise HeadtuneError(f"--weight-decay must be 0 or above (got {self.weight_decay!r})")


@dataclass
class OutputConfig:
    output_dir: str = field(default="outputs/imdb_head_only", metadata=_help(
        "Folder for model/, metrics.json and images/."))
    overwrite: bool = field(default=False, metadata=_help("Replace a trained model already in --output-dir."))

    def __post_init__(self):
        if not str(self.output_dir).strip():
            raise HeadtuneError("--output-dir must not be empty")


@dataclass
class PredictConfig:
    model: str = field(default="outputs/imdb_head_only/model", metadata=_help(
        "Folder of a trained model (headtune's model/ or any AutoModelForSequenceClassification checkpoint)."))
    file: str | None = field(default=None, metadata=_help("Read texts from this file, one per line ('-': stdin)."))
    max_length: int | None = field(default=None, metadata=_help(
        "Truncate texts to this many tokens (default: the model's limit)."))
    batch_size: int = field(default=32, metadata=_help("Texts per forward pass."))
    device: str = field(default="auto", metadata=_help(DEVICE_HELP))
    allow_pickle: bool = field(default=False, metadata=_help(PICKLE_HELP))

    def __post_init__(self):
        if self.max_length is not None:
            _positive("max_length", self.max_length)
        _positive("batch_size", self.batch_size)
        _check_device(self.device)


TRAIN_SECTIONS = {"data": DataConfig, "model": ModelConfig, "features": FeatureConfig,
                  "train": TrainConfig, "output": OutputConfig}


@dataclass
class RunConfig:
    """Everything `headtune train` needs, one dataclass per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_flat(cls, **values) -> "RunConfig":
        """Route flat settings (`epochs=3`, `dataset="imdb"`, as the CLI flags name them) to their sections."""
        sections = {}
        for section, config_cls in TRAIN_SECTIONS.items():
            names = config_cls.__dataclass_fields__.keys()
            sections[section] = config_cls(**{k: values.pop(k) for k in list(values) if k in names})
        if values:
            raise HeadtuneError(f"unknown setting {flag(next(iter(values)))}")
        return cls(**sections)

    def to_dict(self) -> dict:
        return asdict(self)
