"""atomic.py: whole-file writes, and cleaning up what a killed writer left behind."""
from __future__ import annotations

import os
import subprocess
import sys

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
    dead = tmp_path / f".shard.tmp-{dead_pid()}-abc"
    dead.write_bytes(b"half a shard")
    dead_dir = tmp_path / f".shard.tmp-{dead_pid()}-dir"
    (dead_dir / "model").mkdir(parents=True)
    mine = tmp_path / f"{atomic.temp_prefix('shard')}xyz"  # a live writer: this process
    mine.write_bytes(b"being written")
    other = tmp_path / f".other.tmp-{dead_pid()}-abc"  # another stem: not ours to judge
    other.write_bytes(b"")
    kept = tmp_path / "shard-00000.safetensors"
    kept.write_bytes(b"done")

    assert atomic.remove_stale(tmp_path, "shard") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name, kept.name])
    assert mine.name.startswith(f".shard.tmp-{os.getpid()}-")
