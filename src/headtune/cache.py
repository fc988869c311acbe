"""The on-disk feature cache: safetensors shards, keyed by everything that changes them.

An entry is a folder named by the SHA-256 of its key (model weights and tokenizer by
content, max length, pooling point, precision, the texts). It holds one shard file
per slice of the length-sorted texts; a model's entry (keyed by weights and tokenizer
alone) holds its checkpoint body instead (checkpoint.py). Each file is written to a
temporary file and renamed into place, so it is either complete or absent; a checksum in
its header catches a file that was damaged later. A bad file is reported in one line,
deleted and recomputed, never trusted. A folder where a file goes (or a file where an entry's
folder goes) is no file of ours gone bad, and may hold someone's files: it is refused in one
line, never deleted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import atomic
from .errors import HeadtuneError, flag

log = logging.getLogger(__name__)

FORMAT = 3  # bump when the layout or the meaning of a cached file changes (2: checkpoint bodies; 3: poolings, file identities, bodies with config and tokenizer)


def check_cache_dir(folder: str | os.PathLike) -> None:
    """Refuse, before any work is done, a cache folder that is a file or cannot be created (found out when the
    first shard is written, it would cost that shard's backbone pass and end in a traceback). A cache that cannot
    be written is not refused: one whose features are all there is read, never written."""
    path = Path(folder)
    existing = atomic.nearest_existing(path)
    if existing.exists() and not existing.is_dir():
        problem = "is a file, not a folder" if existing == path else f"cannot be created: {existing} is a file"
        raise HeadtuneError(f"{flag('cache_dir')} {path} {problem}; choose another, or pass {flag('no_cache')}")


def texts_digest(texts: list[str]) -> str:
    """SHA-256 of the texts in order; length-prefixed so ["ab", "c"] and ["a", "bc"] differ."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()).hexdigest()


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy())  # the array's memory itself: tobytes() copied 90 MB of body
    return digest.hexdigest()


class FeatureCache:
    """One cache entry, `root/<key>/`: shards `shard-00000.safetensors`, ... or a model's `body.safetensors`."""

    def __init__(self, root: str | os.PathLike, key: str, parts: dict):
        self.folder = Path(root) / key
        self.parts = parts

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.safetensors"

    def has(self, i: int) -> bool:
        return self.shard_path(i).exists()

    def load(self, i: int, names: set[str]) -> dict[str, torch.Tensor] | None:
        """Shard i's tensors, or None when it is missing or damaged (then it is deleted)."""
        found = self.read(self.shard_path(i), names)
        return None if found is None else found[0]

    def save(self, i: int, tensors: dict[str, torch.Tensor]) -> None:
        self.write(self.shard_path(i), tensors)

    def read(self, path: Path, names: set[str] | None = None) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(tensors, metadata) of a file of this entry, or None when it is missing or damaged (then it is
        deleted). `names`: the tensors it must hold, if known."""
        self._check_kinds(path)
        if not path.exists():
            return None
        try:
            tensors = load_file(path)
            with open(path, "rb") as f:  # the checksum lives in the header metadata
                header_len = int.from_bytes(f.read(8), "little")
                meta = json.loads(f.read(header_len)).get("__metadata__", {})
            ok = (names is None or set(tensors) == names) and meta.get("sha256") == _checksum(tensors)
            reason = "checksum mismatch"
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as err:
            ok, reason = False, str(err).splitlines()[0] if str(err) else type(err).__name__
        if ok:
            return tensors, meta
        log.warning("cache file %s is damaged (%s); recomputing it", path, reason)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:  # a read-only cache: the recomputed file could not be written there either
            raise HeadtuneError(f"cache file {path} is damaged ({reason}) and cannot be deleted "
                                f"({err.strerror or err}); delete it, or pass {flag('no_cache')}") from None
        return None

    def _check_kinds(self, path: Path) -> None:
        """Refuse a file where this entry's folder goes, and a folder (or a device, a pipe) where its file `path`
        goes: headtune makes neither, so deleting it could delete someone's files, and reading or writing there
        would fail with an error that looks like headtune's own bug."""
        if self.folder.exists() and not self.folder.is_dir():
            raise HeadtuneError(f"cache entry {self.folder} is a file, not a folder; remove it and rerun (the entry "
                                f"is computed again), or pass {flag('no_cache')}")
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise HeadtuneError(f"cache file {path} is {kind}; remove it and rerun (the file is computed again), "
                                f"or pass {flag('no_cache')}")

    def write(self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
        """Write a file of this entry atomically: a temporary file in the same folder, fsynced, then renamed."""
        with atomic.disk_errors(lambda problem: f"cannot write the feature cache in {self.folder.parent}: {problem}; "
                                                f"choose another {flag('cache_dir')}, free space there, or pass "
                                                f"{flag('no_cache')} (shards already written are kept)"):
            self._write(path, tensors, meta)

    def _write(self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> None:
        self._check_kinds(path)  # again: another run sharing the cache may have made one since; os.replace would fail
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            atomic.write_bytes(key_file, json.dumps(self.parts, indent=2, sort_keys=True).encode())
        stem = path.name.split("-")[0].split(".")[0]
        atomic.remove_stale(self.folder, stem)  # left by a run killed mid-write
        tensors = {name: t.contiguous() for name, t in tensors.items()}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=atomic.temp_prefix(stem))
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={**(meta or {}), "sha256": _checksum(tensors)})
            atomic.fsync_file(tmp)
            atomic.usual_mode(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
