"""digests: a remembered digest stands in for hashing only while the file's stat is unchanged and the file was old
enough when hashed; any rewrite is hashed again; a damaged or unwritable memo only means hashing again."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from headtune import digests
from headtune.config import ModelConfig
from headtune.digests import MEMO_FILE, DigestMemo, file_sha256
from headtune.modeling import ModelSource

LATER = 10 * 10**9  # ns: the file is older than TRUST_AFTER_NS when it is hashed


@pytest.fixture
def later(monkeypatch):
    """The clock 10 s ahead: files written by the test count as old enough to trust."""
    real = digests.time_ns
    monkeypatch.setattr(digests, "time_ns", lambda: real() + LATER)


def unreadable(monkeypatch):
    """From now on, hashing a file fails: a digest can only come from the memo."""
    def refuse(path):
        raise AssertionError(f"{path} was hashed")
    monkeypatch.setattr(digests, "file_sha256", refuse)


def test_a_remembered_digest_stands_in_for_hashing_in_a_later_run(tmp_path, later, monkeypatch):
    (tmp_path / "cache").mkdir()  # the cache folder of an earlier run
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights " * 1000)
    digest = DigestMemo(tmp_path / "cache")(weights)
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    record = json.loads((tmp_path / "cache" / MEMO_FILE).read_text())[str(weights.resolve())]
    assert record["sha256"] == digest and record["trusted"] is True
    unreadable(monkeypatch)
    assert DigestMemo(tmp_path / "cache")(weights) == digest  # a new run: from the memo


def test_a_rewrite_of_the_same_size_and_modification_time_is_hashed_again(tmp_path, later):
    (tmp_path / "cache").mkdir()  # the cache folder of an earlier run
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    before = weights.stat()
    first = DigestMemo(tmp_path / "cache")(weights)
    weights.write_bytes(b"b" * 4096)  # new weights of the same shape
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old modification time
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns == before.st_mtime_ns
    second = DigestMemo(tmp_path / "cache")(weights)
    assert second != first and second == hashlib.sha256(b"b" * 4096).hexdigest()


def test_a_file_hashed_right_after_it_was_written_is_hashed_again_next_time(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()  # the cache folder of an earlier run
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"just saved")
    DigestMemo(tmp_path / "cache")(weights)  # the clock as it is: the file is younger than TRUST_AFTER_NS
    assert json.loads((tmp_path / "cache" / MEMO_FILE).read_text())[str(weights.resolve())]["trusted"] is False
    unreadable(monkeypatch)
    with pytest.raises(AssertionError, match="was hashed"):
        DigestMemo(tmp_path / "cache")(weights)


@pytest.mark.parametrize("memo", [lambda key: b"{not json", lambda key: b"[1, 2]", lambda key: b"\xff\xfe",
                                  lambda key: json.dumps({key: {"stat": None}}).encode(),
                                  lambda key: json.dumps({key: "a digest without its stat"}).encode()],
                         ids=["not json", "a list", "not utf-8", "a record without its fields", "not a record"])
def test_a_damaged_memo_means_hashing_again(memo, tmp_path, later):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    key = str(weights.resolve())
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / MEMO_FILE).write_bytes(memo(key))
    assert DigestMemo(tmp_path / "cache")(weights) == hashlib.sha256(b"w").hexdigest()
    assert json.loads((tmp_path / "cache" / MEMO_FILE).read_text())[key]["trusted"] is True  # repaired


def test_a_memo_that_cannot_be_written_only_means_hashing(tmp_path, later):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / MEMO_FILE).mkdir()  # in the way of the file
    assert DigestMemo(tmp_path / "cache")(weights) == hashlib.sha256(b"w").hexdigest()


def test_no_cache_folder_is_made_for_the_memo(tmp_path, later):
    """A run refused after its model was hashed (bad data, say) leaves no cache folder behind."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    assert DigestMemo(tmp_path / "cache")(weights) == hashlib.sha256(b"w").hexdigest()
    assert not (tmp_path / "cache").exists()


def test_the_memo_keeps_the_most_recently_hashed_files(tmp_path, later, monkeypatch):
    (tmp_path / "cache").mkdir()  # the cache folder of an earlier run
    monkeypatch.setattr(digests, "MEMO_ENTRIES", 2)
    files = [tmp_path / f"{i}.bin" for i in range(3)]
    memo = DigestMemo(tmp_path / "cache")
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]))
        memo(path)
    memo(files[0])  # hashed again, so the most recent
    assert list(json.loads((tmp_path / "cache" / MEMO_FILE).read_text())) == [str(files[2].resolve()),
                                                                            str(files[0].resolve())]


def test_a_model_has_the_same_identity_with_the_memo_as_hashed(tiny_models, tmp_path, later, monkeypatch):
    cfg = ModelConfig(model=str(tiny_models["bert"]))
    hashed = ModelSource(cfg, file_sha256).identity()
    assert ModelSource(cfg, DigestMemo(tmp_path)).identity() == hashed
    unreadable(monkeypatch)
    assert ModelSource(cfg, DigestMemo(tmp_path)).identity() == hashed  # every file from the memo
