"""Loading the tokenizer and model safely, and freezing everything but the head.

Weights load from safetensors only unless the user opts in to pickle (`--allow-pickle`),
and no code from the Hub runs unless they opt in (`--trust-remote-code`).
"""
from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from . import hub
from .digests import file_sha256
from .config import ModelConfig
from .errors import HeadtuneError, flag
from .architectures import family_of, tokenizer_files

log = logging.getLogger(__name__)

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# The fix for weights and a config.json that do not fit each other, in every message that finds them so.
RESAVE = "save the model and its config again with save_pretrained"
# Any one of these makes a tokenizer; without them transformers builds an empty one that maps every word to [UNK].
TOKENIZER_FILES = tuple(dict.fromkeys(tokenizer_files() + ("vocab.txt", "vocab.json", "spiece.model", "spm.model",
                                                           "sentencepiece.bpe.model", "tokenizer.model",
                                                           "sentencepiece.model")))


@dataclass
class LoadedModel:
    model: nn.Module  # the ...ForSequenceClassification model, eval mode
    new_keys: set[str]  # weights the checkpoint lacked, so loading initialised them (the head, and maybe more)


def _check_local_folder(path: Path, allow_pickle: bool, what: str = "model") -> None:
    if not path.is_dir():
        raise HeadtuneError(f"{what} folder {path} does not exist; pass an existing folder with {flag('model')}"
                            if not path.exists() else f"{what} path {path} is a file; pass a model folder")
    if not (path / "config.json").is_file():
        hint = (f"; did you mean {path / 'model'}?" if (path / "model" / "config.json").is_file()
                else "; pass the folder that holds config.json, the weights and the tokenizer")
        raise HeadtuneError(f"{path} is not a model folder: it has no config.json{hint}")
    if not any((path / f).is_file() for f in SAFE_WEIGHTS):
        if any((path / f).is_file() for f in PICKLE_WEIGHTS):
            if not allow_pickle:
                raise HeadtuneError(f"{path} holds only pickle weights (pytorch_model.bin), which can run code when "
                                    f"loaded; convert them to safetensors or pass {flag('allow_pickle')} if you "
                                    f"trust the file")
        else:
            raise HeadtuneError(f"{path} has no model weights: expected model.safetensors (save the model with "
                                f"save_pretrained(..., safe_serialization=True))")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise HeadtuneError(f"{path} has no tokenizer files (tokenizer.json or vocab.txt, ...); save the tokenizer "
                            f"into the model folder with tokenizer.save_pretrained({str(path)!r})")
    for weights in sorted(path.glob("*.safetensors")):  # each header read (milliseconds): a cut or damaged file
        try:                                            # is refused now, not after the data is read
            with safe_open(weights, framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HeadtuneError(f"{weights} is damaged ({reason}); save the model again with save_pretrained") \
                from None


def _load(cls, name: str, cfg: ModelConfig, **kwargs):
    """`cls.from_pretrained` with headtune's safety settings and one-line errors."""
    local = hub.looks_local(name)
    kwargs.update(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    if not local and not hub.hub_reachable():
        kwargs["local_files_only"] = True  # the HF cache may hold it; skip 45 s of network retries
    try:
        return cls.from_pretrained(str(Path(name).expanduser()) if local else name, **kwargs)
    except (OSError, ValueError, KeyError, SafetensorError, RuntimeError) as err:  # KeyError: an unknown model_type
        text = str(err).strip()
        mismatched = isinstance(err, RuntimeError) and "mismatch" in text
        if isinstance(err, RuntimeError) and not mismatched:  # not about the files: a failure of headtune's own
            raise
        if kwargs.get("local_files_only") and not local:
            raise HeadtuneError(hub.offline_message("model", name)) from err
        reason = text.splitlines()[0] if text else type(err).__name__
        if isinstance(err, SafetensorError):
            reason = f"a weights file is damaged ({reason}); save the model again with save_pretrained"
        elif mismatched:  # transformers' details went to its log, which headtune keeps quiet
            reason = ("its weights do not fit its config.json (a layer's shape differs, e.g. the classifier's from "
                      f"num_labels or id2label); {RESAVE}")
        elif "trust_remote_code" in text or "custom code" in text:
            reason = (f"it needs its own Python code to load, which headtune does not run by default; "
                      f"pass {flag('trust_remote_code')} if you trust that code")
        what = {"AutoTokenizer": "tokenizer", "AutoConfig": "config"}.get(cls.__name__, "model")
        raise HeadtuneError(f"cannot load the {what} from '{name}': {reason}") from err


def load_tokenizer(name: str, cfg: ModelConfig):
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer, name, cfg)
    vocab = tokenizer.get_vocab()
    if len(vocab) <= len(set(tokenizer.all_special_tokens)):  # an empty tokenizer: every word would be [UNK]
        raise HeadtuneError(f"the tokenizer of '{name}' has no vocabulary (only special tokens); save the model's "
                            f"tokenizer into the folder with tokenizer.save_pretrained(...)")
    tokenizer.truncation_side = cfg.truncation_side  # every call cuts this end; save_pretrained records it
    return tokenizer


def max_positions(model_or_config, tokenizer) -> int:
    """The longest input, in tokens, that both the tokenizer and the model's position embeddings accept."""
    config = getattr(model_or_config, "config", model_or_config)
    limits = []
    if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
        limits.append(tokenizer.model_max_length)
    positions = getattr(config, "max_position_embeddings", None)
    if positions and positions > 0:  # XLNet's is -1: no limit
        family = family_of(config.model_type)
        limits.append(positions - (family.position_offset if family else 0))
    return min(limits) if limits else 512


def check_max_length(max_length: int, limit: int, tokenizer=None) -> None:
    """`max_length` within the model's limit and, given the tokenizer, above the special tokens it adds to every
    text (at or below them, transformers leaves texts uncut, or keeps only [CLS] [SEP]: every text the same)."""
    if max_length > limit:
        raise HeadtuneError(f"{flag('max_length')} {max_length} is above this model's limit of {limit} tokens; "
                            f"pass {flag('max_length')} {limit} or less")
    specials = tokenizer.num_special_tokens_to_add() if tokenizer is not None else 0
    if max_length <= specials:
        raise HeadtuneError(f"{flag('max_length')} {max_length} leaves no room for text: this model's tokenizer adds "
                            f"{specials} special tokens to every text; pass {flag('max_length')} {specials + 1} or "
                            f"more")


def check_model(cfg: ModelConfig):
    """Check everything about --model that is cheap to check (folder, weights, tokenizer, config, --max-length),
    so a bad model stops the run before the data is read or any weights are loaded.
    Returns (tokenizer, config); neither needs the model's code."""
    from transformers import AutoConfig

    if hub.looks_local(cfg.model):
        _check_local_folder(Path(cfg.model).expanduser(), cfg.allow_pickle)
    tokenizer = load_tokenizer(cfg.model, cfg)
    config = _load(AutoConfig, cfg.model, cfg)
    check_max_length(cfg.max_length, max_positions(config, tokenizer), tokenizer)
    if hub.looks_local(cfg.model):
        from transformers import AutoModelForSequenceClassification

        check_size(Path(cfg.model).expanduser(), config,
                   lambda c: AutoModelForSequenceClassification.from_config(c, trust_remote_code=cfg.trust_remote_code))
    return tokenizer, config


def stored_parameters(folder: Path) -> int:
    """How many numbers the folder's safetensors files hold, from their headers (no tensor is read)."""
    total = 0
    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(weights, framework="pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def check_size(folder: Path, config, build: Callable[[object], nn.Module]) -> None:
    """Refuse a folder whose config.json describes a model more than twice the size of its weights.

    A config.json edited to another model_type (or copied from another model) makes transformers build that
    model and fill what the weights lack at random: for a large architecture's defaults that is billions of
    parameters, and the process is killed for memory. `build(config)` runs on the meta device (no memory)."""
    stored = stored_parameters(folder)
    if not stored:  # pickle weights only: their size is not known without unpickling them
        return
    try:
        with torch.device("meta"):
            wanted = sum(p.numel() for p in build(config).parameters())
    except (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError, KeyError):
        return  # a class that cannot be built on the meta device: loading says what is wrong, if anything
    if wanted > 2 * stored:
        raise HeadtuneError(f"cannot load the model from '{folder}': its config.json describes a "
                            f"{getattr(config, 'model_type', '?')} model of {wanted:,} parameters, but its weights "
                            f"hold {stored:,}; the config does not belong to these weights ({RESAVE})")


def load_for_training(cfg: ModelConfig, label_names: list[str], seed: int, tokenizer, class_config: dict | None = None,
                      problem_type: str = "single_label_classification") -> LoadedModel:
    """The sequence-classification model for these labels, every weight frozen, in eval mode.

    `class_config`: config settings for the class: those it needs to read the chosen pooling (ModernBERT's
    classifier_pooling), and the layer count of a --depth cut (Family.cut_config).
    Which weights train is the caller's choice: a registered family's head is headtune's own module
    (architectures.HeadPlan); the fallback trains the modules loading left new (`fallback_head`).
    """
    from transformers import AutoModelForSequenceClassification

    # What loading initialises (the fallback's head, backbone weights a checkpoint lacks) draws from torch's
    # global RNG: seeding here makes it reproducible. (Registered heads are headtune's own: HeadPlan.new_head.)
    torch.manual_seed(seed)
    model, info = _load(
        AutoModelForSequenceClassification, cfg.model, cfg,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        problem_type=problem_type,
        use_safetensors=None if cfg.allow_pickle else True,
        # in fp32 whatever the checkpoint stores (many ship bf16): the head trains in fp32, the cache's checksums
        # go through numpy (which has no bf16), and on a GPU autocast gives the pass its bf16 speed anyway
        dtype=torch.float32,
        ignore_mismatched_sizes=True,  # a checkpoint with another label set gets a new head
        output_loading_info=True,
        **(class_config or {}),
    )
    check_max_length(cfg.max_length, max_positions(model, tokenizer))
    for p in model.parameters():
        p.requires_grad_(False)
    new_keys = set(info.get("missing_keys", ())) | {k for k, *_ in info.get("mismatched_keys", ())}
    missing, total = backbone_missing(model, new_keys)
    if 2 * missing > total:  # a random backbone: features, and so the head, would mean nothing
        raise HeadtuneError(f"cannot load the model from '{cfg.model}': its weights hold only {total - missing:,} of "
                            f"the {total:,} backbone parameters its config.json (model type "
                            f"'{model.config.model_type}') describes; the config does not belong to these weights "
                            f"({RESAVE})")
    return LoadedModel(model.eval(), new_keys)


def check_depth(depth: int, config, registered: bool, model_type: str) -> None:
    """--depth: a registered family (it knows how to cut its config), and no more layers than the model has.
    `config`: the model's (or, from the cache, the cut model's, which has exactly `depth`)."""
    if not registered:
        raise HeadtuneError(f"{flag('depth')} needs an architecture headtune has an entry for (`headtune models` "
                            f"lists them); model type '{model_type}' trains through its own class: drop "
                            f"{flag('depth')}")
    layers = getattr(config, "num_hidden_layers", None)
    if layers is not None and depth > layers:
        raise HeadtuneError(f"{flag('depth')} {depth} is more layers than the model has ({layers}); pass 1 to "
                            f"{layers}, or leave it out to keep them all")


def backbone_missing(model: nn.Module, keys: set[str]) -> tuple[int, int]:
    """(parameters of the backbone among `keys`, parameters of the backbone)."""
    base = model.base_model
    prefix = "" if base is model else f"{model.base_model_prefix}."
    sizes = {prefix + name: p.numel() for name, p in base.named_parameters()}
    return sum(sizes.get(key, 0) for key in keys), sum(sizes.values())


def quantize_backbone(model: nn.Module) -> None:
    """Dynamic int8 quantization of the backbone's Linear layers, in place (torch's own, on the CPU):
    weights stored as int8, activations quantized per batch. Only the backbone pass uses it."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its successor (torchao); it still works
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model.base_model, {nn.Linear}, dtype=torch.qint8)
    setattr(model, model.base_model_prefix, quantized)


def fallback_head(model: nn.Module, new_keys: set[str]) -> tuple[str, ...]:
    """An unregistered architecture's head: the top-level modules that loading left new, the backbone excepted
    (a few backbone weights the checkpoint lacks stay frozen at random: load_for_training refuses many)."""
    modules = tuple(sorted({key.split(".")[0] for key in new_keys} - {model.base_model_prefix}))
    if not modules:
        raise HeadtuneError(f"cannot tell which modules form the classification head of model type "
                            f"'{model.config.model_type}'")
    return modules


def unfreeze(model: nn.Module, modules: tuple[str, ...]) -> tuple[int, int]:
    """Make exactly these top-level modules trainable; returns (trainable, frozen) parameter counts."""
    trainable = {id(p) for name in modules for p in getattr(model, name).parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    head = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return head, sum(p.numel() for p in model.parameters()) - head


class ConfigView:
    """A model config's values with attribute access, as transformers' config objects give them (aliases
    such as DistilBERT's hidden_size -> dim included), without transformers: the body cache keeps one, so a
    run whose features are cached builds its head without importing transformers (~3 s)."""

    def __init__(self, values: dict, attribute_map: dict | None = None):
        self.__dict__["_values"] = dict(values)
        self.__dict__["_aliases"] = dict(attribute_map or {})

    @classmethod
    def of(cls, config) -> "ConfigView":
        """The view of a transformers config (or a view itself)."""
        if isinstance(config, ConfigView):
            return config
        return cls(config.to_dict(), type(config).attribute_map)

    def __getattr__(self, name: str):
        values = self.__dict__["_values"]
        key = self.__dict__["_aliases"].get(name, name)
        if key not in values:
            raise AttributeError(name)
        return values[key]

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError("a ConfigView is read-only")

    def to_dict(self) -> dict:
        return dict(self._values)

    @property
    def attribute_map(self) -> dict:
        return dict(self._aliases)


# Files that make up a tokenizer on disk: together they identify it (its content, not its name).
TOKENIZER_STATE = TOKENIZER_FILES + ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                     "merges.txt")


def identity(cfg: ModelConfig, folder: Path | None, model_type: str,
             digest: Callable[[Path], str] = file_sha256) -> dict:
    """Everything about the model and tokenizer that changes the features, from the files alone (no model or
    tokenizer object, so a run can look its features up without loading either).

    A local folder: its weight, tokenizer and config files by content (SHA-256, `digest`: digests.DigestMemo remembers
    them across runs), not by name or path. A Hub model: the repository and the commit its files in the local Hub
    cache come from (a commit's files never change)."""
    # --depth cuts the model: another model, with its own features and body (absent when unset: keys as before)
    cut = {"depth": cfg.depth} if isinstance(cfg.depth, int) else {}  # auto: the whole model (depth.py)
    if folder is None or not hub.looks_local(cfg.model):
        commit = folder.name if folder is not None else None  # the Hub cache's snapshots/<commit>/ folder
        return {"model_type": model_type, "weights": {"repo": cfg.model, "revision": cfg.revision, "commit": commit},
                **cut}
    patterns = ("*.safetensors", "*.bin") if cfg.allow_pickle else ("*.safetensors",)
    weights = {p.name: digest(p) for pattern in patterns for p in sorted(folder.glob(pattern))}
    tokenizer = {name: digest(folder / name) for name in TOKENIZER_STATE if (folder / name).is_file()}
    # config.json too: the same weights under other settings (attention heads, activation) give other features
    return {"model_type": model_type, "weights": weights, "tokenizer": tokenizer,
            "config": digest(folder / "config.json"), **cut}


class ModelSource:
    """--model before anything is loaded: where its files are, its config.json, its identity.

    Checking it as far as its files allow is cheap; the tokenizer and the transformers config (`checked`)
    are loaded only when a run needs them, i.e. when something it needs is not in the cache.
    """

    def __init__(self, cfg: ModelConfig, digest: Callable[[Path], str] = file_sha256):
        self.cfg, self.digest = cfg, digest
        self.local = hub.looks_local(cfg.model)
        self._checked, self._identity = None, None
        if self.local:
            self.folder = Path(cfg.model).expanduser()
            _check_local_folder(self.folder, cfg.allow_pickle)
            if cfg.revision is not None:
                log.warning("--revision applies to Hub models: the local folder %s is used as it is", cfg.model)
        else:  # the Hub cache's copy, if it has one; else transformers fetches it (`checked`)
            found = hub.cached_file(cfg.model, "config.json", cfg.revision, download=False)
            self.folder = Path(found).parent if found else None
            if self.folder is None:
                self.checked()
        self.config_json = _read_config(self.folder / "config.json")

    @property
    def model_type(self) -> str:
        return self.config_json.get("model_type", "")

    def with_config(self, cfg: ModelConfig) -> "ModelSource":
        """The same files under other settings (--depth auto's chosen cut): their checks and warnings were
        done; what depends on the settings (the loaded config, the identity) is found again when asked for."""
        other = copy.copy(self)
        other.cfg, other._checked, other._identity = cfg, None, None
        return other

    def checked(self):
        """(tokenizer, transformers config), loaded and checked once (this imports transformers)."""
        if self._checked is None:
            self._checked = check_model(self.cfg)
            if self.folder is None:
                from transformers.utils import cached_file

                self.folder = Path(cached_file(self.cfg.model, "config.json", revision=self.cfg.revision)).parent
        return self._checked

    def identity(self) -> dict:
        if self._identity is None:  # hashed once per run, however many stages ask
            self._identity = identity(self.cfg, self.folder, self.model_type, self.digest)
        return self._identity


def _read_config(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HeadtuneError(f"{path} is not a readable JSON file ({err}); save the model again with "
                            f"save_pretrained") from None
    if not isinstance(values, dict):
        raise HeadtuneError(f"{path} must hold a JSON object; save the model again with save_pretrained")
    return values


