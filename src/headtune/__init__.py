"""headtune: head-only fine-tuning of frozen Transformer encoders, with one cached backbone pass."""
from __future__ import annotations

import sys
import types

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
    from .predict import predict as _predict

    return _predict(texts, model=model, **settings)


_API = {"train": train, "predict": predict}


class _ApiModule(types.ModuleType):
    """A submodule named like an API function (`headtune.train`, `headtune.predict`): calling it calls the function."""

    def __call__(self, *args, **kwargs):
        return _API[self.__name__.rpartition(".")[2]](*args, **kwargs)


class _Package(types.ModuleType):
    # Importing a submodule sets it as an attribute of the package, which would replace the function of the
    # same name: `headtune.train(...)` would then fail with "'module' object is not callable". The submodule
    # is made callable instead, so the name works as both.
    def __setattr__(self, name, value):
        if name in _API and type(value) is types.ModuleType:
            value.__class__ = _ApiModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["__version__", "train", "predict"]
