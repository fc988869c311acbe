"""headtune: head-only fine-tuning of frozen Transformer encoders, with one cached backbone pass.

The API functions live here; the modules behind them are named differently (`training`,
`inference`) so that importing a module never shadows `headtune.train` or `headtune.predict`.
"""
from __future__ import annotations

__version__ = "0.1.0"


def train(**settings) -> dict:
    """Run `headtune train` with settings named as its flags (`dataset=`, `model=`, `epochs=`, ...).

    Returns the metrics that are also written to `<output_dir>/metrics.json`.
    """
    from .config import RunConfig
    from .workflow import run

    return run(RunConfig.from_flat(**settings))


def predict(texts, model: str = "outputs/imdb_head_only/model", **settings) -> list[dict]:
    """`[{"text": ..., "<label>_prob": ..., "label": ...}, ...]` for each text, from a saved model folder."""
    from .inference import predict as _predict

    return _predict(texts, model=model, **settings)


__all__ = ["__version__", "train", "predict"]
