"""headtune: head-only fine-tuning of frozen Transformer encoders, with one cached backbone pass.

The API functions live here; the modules behind them are named differently (`training`,
`inference`) so that importing a module never shadows `headtune.train` or `headtune.predict`.
"""
from __future__ import annotations

import contextlib
import os
import sys

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

    # a run seeds torch's global RNG: the caller's is left as it was, and so are transformers' logs and bars
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        return run(RunConfig.from_flat(**settings))


def predict(texts=None, model="outputs/imdb_head_only/model", *, file=None, **settings) -> list[dict]:
    """One dict per text from a saved model folder (str or os.PathLike), as `headtune predict` prints them:
    `{"text", "neg_prob", "pos_prob", "label"}` for two labels; `{"text", "label", "<label>_prob", ...}`, most
    probable first, for more labels or with `top_k=N`; `{"text", "labels", "<label>_prob", ...}` for
    multi-label models. A text cut to the max length gets `"truncated": True`.

    `texts`: one str (one text), or a list, tuple, generator, pandas Series or 1-D numpy array of str, read once;
    a dict, a set, bytes or a 2-D array is refused. Each row's "text" is a plain str. Or `file=PATH` (str or
    os.PathLike; "-" reads stdin) instead of texts: one text per line, read as `headtune predict --file` reads it.
    """
    from .inference import predict as _predict

    with _quiet_transformers():
        return _predict(texts, model=model, file=file, **settings)


def evaluate(**settings) -> dict:
    """Run `headtune evaluate` with settings named as its flags (`model=`, `dataset=`, `split=`, ...).

    Returns the metrics that are also written to `<output_dir>/metrics.json`.
    """
    import torch

    from .config import EvaluateRun
    from .evaluation import evaluate as _evaluate

    with _quiet_transformers(), torch.random.fork_rng(devices=[]):  # as train: the caller's are left as they were
        return _evaluate(EvaluateRun.from_flat(**settings), frozenset(settings))


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load reports and "Loading weights" progress bars off for one API call, as the CLI has them
    off for its whole process, and the caller's settings of them back afterwards: those are the caller's."""
    from huggingface_hub import utils as hub  # ~2 ms; transformers (~3 s) is left to a call that needs it

    hub_bars_off, env = hub.are_progress_bars_disabled(), os.environ.get("TRANSFORMERS_VERBOSITY")
    before = _transformers_output()
    # a call that imports transformers: it reads its verbosity from the environment, its bars from huggingface_hub's
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    hub.disable_progress_bars()
    if before is not None:
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_error()
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if env is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = env
        _restore_transformers(before, hub_bars_off)
        if hub.are_progress_bars_disabled() != hub_bars_off:  # transformers' bar switch sets huggingface_hub's too
            (hub.disable_progress_bars if hub_bars_off else hub.enable_progress_bars)()


def _transformers_output() -> tuple | None:
    """transformers' (verbosity, progress bars on), or None while it is not imported (a warm run never imports it)."""
    if "transformers" not in sys.modules:
        return None
    from transformers.utils import logging as tf_logging

    return tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()


def _restore_transformers(before: tuple | None, hub_bars_off: bool) -> None:
    if "transformers" not in sys.modules:
        return
    from transformers.utils import logging as tf_logging

    # imported by the call: what that import would have set had the call not quieted it (transformers' own reading
    # of $TRANSFORMERS_VERBOSITY, put back above; its bars start as huggingface_hub's were)
    verbosity, bars = before or (tf_logging._get_default_logging_level(), not hub_bars_off)
    tf_logging.set_verbosity(verbosity)
    (tf_logging.enable_progress_bar if bars else tf_logging.disable_progress_bar)()


__all__ = ["__version__", "train", "predict", "evaluate", "HeadtuneError"]
