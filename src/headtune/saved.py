"""Loading a saved classifier folder for prediction: its model, its tokenizer and headtune's record of
how it was trained (`headtune.json`).

A folder holds either an ordinary transformers checkpoint, which loads through
`AutoModelForSequenceClassification`, or a headtune "pooled" checkpoint (model_type `headtune_pooled`),
which loads through headtune's own installed `pooled_model` module. No code from the folder ever runs:
its `modeling_headtune.py` is there for transformers users who opt in to `trust_remote_code`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .config import ModelConfig
from .errors import HeadtuneError
from .modeling import RESAVE, _check_local_folder, _load, check_size

SETTINGS_FILE = "headtune.json"
POOLED_MODEL_TYPE = "headtune_pooled"
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")


def read_settings(folder) -> dict:
    """headtune.json of a model folder, or {} when there is none (a checkpoint from elsewhere).

    The keys predict relies on are checked here, so a damaged file stops with one line naming it."""
    path = Path(folder).expanduser() / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HeadtuneError(f"{path} is not valid JSON ({err}); restore it from the training run or delete it") \
            from None
    except OSError as err:
        raise HeadtuneError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(settings, dict):
        raise HeadtuneError(f"{path} must hold a JSON object (got {type(settings).__name__}); restore it from the "
                            f"training run or delete it")
    _check_settings(path, settings)
    return settings


def write_settings(folder, settings: dict) -> None:
    """headtune.json: how the folder was trained (pooling, max length, threshold, where its features came
    from, the checkpoint's SHA-256), for `headtune predict` and `headtune evaluate`."""
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _check_settings(path: Path, settings: dict) -> None:
    max_length, threshold = settings.get("max_length"), settings.get("threshold")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length <= 0):
        _bad_setting(path, "max_length", "an integer above 0", max_length)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold) or not 0 <= threshold <= 1):
        _bad_setting(path, "threshold", "a number from 0 to 1", threshold)
    if settings.get("problem_type") not in (None, *PROBLEM_TYPES):
        _bad_setting(path, "problem_type", " or ".join(PROBLEM_TYPES), settings["problem_type"])


def _bad_setting(path: Path, key: str, expected: str, value) -> None:
    raise HeadtuneError(f"{path}: '{key}' must be {expected} (got {value!r}); fix it or delete the key")


def load_classifier(folder, device: torch.device, allow_pickle: bool = False):
    """(model, tokenizer, settings) from a saved sequence-classification folder, the model on `device` in
    eval mode; settings are its headtune.json ({} when it has none)."""
    folder = Path(folder).expanduser()
    _check_local_folder(folder, allow_pickle)
    settings = read_settings(folder)
    cfg = ModelConfig(model=str(folder), allow_pickle=allow_pickle)  # trust_remote_code stays off
    # fp32, as training loads its backbone: a folder saved in bf16 or fp16 is scored like the training run scored it
    weights = {"use_safetensors": None if allow_pickle else True, "dtype": torch.float32}
    if _model_type(folder) == POOLED_MODEL_TYPE:
        from .pooled_model import HeadtunePooledConfig, HeadtunePooledForSequenceClassification

        config = _load(HeadtunePooledConfig, str(folder), cfg)
        _check_classifier(folder, config)
        # the tokenizer belongs to the encoder; given no config, AutoTokenizer would resolve the folder's
        # custom model_type through AutoConfig, which asks whether to run the folder's code
        tokenizer = _load_tokenizer(folder, cfg, _encoder_config(folder, config))
        check_size(folder, config, HeadtunePooledForSequenceClassification)
        model, info = _load(HeadtunePooledForSequenceClassification, str(folder), cfg, config=config,
                            output_loading_info=True, **weights)
    else:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = _load(AutoConfig, str(folder), cfg)
        _check_classifier(folder, config)
        tokenizer = _load_tokenizer(folder, cfg, config)
        check_size(folder, config, AutoModelForSequenceClassification.from_config)
        model, info = _load(AutoModelForSequenceClassification, str(folder), cfg, config=config,
                            output_loading_info=True, **weights)
    _check_complete(folder, config, info.get("missing_keys", ()))
    return model.to(device).eval(), tokenizer, settings


def _check_complete(folder: Path, config, missing) -> None:
    """A trained classifier holds every weight it uses: one missing was initialised at random just now, so
    its predictions would not be the trained model's (a config.json edited to another model type, say)."""
    if missing:
        names = sorted(missing)
        raise HeadtuneError(f"cannot load the model from '{folder}': its weights lack {len(names)} tensor(s) that its "
                            f"config.json (model type '{config.model_type}') needs ({', '.join(names[:3])}"
                            f"{', ...' if len(names) > 3 else ''}); {RESAVE}")


def encoder_config(config):
    """The config that describes the encoder (its model type, its position limit): a pooled model's
    encoder, else the config itself."""
    return config.encoder_config() if getattr(config, "model_type", None) == POOLED_MODEL_TYPE else config


def _model_type(folder: Path) -> str | None:
    """config.json's model_type, read as plain JSON: deciding how to load must not run the folder's code.

    A model type that is neither transformers' own nor headtune's would need the folder's code: refused here,
    since predict has no --trust-remote-code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise HeadtuneError(f"{folder / 'config.json'} is not a readable JSON object ({err}); save the model "
                            f"again with save_pretrained") from None
    if model_type is not None and model_type != POOLED_MODEL_TYPE and model_type not in CONFIG_MAPPING_NAMES:
        raise HeadtuneError(f"cannot load the model from '{folder}': its model type '{model_type}' is not one of "
                            f"transformers' own, and headtune runs no code from a model folder; load it with "
                            f"transformers and trust_remote_code=True instead")
    return model_type


def _encoder_config(folder: Path, config):
    try:
        return encoder_config(config)
    except (KeyError, ValueError) as err:  # an encoder entry without a model_type transformers knows
        raise HeadtuneError(f"cannot load the model from '{folder}': its config.json has no usable 'encoder' "
                            f"entry ({err}); save the model again with headtune train") from None


def _check_classifier(folder: Path, config) -> None:
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        raise HeadtuneError(f"{folder} is not a text-classification checkpoint (its architecture is "
                            f"{', '.join(config.architectures or ['unknown'])}); train one with headtune train")
    if config.num_labels < 2 or getattr(config, "problem_type", None) == "regression":
        raise HeadtuneError(f"{folder} is a regression checkpoint ({config.num_labels} output"
                            f"{'' if config.num_labels == 1 else 's'}, no classes), not a classifier; headtune "
                            f"predicts and evaluates classifiers of two or more labels")
    ids = sorted(config.id2label or {})
    if ids != list(range(len(ids))):  # transformers keeps id2label as written; predictions are named by 0..n-1
        raise HeadtuneError(f"{folder / 'config.json'}: id2label must name the labels 0 to {len(ids) - 1} (its ids are "
                            f"{', '.join(map(str, ids[:6]))}{', ...' if len(ids) > 6 else ''}); fix config.json or "
                            f"save the model again with save_pretrained")


def _load_tokenizer(folder: Path, cfg: ModelConfig, config):
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer, str(folder), cfg, config=config)
    if len(tokenizer.get_vocab()) <= len(set(tokenizer.all_special_tokens)):  # every word would be [UNK]
        raise HeadtuneError(f"the tokenizer of '{folder}' has no vocabulary (only special tokens); save the model's "
                            f"tokenizer into the folder with tokenizer.save_pretrained(...)")
    return tokenizer
