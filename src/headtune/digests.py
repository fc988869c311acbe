"""SHA-256 digests of files: a local model's identity is its files' content (modeling.identity), and a checkpoint's
digest tells evaluate whether cached features still belong to it.

Hashing reads the whole file: 0.1 s for MiniLM's 90 MB on this project's CPU, seconds for a large model, more when
the file is not in the page cache. A warm run needs nothing else from the weights, so `DigestMemo` remembers each
digest in the feature cache folder (`file-digests.json`) beside the file's stat: its size, modification and
change times in nanoseconds, inode and device. Any write to a file changes its change time, which no user can set,
so a file whose stat is unchanged holds the content that was hashed. Filesystems with coarse timestamps (FAT's
2 s) could hide a rewrite within the same tick of the hashing, as git's index knows ("racy git"): a digest is only
trusted if the file was already TRUST_AFTER_NS old when it was hashed; younger files are hashed again next time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from time import time_ns

from . import atomic

log = logging.getLogger(__name__)

MEMO_FILE = "file-digests.json"
TRUST_AFTER_NS = 3_000_000_000  # the coarsest common timestamp tick (FAT: 2 s), and a margin
MEMO_ENTRIES = 256  # the most recently hashed files that are remembered


def file_sha256(path: Path) -> str:
    """A file's SHA-256 (memoised per process while its stat stays the same: a rewrite changes its change time,
    even one that puts the old modification time back)."""
    return _sha256_of(str(path.resolve()), *_stamp(path.stat()))


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, *stamp: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class DigestMemo:
    """file_sha256, remembered across runs in `folder`/file-digests.json once the folder exists (best effort: a
    folder that cannot be read or written only means hashing again)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / MEMO_FILE
        self._records: dict | None = None

    def __call__(self, path: Path) -> str:
        key, stat = str(path.resolve()), path.stat()
        records = self._load()
        record = records.get(key)
        if isinstance(record, dict) and record.get("stat") == _stamp(stat) and record.get("trusted") is True \
                and isinstance(record.get("sha256"), str):
            return record["sha256"]
        hashed_at = time_ns()
        digest = file_sha256(path)
        newest_change = max(stat.st_mtime_ns, stat.st_ctime_ns)
        records.pop(key, None)  # re-inserted last: the dict keeps the most recently hashed files last
        records[key] = {"stat": _stamp(stat), "sha256": digest, "trusted": newest_change < hashed_at - TRUST_AFTER_NS}
        self._save(dict(list(records.items())[-MEMO_ENTRIES:]))
        return digest

    def _load(self) -> dict:
        if self._records is None:
            try:
                self._records = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(self._records, dict):
                    raise ValueError("not an object")
            except FileNotFoundError:
                self._records = {}
            except (OSError, ValueError, UnicodeDecodeError) as err:
                log.debug("file digests in %s not read (%s): hashing again", self.path, err)
                self._records = {}
        return self._records

    def _save(self, records: dict) -> None:
        self._records = records
        if not self.path.parent.is_dir():  # a cache folder appears with its first features: a refused run makes none
            return
        try:
            atomic.write_bytes(self.path, json.dumps(records, indent=1).encode())
        except OSError as err:
            log.debug("file digests not remembered in %s (%s)", self.path, err)
