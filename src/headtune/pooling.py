"""Which pooling `--pooling auto` means for a model: the one it was trained to be read with.

Sentence-embedding models (all-MiniLM, bge, e5, gte, ...) ship a sentence-transformers configuration:
`modules.json` lists a `sentence_transformers.models.Pooling` module, whose folder's `config.json`
says how token states become the sentence vector. Mean or cls pooling there is what `auto` uses;
anything else (max, weighted mean, last token) has no headtune equivalent, so `auto` says so in one
line and reads the architecture's own head input (native). Without such a configuration, `auto` is
native too, so an ordinary checkpoint such as distilbert-base-uncased trains as it always did.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from . import hub

log = logging.getLogger(__name__)

POOLING_MODULE = "sentence_transformers.models.Pooling"
MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
NONE = "no sentence-transformers configuration"
UNREADABLE = object()  # a file that is there but is not JSON (None: no such file)


def _read_json(model: str, filename: str, revision: str | None):
    """A JSON file of a local model folder or a Hub repository (from the local cache when offline): its value,
    None without such a file, UNREADABLE when it is not JSON."""
    if hub.looks_local(model):
        path = Path(model).expanduser() / filename
    else:
        path = hub.cached_file(model, filename, revision)
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return UNREADABLE


def sentence_transformers_pooling(model: str, revision: str | None = None) -> tuple[str | None, str]:
    """(pooling, description): "mean" or "cls" when the model's sentence-transformers configuration says so;
    None with the reason otherwise (no configuration, or a pooling headtune does not offer)."""
    modules = _read_json(model, "modules.json", revision)
    if modules is None:
        return None, NONE
    if not isinstance(modules, list):  # damaged or hand-edited: say so, or the model is read the wrong way silently
        return None, "its sentence-transformers modules.json is not a readable JSON list of modules"
    folder = next((m.get("path") for m in modules if isinstance(m, dict) and m.get("type") == POOLING_MODULE), None)
    if folder is None:
        return None, "its sentence-transformers modules have no Pooling module"
    settings = _read_json(model, f"{folder}/config.json", revision)
    if not isinstance(settings, dict):
        return None, f"its sentence-transformers pooling configuration ({folder}/config.json) cannot be read"
    modes = sorted(key for key, value in settings.items() if key.startswith("pooling_mode") and value)
    if len(modes) == 1 and modes[0] in MODES:
        return MODES[modes[0]], f"sentence-transformers pooling ({folder}/config.json)"
    return None, f"its sentence-transformers pooling ({', '.join(modes) or 'none'}) has no headtune equivalent"


def resolve(requested: str, model: str, revision: str | None = None) -> str:
    """native, cls or mean for --pooling `requested` (auto looks at the model's own configuration)."""
    if requested != "auto":
        return requested
    found, why = sentence_transformers_pooling(model, revision)
    if found is not None:
        log.info("--pooling auto: %s, from the model's %s", found, why)
        return found
    if why != NONE:
        log.warning("--pooling auto: %s; reading the architecture's own head input (native) instead", why)
    return "native"
