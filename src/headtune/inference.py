"""Predicting with a saved model: texts in, one {text, <label>_prob..., label} dict per text out."""
from __future__ import annotations

import numpy as np
import torch

from .config import PredictConfig
from .data import text_problem
from .errors import HeadtuneError
from .features import collate, length_order, resolve_device, tokenize
from .modeling import check_max_length, load_classifier, max_positions


def check_texts(texts, source: str = "text") -> list[str]:
    """Refuse what cannot be classified: no texts, non-strings, empty or whitespace-only texts, and
    strings that are not valid Unicode (lone surrogates, e.g. from command-line bytes that are not UTF-8)."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise HeadtuneError(f"texts must be a list of strings (got {type(texts).__name__})") from None
    if not texts:
        raise HeadtuneError("no texts to predict; pass texts as arguments, --file FILE, or - to read stdin")
    for i, text in enumerate(texts, start=1):
        problem = text_problem(text)
        if problem:
            raise HeadtuneError(f"{source} {i} {problem}; every {source} must hold UTF-8 text")
    return texts


def predict(texts, model: str = PredictConfig.model, **settings) -> list[dict]:
    """Class probabilities for each text from the model folder `model` (see PredictConfig for settings)."""
    cfg = PredictConfig(model=model, **settings)
    texts = check_texts(texts)
    clf, tokenizer = load_classifier(cfg.model, resolve_device(cfg.device), cfg.allow_pickle)
    limit = max_positions(clf, tokenizer)
    if cfg.max_length is not None:
        check_max_length(cfg.max_length, limit)
    probs = class_probabilities(clf, tokenizer, texts, cfg.max_length or limit, cfg.batch_size)
    names = [clf.config.id2label[i] for i in range(clf.config.num_labels)]
    return [{"text": text, **{f"{name}_prob": float(p) for name, p in zip(names, row)}, "label": names[int(row.argmax())]}
            for text, row in zip(texts, probs)]


def class_probabilities(model, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """Softmax of the full model's logits, batched by length, in the texts' order."""
    ids = tokenize(tokenizer, texts, max_length).ids
    order = length_order(np.array([len(x) for x in ids]))
    device = next(model.parameters()).device
    probs = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for chunk in np.array_split(order, -(-len(order) // batch_size)):
            input_ids, mask = collate([ids[i] for i in chunk], tokenizer.pad_token_id or 0)
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            probs[chunk] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs
