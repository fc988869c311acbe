"""One dataclass per concern; the CLI flags are generated from these fields.

Each field's `help` metadata is both its documentation and its `--help` text, so a
flag is described exactly once. Every config validates itself in `__post_init__`
and raises `HeadtuneError` naming the flag, so the Python API and the CLI refuse
bad values with the same one-line message. Path settings take `str` or `os.PathLike`.
"""
from __future__ import annotations

import codecs
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .errors import HeadtuneError, flag

SMALL_RUN_TRAIN = 4_000
SMALL_RUN_TEST = 2_000
DEFAULT_FOLDS = 5
FOLDS_BUDGET = 100_000  # training rows x labels up to which the folds are the default (folds_for)
DEFAULT_VAL_FRACTION = 0.1  # --folds 1
MAX_EPOCHS = 10_000
MAX_LR = 10.0

DEVICE_HELP = "Where to run: auto (CUDA if available, else CPU), cpu, cuda or cuda:N."
PICKLE_HELP = "Allow loading pickle-based weights (pytorch_model.bin), which can run code. Off: safetensors only."
POOLINGS = ("auto", "native", "cls", "mean")  # see architectures.Reading
DEPTHS = ("auto", "all")  # --depth's words; else a number of layers (depth.py)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
TRUNCATION_SIDES = ("right", "left")  # transformers' names: which end of a too-long text is cut off
KEPT_END = {"right": "start", "left": "end"}  # what of a too-long text each side keeps, for messages
LR_SCHEDULES = ("linear", "constant")  # see training.lr_factor
KEEP = ("best", "last")
CLASS_WEIGHTS = ("none", "balanced")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


