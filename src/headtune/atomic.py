"""Writing files so that a crash or kill leaves either the old state or the new one, never half of one.

Temporary names carry the writer's host and process id, `.<stem>.tmp-<pid>@<host>-<random>`, so that the
leftovers of a killed writer can be told from the files of one still at work and removed by the next run.
A cache folder may be shared by several processes, and by several machines (a network file system): a
process id means something only on the host that wrote it, so another host's temporaries are removed only
when they are so old that no writer can still be at work on them.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError

from .errors import HeadtuneError

# Another host's temporary older than this is a leftover: writing one file (a cache shard, a model folder)
# takes seconds to minutes, never a day. Its process cannot be asked, so its age is all there is to go by.
FOREIGN_STALE_AFTER_S = 24 * 3600


def _host() -> str:
    # '@' and '-' delimit the name's parts (see temp_prefix); the random suffix tempfile adds has neither
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "unknown"


def temp_prefix(stem: str) -> str:
    return f".{stem}.tmp-{os.getpid()}@{_host()}-"


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its closest ancestor that does: where a folder to be made would go."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: it is put straight back
    os.umask(mask)
    return mask


def usual_mode(path: str | os.PathLike) -> None:
    """Give a temporary the permissions open() or mkdir() would have: mkstemp and mkdtemp make them private to
    their owner, and renamed into place as they were, a model folder or a shared feature cache could be read by
    no one else."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


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
        usual_mode(tmp)
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


def _stale(path: Path, writer: str, host: str, now: float) -> bool:
    """Whether the temporary `path` written by `writer` ("<pid>@<host>") can no longer be finished."""
    pid, at, written_on = writer.partition("@")
    if at and written_on == host and pid.isdigit():
        return not _alive(int(pid))
    try:  # another host's, or a name this version cannot read: only its age tells
        return now - path.lstat().st_mtime > FOREIGN_STALE_AFTER_S
    except FileNotFoundError:  # its writer finished (renamed it) meanwhile
        return False


def remove_stale(folder: Path, stem: str) -> int:
    """Delete temporaries named by temp_prefix(stem) whose writer is gone: on this host, a process that no
    longer exists; on another host, one older than FOREIGN_STALE_AFTER_S. Returns how many."""
    removed, marker, host, now = 0, f".{stem}.tmp-", _host(), time.time()
    for path in folder.glob(f"{marker}*") if folder.is_dir() else ():
        writer = path.name[len(marker):].rpartition("-")[0]  # tempfile's random suffix follows the last '-'
        if _stale(path, writer, host, now):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed += 1
    return removed


# A full disk, a quota, a read-only filesystem, no permission: the user's machine, not a bug of headtune.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_problem(err: BaseException) -> str | None:
    """What is wrong with the disk, when `err` (an OSError, or safetensors' error naming the OS error) is about
    the disk a file was being written to; None otherwise."""
    code = getattr(err, "errno", None)
    if code is None:  # safetensors: "I/O error: No space left on device (os error 28)"
        found = re.search(r"\(os error (\d+)\)", str(err))
        code = int(found.group(1)) if found else None
    return os.strerror(code) if code in DISK_ERRORS else None


@contextlib.contextmanager
def disk_errors(message: Callable[[str], str]):
    """An error about the disk being written to (disk_problem) becomes one line, `message(problem)`: the user's
    machine, not a bug. Any other error passes through."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        problem = disk_problem(err)
        if problem is None:
            raise
        raise HeadtuneError(message(problem)) from None
