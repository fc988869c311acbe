"""Writing files so that a crash or kill leaves either the old state or the new one, never half of one.

Temporary names carry the writer's process id, so leftovers of a killed run can be told
from the files of a run still in progress and removed by the next run.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def temp_prefix(stem: str) -> str:
    return f".{stem}.tmp-{os.getpid()}-"


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(folder: Path, stem: str) -> int:
    """Delete temporaries named by temp_prefix(stem) whose writing process is gone; returns how many."""
    removed = 0
    marker = f".{stem}.tmp-"
    for path in folder.glob(f"{marker}*") if folder.is_dir() else ():
        pid = path.name[len(marker):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed += 1
    return removed
