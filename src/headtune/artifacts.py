"""The run's artifacts: model folder, metrics.json and the charts, written atomically.

Everything is first written to a temporary folder (inside the output folder if it exists, else beside
it: on the same filesystem) and then renamed into place, so a crash or Ctrl-C never leaves a half-written `model/` or
`metrics.json` behind, and an earlier run's artifacts survive until the new ones are whole.

metrics.json is written first, so that charts drawn by a second process (drawing.py) read the very
file they illustrate while this one saves the model.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from . import atomic
from .drawing import Charts
from .errors import HeadtuneError, flag

ARTIFACTS = ("model", "images", "metrics.json")


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = True) -> None:
    """Refuse, before any work is done, a folder that cannot be written, and to replace a trained model
    unless asked to."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise HeadtuneError(f"{flag('output_dir')} {out} is a file, not a folder")
    if (out / "model").exists() and not overwrite:
        raise HeadtuneError(f"{out} already holds a trained model; pass {flag('overwrite')} to replace it "
                            f"or choose another {flag('output_dir')}")
    if out.is_dir() and not os.access(out, os.W_OK):  # the artifacts are staged inside it
        raise HeadtuneError(f"cannot write to {out}; choose another {flag('output_dir')}")
    parent = atomic.nearest_existing(out.resolve().parent)
    if not parent.is_dir():
        raise HeadtuneError(f"{flag('output_dir')} {out} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise HeadtuneError(f"cannot write to {parent}; choose another {flag('output_dir')}")


def write_artifacts(output_dir: str | os.PathLike, save_model: Callable[[Path], None], metrics: dict,
                    charts: Charts, overwrite: bool) -> Path:
    """Save metrics.json, the charts (`charts`, drawn into images/) and model/ (`save_model(folder)` writes it)
    under output_dir, each renamed into place whole."""
    out = Path(output_dir)
    with atomic.disk_errors(lambda problem: f"cannot write to {out}: {problem}; nothing of this run was written "
                                            f"there: free space or choose another {flag('output_dir')} (with its "
                                            f"features cached, a rerun costs seconds)"):
        return _write(out, save_model, metrics, charts, overwrite)


def _write(out: Path, save_model: Callable[[Path], None], metrics: dict, charts: Charts, overwrite: bool) -> Path:
    check_output_dir(out, overwrite)  # again: another run may have finished meanwhile
    out.parent.mkdir(parents=True, exist_ok=True)
    # Staged where every rename stays on one filesystem: inside an existing output folder (it may be a mount point,
    # a container's volume), else beside the folder to be made. A rename across filesystems fails (EXDEV).
    home = out if out.is_dir() else out.parent
    stem = "artifacts" if home == out else out.name
    atomic.remove_stale(home, stem)  # a staging folder left by a run killed while saving
    staging = Path(tempfile.mkdtemp(prefix=atomic.temp_prefix(stem), dir=home))
    try:
        (staging / "images").mkdir()  # even with no charts: the artifact set stays the same
        with open(staging / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        charts.start(staging)
        try:
            save_model(staging / "model")
            charts.finish()
        except BaseException:  # a failure, Ctrl-C, or SIGTERM to this process alone
            charts.stop()  # nothing may still be writing into the folder when it is removed
            raise
        for path in [staging, *staging.rglob("*")]:  # transformers' save_pretrained, too, writes its weights private
            atomic.usual_mode(path)
        if home != out:
            try:
                os.rename(staging, out)  # one rename: the whole folder appears at once
                return out
            except OSError as err:  # another run made the folder meanwhile: move in artifact by artifact
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        _move_into(staging, out, overwrite)
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(staging: Path, out: Path, overwrite: bool) -> None:
    """Each artifact renamed into out; model/ first, since without --overwrite its rename is the claim on the
    folder: another run that saved a model there meanwhile makes it fail, and this run stops before it touches
    that run's metrics.json or charts."""
    for name in ARTIFACTS:
        if (out / name).exists() and (overwrite or name != "model"):
            os.replace(out / name, staging / f".old-{name}")
        try:
            os.rename(staging / name, out / name)  # onto an existing, non-empty model/: ENOTEMPTY (or EEXIST)
        except OSError as err:
            if name == "model" and err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise HeadtuneError(f"{out} already holds a trained model, saved by another run while this one "
                                    f"worked; pass {flag('overwrite')} to replace it or choose another "
                                    f"{flag('output_dir')}") from None
            raise
