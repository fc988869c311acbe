"""Predicting with a saved model: texts in, one dict per text out.

Row shapes (keys in this order):
- two single-label classes, no top_k: {text, <label0>_prob, <label1>_prob, label}, as headtune has always printed;
- otherwise single-label: {text, label, <label>_prob, then the other labels' <name>_prob, most probable first},
  the top_k most probable only when top_k is given;
- multi-label: {text, labels (those at or above the threshold, most probable first), then <name>_prob
  most probable first}, top_k limiting the probabilities listed, not `labels`.
A text cut to the max length gets "truncated": true as its last key.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping

import numpy as np
import torch

from .calibration import DEFAULT_THRESHOLD
from .config import KEPT_END, PredictConfig
from .data import text_problem
from .errors import HeadtuneError, flag
from .features import collate, length_order, resolve_device, tokenize
from .modeling import check_max_length, max_positions
from .saved import encoder_config, load_classifier

log = logging.getLogger(__name__)


def check_texts(texts, source: str = "text") -> list[str]:
    """The texts as a list of plain str: one str is one text; any other iterable of str (list, tuple, generator,
    pandas Series, 1-D numpy array) is read once. Refuses what cannot be classified: no texts, non-strings, empty
    or whitespace-only texts, strings that are not valid Unicode (lone surrogates, e.g. from command-line bytes
    that are not UTF-8), and collections whose items are not texts in an order (see _check_collection)."""
    if isinstance(texts, str):
        texts = [texts]
    _check_collection(texts)
    try:
        texts = list(texts)
    except TypeError:
        raise HeadtuneError(f"texts must be a list of strings (got {type(texts).__name__})") from None
    if not texts:
        raise HeadtuneError("no texts to predict; pass texts as arguments, --file FILE, or - to read stdin")
    for i, text in enumerate(texts, start=1):
        problem = text_problem(text)
        if problem:
            raise HeadtuneError(f"{source} {i} {problem}; every {source} must be non-blank, valid Unicode text")
    return [str(text) for text in texts]  # numpy's str_ (a str subclass) would be the rows' "text": plain str there


def _check_collection(texts) -> None:
    """Refuse iterables whose items are not the texts, or not in an order the rows could follow."""
    name = type(texts).__name__
    if isinstance(texts, (bytes, bytearray)):  # list() would make it a list of ints
        raise HeadtuneError(f"texts must be a list of strings (got {name}); decode the bytes first")
    if isinstance(texts, Mapping):  # list() would take its keys: were they the texts, or the values?
        raise HeadtuneError(f"texts must be a list of strings, not a {name}; pass list(texts.values()) or "
                            f"list(texts) to say which of its values or keys are the texts")
    if isinstance(texts, (set, frozenset)):  # rows in an order that changes from run to run, duplicates merged
        raise HeadtuneError(f"texts must be a list of strings, not a {name}, which has no order; pass a list, "
                            f"e.g. sorted(texts)")
    ndim = getattr(texts, "ndim", 1)  # list() of a 2-D array or a DataFrame gives rows or column names
    if ndim != 1:
        raise HeadtuneError(f"texts must be a list of strings, not a {ndim}-D {name}; pass one column of texts "
                            f"(a 1-D array, a Series or a list)")


def predict(texts=None, model=PredictConfig.model, **settings) -> list[dict]:
    """One row per text from the model folder `model` (see the module docstring for the rows, check_texts for
    the texts, and PredictConfig for the settings). With file=PATH the texts come from that file, one per line,
    read as `headtune predict --file` reads it."""
    cfg = _config(model, settings)
    texts, source = _texts(texts, cfg.file)
    texts = check_texts(texts, source)
    clf, tokenizer, saved = load_classifier(cfg.model, resolve_device(cfg.device), cfg.allow_pickle)
    multi_label = is_multi_label(clf.config, saved)
    threshold = resolve_threshold(cfg.threshold, saved, multi_label)
    max_length = max_length_for(cfg.max_length, clf, tokenizer, saved)
    scores = score_texts(clf, tokenizer, texts, max_length, cfg.batch_size, multi_label)
    check_finite(scores.probs, clf, cfg.model)
    _warn_truncated(scores.truncated, max_length, tokenizer.truncation_side)
    names = label_names(clf.config)
    rows = []
    for text, probs, cut in zip(texts, scores.probs, scores.truncated):
        row = (multi_label_row(text, probs, names, cfg.top_k, threshold) if multi_label
               else single_label_row(text, probs, names, cfg.top_k))
        if cut:
            row["truncated"] = True
        rows.append(row)
    return rows


def _config(model, settings: dict) -> PredictConfig:
    # the API's counterpart of an unknown flag: one line, not the dataclass's TypeError
    known = {f.name for f in dataclasses.fields(PredictConfig)}
    unknown = [name for name in settings if name not in known]
    if unknown:
        raise HeadtuneError(f"unknown setting {flag(unknown[0])}; see headtune predict --help for the settings")
    return PredictConfig(model=model, **settings)


def _texts(texts, file: str | None) -> tuple:
    """The texts, and what to call one of them in an error: the CLI reads --file itself, the API here."""
    if file is None:
        if texts is None:
            raise HeadtuneError("no texts to predict; pass texts (a list of strings) or file=PATH (one text per line)")
        return texts, "text"
    if texts is not None:
        raise HeadtuneError("give texts or file=PATH, not both")
    return read_lines(file), "line"


def read_lines(source: str) -> list[str]:
    """Texts from a file (or '-' for stdin), one per line: `--file` of the CLI and `file=` of the API. Blank lines
    at the end are dropped (editors and `echo` leave them); a blank line between texts stays an error, since it
    may be a lost text."""
    try:
        if source == "-":
            data = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                data = f.read()
    except FileNotFoundError:
        raise HeadtuneError(f"--file {source} does not exist") from None
    except UnicodeDecodeError:
        raise HeadtuneError(f"{'stdin' if source == '-' else source} is not valid UTF-8 text") from None
    except OSError as err:
        raise HeadtuneError(f"cannot read {source}: {err.strerror}") from None
    # one text per line break (\n, \r\n or \r): str.splitlines would also cut a text at a form feed, \x1c-\x1e,
    # \x85 or U+2028, which scraped texts hold; a byte-order mark from Windows tools is not text
    lines = data.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def is_multi_label(config, saved: dict) -> bool:
    problem = getattr(config, "problem_type", None) or saved.get("problem_type")
    return problem == "multi_label_classification"


def resolve_threshold(asked: float | None, saved: dict, multi_label: bool) -> float | None:
    """A multi-label model's threshold: the one asked for, else the one it was trained with, else the default;
    None for a single-label model, where asking for one is refused."""
    if not multi_label:
        if asked is not None:  # a silent no-op would look like a threshold that did nothing
            raise HeadtuneError(f"{flag('threshold')} applies to multi-label models only, and this model is "
                                f"single-label; drop {flag('threshold')}")
        return None
    for value in (asked, saved.get("threshold")):
        if value is not None:
            return float(value)
    return DEFAULT_THRESHOLD


def max_length_for(asked: int | None, model, tokenizer, saved: dict) -> int:
    """The length a saved classifier reads texts at: `asked` (up to what its encoder's positions take), else the
    length the head was trained with (its features never saw tokens beyond it: headtune.json, and the tokenizer's
    model_max_length, which headtune writes as that length), else the model's limit."""
    config = encoder_config(model.config)
    positions = max_positions(config, None)  # the encoder's own limit, whatever the tokenizer records
    if asked is not None:
        check_max_length(asked, positions, tokenizer)
        return asked
    return min(saved.get("max_length") or max_positions(config, tokenizer), positions)


def _warn_truncated(truncated: np.ndarray, max_length: int, side: str) -> None:
    cut = int(truncated.sum())
    if cut:
        log.warning('%d of %d texts were longer than %d tokens and were truncated to them, keeping their %s as in '
                    'training (marked "truncated": true)', cut, len(truncated), max_length,
                    KEPT_END[side])


def label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _most_probable_first(probs: np.ndarray) -> list[int]:
    return np.argsort(-probs, kind="stable").tolist()  # stable: ties keep label order, as argmax does


def single_label_row(text: str, probs: np.ndarray, names: list[str], top_k: int | None = None) -> dict:
    if top_k is None and len(names) == 2:  # the shape headtune has always printed for two labels
        return {"text": text, **{f"{name}_prob": float(p) for name, p in zip(names, probs)},
                "label": names[int(probs.argmax())]}
    order = _most_probable_first(probs)[:top_k]
    return {"text": text, "label": names[order[0]], **{f"{names[i]}_prob": float(probs[i]) for i in order}}


def multi_label_row(text: str, probs: np.ndarray, names: list[str], top_k: int | None, threshold: float) -> dict:
    order = _most_probable_first(probs)
    return {"text": text, "labels": [names[i] for i in order if probs[i] >= threshold],
            **{f"{names[i]}_prob": float(probs[i]) for i in order[:top_k]}}


@dataclasses.dataclass
class Scores:
    probs: np.ndarray  # (texts, labels): softmax, or sigmoid for a multi-label model
    truncated: np.ndarray  # (texts,) bool: the text was cut to max_length


def score_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int,
                multi_label: bool = False) -> Scores:
    """The full model's probabilities, batched by length, in the texts' order, and which texts were cut."""
    tokens = tokenize(tokenizer, texts, max_length)
    order = length_order(np.array([len(x) for x in tokens.ids]))
    device = next(model.parameters()).device
    probs = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for chunk in np.array_split(order, -(-len(order) // batch_size)):
            input_ids, mask = collate([tokens.ids[i] for i in chunk], tokenizer.pad_token_id or 0)
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            probs[chunk] = (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).cpu().numpy()
    return Scores(probs, np.asarray(tokens.truncated, dtype=bool))


def check_finite(probs: np.ndarray, model, folder) -> None:
    """Refuse NaN or infinite outputs: printed, they are not even valid JSON; scored, NaN compares false and
    every text takes one label, so the metrics would look plausible."""
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        damaged = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        more = ", ..." if len(damaged) > 3 else ""
        why = (f"its weights hold NaN or infinite values ({', '.join(damaged[:3])}{more})" if damaged
               else "its computation overflowed")
        raise HeadtuneError(f"the model {folder} gives no finite probabilities for {int(bad.sum()):,} of "
                            f"{len(probs):,} texts: {why}; train it again or restore the folder's weights")


def class_probabilities(model, tokenizer, texts: list[str], max_length: int, batch_size: int,
                        multi_label: bool = False) -> np.ndarray:
    """score_texts' probabilities alone."""
    return score_texts(model, tokenizer, texts, max_length, batch_size, multi_label).probs
