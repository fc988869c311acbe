"""headtune: head-only fine-tuning of frozen Transformer encoders, with one cached backbone pass.

The API functions live here; the modules behind them are named differently (`training`,
`inference`) so that importing a module never shadows `headtune.train` or `headtune.predict`.
"""
from __future__ import annotations

from .errors import HeadtuneError  # what every bad input raises, with the line the CLI prints

__version__ = "0.1.0"


def train(**settings) -> dict:
    """Run `headtune train` with settings named as its flags (`dataset=`, `model=`, `epochs=`, ...).

    Returns the metrics that are also written to `<output_dir>/metrics.json` (plus `timings_s.total_with_save`,
    which the file, written by that save, cannot hold); in a run of several processes
    (torchrun, accelerate launch) only the main process gets them, the others None.
    """
    import torch

    from .config import RunConfig
    from .workflow import run

    with torch.random.fork_rng(devices=[]):  # a run seeds torch's global RNG: the caller's is left as it was
        return run(RunConfig.from_flat(**settings))


def predict(texts, model="outputs/imdb_head_only/model", **settings) -> list[dict]:
    """One dict per text from a saved model folder (str or os.PathLike), as `headtune predict` prints them:
    `{"text", "neg_prob", "pos_prob", "label"}` for two labels; `{"text", "label", "<label>_prob", ...}`, most
    probable first, for more labels or with `top_k=N`; `{"text", "labels", "<label>_prob", ...}` for
    multi-label models. A text cut to the max length gets `"truncated": True`."""
    from .inference import predict as _predict

    return _predict(texts, model=model, **settings)


def evaluate(**settings) -> dict:
    """Run `headtune evaluate` with settings named as its flags (`model=`, `dataset=`, `split=`, ...).

    Returns the metrics that are also written to `<output_dir>/metrics.json`.
    """
    import torch

    from .config import EvaluateRun
    from .evaluation import evaluate as _evaluate

    with torch.random.fork_rng(devices=[]):  # as train: the caller's global RNG is left as it was
        return _evaluate(EvaluateRun.from_flat(**settings), frozenset(settings))


__all__ = ["__version__", "train", "predict", "evaluate", "HeadtuneError"]