def default_cache_dir() -> str:
    """`$HEADTUNE_CACHE`, else `$XDG_CACHE_HOME/headtune` (if absolute), else `~/.cache/headtune`."""
    if os.environ.get("HEADTUNE_CACHE"):
        return os.path.expanduser(os.environ["HEADTUNE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(Path.home(), ".cache")  # the XDG spec: ignore a relative one
    return os.path.join(base, "headtune")


# --------------------------------------------------------------------------- checks shared by the configs

def _path(name: str, value) -> str:
    """A path (or Hub name) setting as str: str and os.PathLike alike; anything else is one clear line."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise HeadtuneError(f"{flag(name)} must be a path or name (str or os.PathLike), not {type(value).__name__}")
    if not value.strip():
        raise HeadtuneError(f"{flag(name)} must not be empty")
    if value.startswith("~") and os.path.expanduser(value) == value:  # Path.expanduser would raise RuntimeError
        user = value[1:].split("/")[0].split(os.sep)[0]
        raise HeadtuneError(f"{flag(name)} {value}: " + (f"'~{user}' is the home folder of user '{user}', and "
                                                          f"there is no such user" if user else
                                                          "no home folder is known for '~' ($HOME is not set)"))
    # every path setting alike: a quoted '~/out' made a folder named '~' in the working folder
    return os.path.expanduser(value)


def _positive(name: str, value, kind=int) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and value > 0
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        what = "an integer" if kind is int else "a number"
        raise HeadtuneError(f"{flag(name)} must be {what} above 0 (got {value!r})")


def _fraction(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise HeadtuneError(f"{flag(name)} must be a number from {low:g} to below {high:g} (got {value!r})")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise HeadtuneError(f"{flag(name)} must be one of {', '.join(choices)} (got {value!r})")


def _check_seed(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise HeadtuneError(f"{flag(name)} must be an integer from 0 to {2**32 - 1} (got {value!r})")


def _check_device(device) -> None:
    if not isinstance(device, str) or (device not in ("auto", "cpu", "cuda")
                                       and not (device.startswith("cuda:") and device[5:].isdigit())):
        raise HeadtuneError(f"--device must be auto, cpu, cuda or cuda:N (got {device!r})")


def _check_switches(config) -> None:
    """On/off settings are booleans: a string such as "false" from a config file or the API would read as on."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.type == "bool" and not isinstance(value, bool):
            raise HeadtuneError(f"{flag(f.name)} is on or off: true or false (got {value!r})")


def _strings(name: str, value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise HeadtuneError(f"{flag(name)} must be a list of strings (got {value!r})")
    return list(value)


def _word_or(name: str, value, convert, what: str, words: tuple[str, ...] = ("auto",)):
    """One of `words` ('auto'), or a setting's value, converted from the string of a command line or a config
    file."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() in words:
        return value.strip().lower()
    try:
        return convert(value)
    except ValueError:
        raise HeadtuneError(f"{flag(name)} must be {', '.join(words)} or {what} (got {value!r})") from None


def parse_lr(value) -> float | str:
    """`--lr`: 'auto' or a number above 0."""
    value = _word_or("lr", value, float, "a number above 0")
    if value == "auto":
        return value
    _positive("lr", value, float)
    if value > MAX_LR:  # AdamW moves each weight by about the rate per step: far past any use, a typo
        raise HeadtuneError(f"--lr must be at most {MAX_LR:g} (got {value!r}); AdamW moves each weight by about "
                            f"the rate per step, and --lr auto tries 3e-4 to 0.3")
    return float(value)


def parse_depth(value) -> int | str:
    """`--depth`: 'auto', 'all' (also None), or a number of layers above 0."""
    value = "all" if value is None else _word_or("depth", value, int, "a number of layers above 0", DEPTHS)
    if value not in DEPTHS:
        _positive("depth", value)
    return value


# --------------------------------------------------------------------------- the settings


@dataclass
class DataSource:
    """Where texts and labels come from: shared by `train` and `evaluate`."""

    dataset: str = field(default="imdb", metadata=_help(
        "Hugging Face Hub dataset name, or a local folder: train/validation/test .parquet/.csv/.jsonl/.json files, "
        "or an aclImdb-style folder (train/pos/*.txt, train/neg/*.txt, test/...)."))
    text_column: str = field(default="text", metadata=_help("Column holding the texts."))
    label_column: str = field(default="label", metadata=_help(
        "Column holding the labels: integers or strings, or lists of them for multi-label data."))
    label_names: list[str] | None = field(default=None, metadata=_help(
        "Names for integer labels 0..K-1, in order. Default: the dataset's own names; "
        "integer labels 0/1 without names are called neg/pos (the IMDb convention).", nargs="+"))
    drop_invalid: bool = field(default=False, metadata=_help(
        "Drop rows whose text is empty, whitespace, null or not a string (default: refuse them)."))
    encoding: str = field(default="utf-8", metadata=_help("Text encoding of local CSV files."))

    def __post_init__(self):
        _check_switches(self)
        self.dataset = _path("dataset", self.dataset)
        for name in ("text_column", "label_column", "encoding"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise HeadtuneError(f"{flag(name)} must be a non-empty string (got {getattr(self, name)!r})")
        if self.text_column == self.label_column:  # the head would read its answer: a perfect, useless score
            raise HeadtuneError(f"--text-column and --label-column are both '{self.text_column}'; the texts and "
                                f"the labels must be different columns")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise HeadtuneError(f"unknown --encoding {self.encoding!r}: pass a text encoding Python knows, e.g. "
                                "utf-8, latin-1 or cp1252") from None
        self.label_names = _strings("label_names", self.label_names)
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            raise HeadtuneError(f"--label-names must be distinct (got {self.label_names})")
        if self.label_names is not None and not all(name.strip() for name in self.label_names):
            raise HeadtuneError(f"--label-names must not be empty or blank (got {self.label_names})")


@dataclass
class DataConfig(DataSource):
    small_run: bool = field(default=False, metadata=_help(
        f"Use a stratified, seeded sample of {SMALL_RUN_TRAIN:,} train / {SMALL_RUN_TEST:,} test examples "
        "(multi-label data: a seeded random sample)."))
    train_size: int | None = field(default=None, metadata=_help(
        "Stratified, seeded sample of this many training examples (overrides --small-run; multi-label data: "
        "a seeded random sample); refused when it would leave a class without an example. Default: the whole split."))
    test_size: int | None = field(default=None, metadata=_help(
        "Stratified, seeded sample of this many test examples (overrides --small-run). Default: the whole split."))
    sample_seed: int = field(default=42, metadata=_help(
        "Seed of the sample --small-run, --train-size and --test-size draw, and of the folds or the validation "
        "rows held out. Separate from --seed, so runs that differ only in head settings "
        "(--seed included) see the same texts and reuse cached features."))
    folds: int | None = field(default=None, metadata=_help(
        "Cut the training sample into this many folds (stratified; multi-label data: at random), train heads on "
        "every fold's complement and score them on the fold, and make the choices (learning rate, epoch, "
        "calibration, multi-label threshold) on these out-of-fold scores; the saved head then trains on the whole "
        "sample. 1: one training, its choices on held-out rows (the dataset's validation split, else --val-fraction "
        "of the training sample; noisier choices). Default: the dataset's own "
        f"validation split (validation, valid or dev) when it has one, else {DEFAULT_FOLDS} while training rows x "
        f"labels is at most {FOLDS_BUDGET:,} (then the folds cost little next to the backbone pass), else 1; and "
        "1 whenever --val-fraction is given. --folds K (K > 1) or --val-fraction is used instead of a dataset's "
        "own validation split.", metavar="K"))
    val_fraction: float | None = field(default=None, metadata=_help(
        "Hold out this share of the training sample (stratified; multi-label data: at random; a class's last "
        "example stays in train) and make the choices on it instead of on folds. 0: no validation at all (then "
        "pass a fixed --lr). Default: 0.1 whenever rows are held out.", metavar="FRACTION"))
    multi_label: bool = field(default=False, metadata=_help(
        "Each text has any number of labels (a sigmoid per label). Automatic when the label column holds "
        "lists; with this flag, string labels are split on commas."))
    positive_label: str | None = field(default=None, metadata=_help(
        "With two labels: the label whose F1 is reported. Default: the label with id 1 (pos for IMDb).",
        metavar="LABEL"))

    def __post_init__(self):
        super().__post_init__()
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _check_seed("sample_seed", self.sample_seed)
        if self.folds is not None:
            _positive("folds", self.folds)
        if self.val_fraction is not None:
            _fraction("val_fraction", self.val_fraction, 0.0, 0.5)
            if self.folds is not None and self.folds > 1:
                raise HeadtuneError(f"--val-fraction holds rows out instead of cross-validating, and --folds "
                                    f"{self.folds} asks for folds: pass one of them")
        if self.positive_label is not None and not isinstance(self.positive_label, str):
            raise HeadtuneError(f"--positive-label must be a label name (got {self.positive_label!r})")

    def folds_for(self, rows: int, labels: int) -> int:
        """The folds to cross-validate a training sample of `rows` x `labels` on (1: hold out instead).

        The folds train DEFAULT_FOLDS x 7 copies of the head, whose CPU time grows with rows x labels (a step's
        work is mostly the head's weights, hidden x labels, per copy), while the backbone pass's does not grow
        with labels: BANKING77 (10,003 x 77) on 5 folds took 16 s of head training next to a 30-s pass on a 2-core
        CPU, the IMDb small run (4,000 x 2) 1.5 s next to 190 s. Past FOLDS_BUDGET one held-out split keeps the
        choices within a few percent of a run.
        """
        if self.folds is not None:
            return self.folds
        if self.val_fraction is not None:
            return 1
        return DEFAULT_FOLDS if rows * labels <= FOLDS_BUDGET else 1

    def validation_asked(self) -> str | None:
        """The flag that asks for validation rows from the training sample ('--folds 5', '--val-fraction 0'), which
        replaces a dataset's own validation split; None when none does (--folds 1: one training, on that split)."""
        if self.val_fraction is not None:
            return f"{flag('val_fraction')} {self.val_fraction:g}"
        if self.folds is not None and self.folds > 1:
            return f"{flag('folds')} {self.folds}"
        return None

    @property
    def holdout_fraction(self) -> float:
        """The share held out when not cross-validating (0.1 unless --val-fraction says otherwise)."""
        return DEFAULT_VAL_FRACTION if self.val_fraction is None else self.val_fraction

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
    truncation_side: str = field(default="right", metadata=_help(
        "Which end of a text longer than --max-length is cut off: right keeps its start (transformers' default), "
        "left keeps its end (reviews put their verdict last: see the README). Saved with the tokenizer, so "
        "pipeline and predict cut texts the same way.", choices=list(TRUNCATION_SIDES)))
    pooling: str = field(default="auto", metadata=_help(
        "What the head reads: native (the input of the architecture's own head), cls (the first token's last "
        "hidden state), mean (the mean of the last hidden states over the real tokens), or auto (the model's "
        "sentence-transformers pooling, mean or cls, when it has one; else native).", choices=list(POOLINGS)))
    depth: int | str = field(default="auto", metadata=_help(
        "Which layer the head reads. auto: the layer with the best out-of-fold score of ridge classifiers on the "
        "training sample, one per layer, from the one backbone pass (all where it cannot apply: --no-cache, several "
        "processes, an architecture without a headtune entry); all: the last layer, the whole model; N: "
        "the backbone's first N layers only, and the saved model is the model cut to them (smaller and faster; it "
        "loads as any run's does). A layer below the last can hold more of a task: see the README.",
        metavar="{auto,all,N}", parse=parse_depth))
    train_pretrained_head: bool = field(default=False, metadata=_help(
        "Also train the pretrained parts of the architecture's head (BERT's and ALBERT's pooler, ModernBERT's "
        "head), starting from their pretrained weights. Off: they stay frozen, as part of the backbone."))
    device: str = field(default="auto", metadata=_help(DEVICE_HELP))
    precision: str = field(default="auto", metadata=_help(
        "Backbone precision: auto (bf16 on Ampere+ GPUs, fp16 on older GPUs, fp32 on CPU), fp32, bf16, fp16, or "
        "int8 (CPU only: torch's dynamic int8 quantization of the backbone's Linear layers; the saved model keeps "
        "its fp32 weights).",
        choices=list(PRECISIONS)))
    trust_remote_code: bool = field(default=False, metadata=_help(
        "Allow model code from the Hub to run (off: only transformers' own architectures load)."))
    allow_pickle: bool = field(default=False, metadata=_help(PICKLE_HELP))

    def __post_init__(self):
        _check_switches(self)
        self.model = _path("model", self.model)
        _positive("max_length", self.max_length)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("truncation_side", self.truncation_side, TRUNCATION_SIDES)
        self.depth = parse_depth(self.depth)
        _check_device(self.device)
        _choice("precision", self.precision, PRECISIONS)


# The pass's batching defaults per device: (max_tokens_per_batch, shard_size, pad_to_multiple_of).
# CPU: throughput per token hardly grows past small batches and every padded token costs compute, so
# batches stay small and exact. CUDA: big batches fill the GPU, and each new batch shape costs a one-time
# kernel setup (~0.1 s on an H200, paid in full because the pass runs once), so lengths are rounded up
# to a multiple of 32 and shards are big, which keeps the number of distinct shapes in the dozens.
PASS_DEFAULTS = {"cpu": (4096, 512, 1), "cuda": (65536, 8192, 32)}


@dataclass
class FeatureConfig:
    cache_dir: str = field(default_factory=default_cache_dir, metadata=_help(
        "Where backbone features are cached (safetensors). Default: $HEADTUNE_CACHE, else "
        "$XDG_CACHE_HOME/headtune, else ~/.cache/headtune."))
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
        _check_switches(self)
        self.cache_dir = _path("cache_dir", self.cache_dir)
        for name in ("max_tokens_per_batch", "shard_size", "pad_to_multiple_of"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))

    def for_device(self, device_type: str) -> FeatureConfig:
        """This config with the unset batching settings filled in with `device_type`'s defaults."""
        tokens, shard, multiple = PASS_DEFAULTS["cuda" if device_type == "cuda" else "cpu"]
        return replace(self, max_tokens_per_batch=self.max_tokens_per_batch or tokens,
                       shard_size=self.shard_size or shard, pad_to_multiple_of=self.pad_to_multiple_of or multiple)


@dataclass
class TrainConfig:
    epochs: int = field(default=3, metadata=_help(f"Passes over the training set (at most {MAX_EPOCHS:,})."))
    lr: float | str = field(default="auto", metadata=_help(
        f"AdamW learning rate of the head (at most {MAX_LR:g}), or auto: heads for a log grid of rates (3e-4 to "
        "3e-1) train together on the cached features and the best on the validation split is kept.", parse=parse_lr))
    batch_size: int = field(default=16, metadata=_help("Examples per head-training step."))
    lr_schedule: str = field(default="linear", metadata=_help(
        "Learning-rate schedule: linear (decays to 0 over all steps, as transformers' Trainer does by default) "
        "or constant.", choices=list(LR_SCHEDULES)))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    centre: bool = field(default=True, metadata=_help(
        "Train the head on features minus the mean of the rows it trains on, the mean then folded into its first "
        "layer's bias (the saved model reads raw features, as before): better-conditioned steps. --no-centre "
        "trains on the raw features."))
    keep: str = field(default="best", metadata=_help(
        "Which epoch's head is saved: best (the best validation accuracy) or last.", choices=list(KEEP)))
    patience: int | None = field(default=None, metadata=_help(
        "Stop early after this many epochs without a better validation accuracy. Default: train all --epochs.",
        metavar="EPOCHS"))
    class_weight: str = field(default="none", metadata=_help(
        "Loss weights per class: none, or balanced (n / (classes x count), from the training labels) for "
        "imbalanced data.", choices=list(CLASS_WEIGHTS)))
    calibrate: bool = field(default=True, metadata=_help(
        "Fit a temperature on the validation split and fold it into the final layer, so the saved model's "
        "probabilities are calibrated (accuracy unchanged). Single-label data only: multi-label runs tune "
        "--threshold instead."))
    threshold: float | None = field(default=None, metadata=_help(
        "Multi-label: the lowest probability at which a label is predicted. Default: tuned on the validation "
        "split (best micro F1), else 0.5.", metavar="PROB"))
    seed: int = field(default=42, metadata=_help(
        "Seed for head initialisation, shuffling and dropout (the data sample has --sample-seed)."))

    def __post_init__(self):
        _check_switches(self)
        _positive("epochs", self.epochs)
        if self.epochs > MAX_EPOCHS:  # a typo, not a plan: a head on fixed features settles in tens of epochs
            raise HeadtuneError(f"--epochs must be at most {MAX_EPOCHS:,} (got {self.epochs:,}); --patience stops "
                                f"early once the validation accuracy stops improving")
        self.lr = parse_lr(self.lr)
        _positive("batch_size", self.batch_size)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("keep", self.keep, KEEP)
        if self.patience is not None:
            _positive("patience", self.patience)
        _choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        if self.threshold is not None:
            _fraction("threshold", self.threshold, 0.0, 1.0)
        _check_seed("seed", self.seed)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0 <= self.weight_decay < math.inf:
            raise HeadtuneError(f"--weight-decay must be 0 or above (got {self.weight_decay!r})")


@dataclass
class OutputConfig:
    output_dir: str = field(default="outputs/imdb_head_only", metadata=_help(
        "Folder for model/, metrics.json and images/."))
    overwrite: bool = field(default=False, metadata=_help("Replace a trained model already in --output-dir."))

    def __post_init__(self):
        _check_switches(self)
        self.output_dir = _path("output_dir", self.output_dir)


@dataclass
class PredictConfig:
    model: str = field(default="outputs/imdb_head_only/model", metadata=_help(
        "Folder of a trained model (headtune's model/ or any AutoModelForSequenceClassification checkpoint)."))
    file: str | None = field(default=None, metadata=_help("Read texts from this file, one per line ('-': stdin)."))
    max_length: int | None = field(default=None, metadata=_help(
        "Truncate texts to this many tokens (default: the length the model was trained with, else the "
        "model's limit)."))
    top_k: int | None = field(default=None, metadata=_help(
        "Return only the N most probable labels per text, most probable first. Default: every label.",
        metavar="N"))
    threshold: float | None = field(default=None, metadata=_help(
        "Multi-label models: the lowest probability at which a label is predicted. Default: the threshold the "
        "model was trained with, else 0.5.", metavar="PROB"))
    batch_size: int = field(default=32, metadata=_help("Texts per forward pass."))
    device: str = field(default="auto", metadata=_help(DEVICE_HELP))
    allow_pickle: bool = field(default=False, metadata=_help(PICKLE_HELP))

    def __post_init__(self):
        _check_switches(self)
        self.model = _path("model", self.model)
        if self.file is not None:
            self.file = _path("file", self.file)
        for name in ("max_length", "top_k"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.threshold is not None:
            _fraction("threshold", self.threshold, 0.0, 1.0)
        _positive("batch_size", self.batch_size)
        _check_device(self.device)


@dataclass
class EvaluateConfig:
    model: str = field(default="outputs/imdb_head_only/model", metadata=_help(
        "Folder of a trained sequence-classification model (headtune's model/ or any other)."))
    split: str = field(default="test", metadata=_help("Which split of --dataset to evaluate on."))
    size: int | None = field(default=None, metadata=_help(
        "Evaluate on a seeded sample of this many texts (stratified; drawn as train's --test-size draws, so "
        "--size 2000 scores the texts of a --small-run's test split). Default: the whole split."))
    sample_seed: int = field(default=42, metadata=_help("Seed of the --size sample (train's --sample-seed)."))
    max_length: int | None = field(default=None, metadata=_help(
        "Truncate texts to this many tokens. Default: the length the model was trained with, else its limit."))
    threshold: float | None = field(default=None, metadata=_help(
        "Multi-label models: the lowest probability at which a label is predicted. Default: the threshold the "
        "model was trained with, else 0.5.", metavar="PROB"))
    output_dir: str | None = field(default=None, metadata=_help(
        "Folder for metrics.json and images/CONFUSION_MATRIX.png. Default: evaluate-<split> beside a run's "
        "model/ folder, else <folder>-evaluate-<split> beside the model folder."))
    batch_size: int = field(default=32, metadata=_help("Texts per forward pass when features are not cached."))
    device: str = field(default="auto", metadata=_help(DEVICE_HELP))
    allow_pickle: bool = field(default=False, metadata=_help(PICKLE_HELP))

    def __post_init__(self):
        _check_switches(self)
        self.model = _path("model", self.model)
        if not isinstance(self.split, str) or not self.split.strip():
            raise HeadtuneError(f"--split must be a split name such as test (got {self.split!r})")
        for name in ("max_length", "size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.threshold is not None:
            _fraction("threshold", self.threshold, 0.0, 1.0)
        _check_seed("sample_seed", self.sample_seed)
        if self.output_dir is not None:
            self.output_dir = _path("output_dir", self.output_dir)
        _positive("batch_size", self.batch_size)
        _check_device(self.device)


def _route(sections: dict[str, type], values: dict) -> dict:
    """Flat settings (`epochs=3`, `dataset="imdb"`, as the CLI flags name them) -> one config per section."""
    values = dict(values)
    routed = {}
    for section, config_cls in sections.items():
        names = {f.name for f in fields(config_cls)}
        routed[section] = config_cls(**{k: values.pop(k) for k in list(values) if k in names})
    if values:
        raise HeadtuneError(f"unknown setting {flag(next(iter(values)))}")
    return routed


TRAIN_SECTIONS = {"data": DataConfig, "model": ModelConfig, "features": FeatureConfig,
                  "train": TrainConfig, "output": OutputConfig}
EVALUATE_SECTIONS = {"evaluate": EvaluateConfig, "data": DataSource, "features": FeatureConfig}


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
        return cls(**_route(TRAIN_SECTIONS, values))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvaluateRun:
    """Everything `headtune evaluate` needs."""

    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    data: DataSource = field(default_factory=DataSource)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    @classmethod
    def from_flat(cls, **values) -> "EvaluateRun":
        return cls(**_route(EVALUATE_SECTIONS, values))
