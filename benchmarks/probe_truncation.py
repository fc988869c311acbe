"""Which 256 tokens of an IMDb review a linear reader of MiniLM's mean-pooled vectors does best with.

headtune (by default), like transformers' tokenizers and sentence-transformers, keeps a long text's first --max-length tokens.
Reviews often state their verdict at the end. This probe encodes the IMDb small run (the 4,000 / 2,000 texts
`headtune train --small-run` draws) three ways at 256 tokens (the first 254 word pieces, the last 254, and the
first 64 + last 190, each between [CLS] and [SEP]), mean-pools the last hidden states over the real tokens as the
model's sentence-transformers configuration says, and fits scikit-learn `LogisticRegression` (C = 0.3, 1, 3) on
the 4,000 training vectors. It asks what the features hold, not what headtune does (for that, with
`--truncation-side left`: bench_truncation.py).

    python benchmarks/probe_truncation.py          # ~10 min on a 2-core CPU

Writes benchmarks/results/truncation_<host-kind>.json.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from headtune.config import DataConfig  # noqa: E402
from headtune.data import load_splits  # noqa: E402

MAX_LENGTH = 256
WAYS = {"first 254": (254, 0), "last 254": (0, 254), "first 64 + last 190": (64, 190)}
BATCH = 32


def encode(model, tokenizer, texts: list[str], head: int, tail: int) -> np.ndarray:
    """Mean-pooled last hidden states of each text cut to `head` first + `tail` last word pieces."""
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    pieces = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = np.argsort([len(p) for p in pieces])  # similar lengths together: little padding
    for start in range(0, len(texts), BATCH):
        rows = order[start:start + BATCH]
        ids = []
        for i in rows:
            p = pieces[i]
            kept = p if len(p) <= head + tail else p[:head] + (p[len(p) - tail:] if tail else [])
            ids.append([tokenizer.cls_token_id, *kept, tokenizer.sep_token_id])
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out[rows] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    return out


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    common.quiet_libraries()
    model_path = common.minilm_path()
    splits = load_splits(DataConfig(dataset=str(common.IMDB_DIR), small_run=True, val_fraction=0.0))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    train, test = list(splits.train.texts), list(splits.test.texts)
    results = {}
    for name, (head, tail) in WAYS.items():
        started = time.perf_counter()
        x_train, x_test = encode(model, tokenizer, train, head, tail), encode(model, tokenizer, test, head, tail)
        seconds = time.perf_counter() - started
        accuracy = {}
        for c in (0.3, 1.0, 3.0):
            probe = LogisticRegression(C=c, max_iter=5000).fit(x_train, splits.train.labels)
            accuracy[str(c)] = float(np.mean(probe.predict(x_test) == splits.test.labels))
        results[name] = {"head_tokens": head, "tail_tokens": tail, "test_accuracy_by_C": accuracy,
                         "encode_s": round(seconds, 1)}
        common.log(f"{name}: test accuracy {accuracy} ({seconds:.0f} s)")
    host = common.host_kind(torch.device("cpu"))
    path = common.RESULTS_DIR / f"truncation_{host}.json"
    common.write_json(path, {**common.run_record("truncation", torch.device("cpu")), "model": model_path,
                             "max_length": MAX_LENGTH, "samples": {"train": len(train), "test": len(test)},
                             "results": results})
    common.log(f"wrote {path}")


if __name__ == "__main__":
    main()
