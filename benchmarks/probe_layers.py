"""Which layer of MiniLM a linear reader does best with: the mean-pooled hidden states of every depth.

headtune reads the last layer (its pooling of the last hidden states), as sentence-transformers does. Probing
studies find intermediate layers often hold more of a task than the last, and a frozen backbone computes every
layer anyway. This probe encodes the IMDb small run (the 4,000 / 2,000 texts `headtune train --small-run` draws,
--max-length 256, each text's start kept) and BANKING77 (the whole 10,003 / 3,080, --max-length 64), mean-pools
the hidden states of every depth over the real tokens (depth 0: the embeddings; depth 6: what headtune reads
today), and fits scikit-learn `LogisticRegression` (C = 1) per depth on the training vectors. It also picks a depth
from the training split alone (5-fold cross-validated accuracy, the honest choice a tool could make) and reports
that depth's test accuracy. It asks what the features hold, not what headtune does.

    python benchmarks/probe_layers.py          # ~15 min on a 2-core CPU

Writes benchmarks/results/layers_<host-kind>.json.
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

BATCH = 32
DATASETS = {  # name: (data settings, max length)
    "imdb-small-run": (dict(dataset=str(common.IMDB_DIR), small_run=True), 256),
    "banking77": (dict(dataset=str(common.IMDB_DIR.parent / "banking77"), label_column="category"), 64),
}


def encode(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """(texts, depths, hidden): the mean over real tokens of each depth's hidden states, texts cut at the end."""
    depths = model.config.num_hidden_layers + 1
    out = np.empty((len(texts), depths, model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(t) for t in texts])  # similar lengths together: little padding
    for start in range(0, len(texts), BATCH):
        rows = order[start:start + BATCH]
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        with torch.inference_mode():
            states = model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out[rows] = torch.stack([(h * mask).sum(1) / mask.sum(1) for h in states], dim=1).numpy()
    return out


def probe(x_train, y_train, x_test, y_test) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    fit = LogisticRegression(C=1.0, max_iter=5000)
    return {"cv_accuracy": float(cross_val_score(fit, x_train, y_train, cv=folds).mean()),
            "test_accuracy": float(np.mean(fit.fit(x_train, y_train).predict(x_test) == y_test))}


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    common.quiet_libraries()
    model_path = common.minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    results = {}
    for name, (settings, max_length) in DATASETS.items():
        splits = load_splits(DataConfig(val_fraction=0.0, **settings))
        started = time.perf_counter()
        x_train = encode(model, tokenizer, list(splits.train.texts), max_length)
        x_test = encode(model, tokenizer, list(splits.test.texts), max_length)
        seconds = time.perf_counter() - started
        depths = {str(d): probe(x_train[:, d], splits.train.labels, x_test[:, d], splits.test.labels)
                  for d in range(x_train.shape[1])}
        chosen = max(depths, key=lambda d: depths[d]["cv_accuracy"])
        results[name] = {"max_length": max_length, "samples": {"train": len(x_train), "test": len(x_test)},
                         "encode_s": round(seconds, 1), "by_depth": depths, "chosen_by_cv": int(chosen),
                         "chosen_test_accuracy": depths[chosen]["test_accuracy"],
                         "last_layer_test_accuracy": depths[str(x_train.shape[1] - 1)]["test_accuracy"]}
        for d, r in depths.items():
            common.log(f"{name} depth {d}: cv {r['cv_accuracy']:.4f} test {r['test_accuracy']:.4f}")
        common.log(f"{name}: chosen by cv depth {chosen}, test {depths[chosen]['test_accuracy']:.4f} ({seconds:.0f} s)")
    host = common.host_kind(torch.device("cpu"))
    path = common.RESULTS_DIR / f"layers_{host}.json"
    common.write_json(path, {**common.run_record("layers", torch.device("cpu")), "model": model_path,
                             "probe": "LogisticRegression(C=1, max_iter=5000) on raw mean-pooled vectors",
                             "results": results})
    common.log(f"wrote {path}")


if __name__ == "__main__":
    main()
