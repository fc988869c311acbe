"""atomic.py: whole-file writes, and cleaning up what a killed writer left behind."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from headtune import atomic


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_write_bytes_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "key.json"
    target.write_bytes(b"old")
    atomic.write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.json"]


def test_remove_stale_deletes_only_temporaries_of_dead_writers(tmp_path):
    host = atomic.temp_prefix("x").split("@")[1].rstrip("-")  # this host, as temporary names spell it
    dead = tmp_path / f".shard.tmp-{dead_pid()}@{host}-abc"
    dead.write_bytes(b"half a shard")
    dead_dir = tmp_path / f".shard.tmp-{dead_pid()}@{host}-dir"
    (dead_dir / "model").mkdir(parents=True)
    mine = tmp_path / f"{atomic.temp_prefix('shard')}xyz"  # a live writer: this process
    mine.write_bytes(b"being written")
    other = tmp_path / f".other.tmp-{dead_pid()}@{host}-abc"  # another stem: not ours to judge
    other.write_bytes(b"")
    kept = tmp_path / "shard-00000.safetensors"
    kept.write_bytes(b"done")

    assert atomic.remove_stale(tmp_path, "shard") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name, kept.name])
    assert mine.name.startswith(f".shard.tmp-{os.getpid()}@{host}-")


def test_temporaries_of_other_hosts_are_removed_only_when_old(tmp_path):
    """A cache folder shared by several machines: another host's process ids mean nothing here (the pid of a
    writer still at work there may be free here), so only age tells its leftovers from its work in progress."""
    pid = dead_pid()  # no such process here; whether there is one on the other host cannot be known
    fresh = tmp_path / f".shard.tmp-{pid}@other-node_1-abc"
    fresh.write_bytes(b"another machine is writing this")
    old = tmp_path / f".shard.tmp-{pid}@other-node_1-def"
    old.write_bytes(b"left by a run killed there two days ago")
    old_dir = tmp_path / f".shard.tmp-{pid}@other-node_1-dir"
    old_dir.mkdir()
    legacy = tmp_path / f".shard.tmp-{pid}-ghi"  # a name without its host (older headtune): judged by age too
    legacy.write_bytes(b"")
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (old, old_dir):
        os.utime(path, (two_days_ago, two_days_ago))

    assert atomic.remove_stale(tmp_path, "shard") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, legacy.name])


def test_temporary_names_carry_pid_and_host(monkeypatch, tmp_path):
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node-7.cluster")
    prefix = atomic.temp_prefix("shard")
    assert prefix == f".shard.tmp-{os.getpid()}@gpu_node_7.cluster-"
    path = tmp_path / f"{prefix}abc_12"  # tempfile's random part: letters, digits, '_'
    path.write_bytes(b"")
    assert atomic.remove_stale(tmp_path, "shard") == 0  # this host, this live process


def test_what_is_written_gets_the_permissions_the_umask_gives(tmp_path):
    """mkstemp and mkdtemp make temporaries private to their owner; renamed into place, they must read as any file
    or folder written there would (a model folder shared with a team, a feature cache shared by users)."""
    saved = os.umask(0o027)
    try:
        atomic.write_bytes(tmp_path / "key.json", b"{}")
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # what mkdtemp gives
        atomic.usual_mode(folder)
    finally:
        os.umask(saved)
    assert stat.S_IMODE((tmp_path / "key.json").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert os.umask(saved) == saved  # the umask is as it was


def test_disk_problems_are_told_apart_from_other_errors():
    import errno

    from safetensors import SafetensorError

    assert atomic.disk_problem(OSError(errno.ENOSPC, "x")) == os.strerror(errno.ENOSPC)
    assert atomic.disk_problem(OSError(errno.EROFS, "x")) == os.strerror(errno.EROFS)
    assert atomic.disk_problem(SafetensorError(
        "Error while serializing: I/O error: No space left on device (os error 28)")) == os.strerror(28)
    assert atomic.disk_problem(OSError(errno.ENOENT, "x")) is None  # a missing file is no disk problem
    assert atomic.disk_problem(SafetensorError("Error while deserializing header: header too small")) is None
    assert atomic.disk_problem(ValueError("(os error 28)")) == os.strerror(28)  # the message names it
