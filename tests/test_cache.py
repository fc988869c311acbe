"""The feature cache: keyed by everything that changes features and nothing else; damaged shards recomputed."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

import headtune
from headtune.cache import FeatureCache, cache_key, texts_digest
from headtune.config import ModelConfig
from headtune.errors import HeadtuneError
from conftest import Backbone
from headtune.features import feature_key_parts
from headtune.modeling import identity

MAX_LENGTH = 32
TEXTS = ["the film was great", "awful", "a dull and boring plot with a very bad ending", "superb music",
         "the actor was dreadful", "moving", "a masterpiece of a story with wonderful scenes", "mess",
         "the camera really was brilliant", "waste of a script"]


@pytest.fixture(autouse=True)
def _propagate(monkeypatch):
    # the CLI (when another test ran it) stops headtune's records at its own handler; caplog listens at the root
    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)


@pytest.fixture(scope="module")
def distilbert(tiny_models):
    return Backbone(tiny_models["distilbert"], max_length=MAX_LENGTH)


def extract(loaded, texts, cache_dir, *, identity_=None, max_length=MAX_LENGTH, **cfg):
    cfg.setdefault("shard_size", 4)
    return loaded.extract(texts, identity=identity_, max_length=max_length, cache_dir=str(cache_dir), **cfg)


# --------------------------------------------------------------------------- the key

def test_every_keyed_input_changes_the_key(distilbert, tiny_models):
    base_id, point = distilbert.identity, distilbert.plan.point

    def key(ident=base_id, sp=point, max_length=MAX_LENGTH, dtype=None, texts=TEXTS, shard_size=4):
        return cache_key(feature_key_parts(ident, sp, max_length, dtype, texts, shard_size))

    base = key()
    assert key(ident=dict(base_id), texts=list(TEXTS)) == base  # same inputs, same key
    variants = {
        "weights": key(ident={**base_id, "weights": {"model.safetensors": "0" * 64}}),
        "tokenizer": key(ident={**base_id, "tokenizer": {**base_id["tokenizer"], "vocab.txt": "0" * 64}}),
        "max_length": key(max_length=MAX_LENGTH + 1),
        "pooling point": key(sp="mean"),
        "dtype": key(dtype=torch.bfloat16),
        "text order": key(texts=TEXTS[::-1]),
        "one text": key(texts=TEXTS[:3] + [TEXTS[3] + "!"] + TEXTS[4:]),
        "one text more": key(texts=TEXTS + ["great"]),
        "one text less": key(texts=TEXTS[:-1]),
        "shard size (the layout)": key(shard_size=5),
    }
    for what, k in variants.items():
        assert k != base, f"a change of {what} must miss the cache"
    assert len(set(variants.values())) == len(variants)
    assert key(texts=["a", "bc"]) != key(texts=["ab", "c"])  # where one text ends matters
    assert texts_digest(["a", "bc"]) != texts_digest(["ab", "c"])


def test_weights_are_keyed_by_content(distilbert, tiny_models, tmp_path):
    cache = tmp_path / "cache"
    first, stats = extract(distilbert, TEXTS, cache)
    assert (stats.cached_shards, stats.computed_shards) == (0, 3)

    same = tmp_path / "same-weights-elsewhere"
    shutil.copytree(tiny_models["distilbert"], same)
    ident = identity(ModelConfig(model=str(same)), same, "distilbert")
    again, stats = extract(distilbert, TEXTS, cache, identity_=ident)
    assert (stats.cached_shards, stats.computed_shards) == (3, 0)
    assert torch.equal(again, first)

    tensors = load_file(same / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0  # (a zero bias scaled would stay the same)
    save_file(tensors, same / "model.safetensors", metadata={"format": "pt"})
    ident = identity(ModelConfig(model=str(same)), same, "distilbert")
    _, stats = extract(distilbert, TEXTS, cache, identity_=ident)
    assert (stats.cached_shards, stats.computed_shards) == (0, 3)


def test_max_length_and_texts_miss_end_to_end(distilbert, tmp_path):
    cache = tmp_path / "cache"
    extract(distilbert, TEXTS, cache)
    assert extract(distilbert, TEXTS, cache, max_length=MAX_LENGTH - 1)[1].computed_shards == 3
    assert extract(distilbert, TEXTS[::-1], cache)[1].computed_shards == 3
    # another shard size is another layout: reusing shard i of the old one would mix up the texts
    other, stats = extract(distilbert, TEXTS, cache, shard_size=3)
    assert (stats.cached_shards, stats.computed_shards) == (0, 4)
    assert torch.allclose(other, extract(distilbert, TEXTS, cache)[0], atol=1e-5)
    assert extract(distilbert, TEXTS, cache)[1].computed_shards == 0
    entries = sorted(p for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 4
    for entry in entries:  # each entry records what it was keyed on, and is named by its hash
        parts = json.loads((entry / "key.json").read_text())
        assert cache_key(parts) == entry.name
        shards = 3 if parts["shard_size"] == 4 else 4
        assert sorted(p.name for p in entry.glob("*.safetensors")) == [f"shard-0000{i}.safetensors" for i in range(shards)]


def test_head_settings_reuse_the_cache_end_to_end(tiny_models, sentiment_dir, tmp_path):
    common = dict(dataset=str(sentiment_dir), model=str(tiny_models["distilbert"]), max_length=MAX_LENGTH,
                  device="cpu", shard_size=128, cache_dir=str(tmp_path / "cache"))
    first = headtune.train(output_dir=str(tmp_path / "a"), epochs=1, **common)
    # 400 train (cross-validated on 5 folds) / 200 test texts in shards of 128
    assert {s: (p["cached_shards"], p["computed_shards"]) for s, p in first["backbone_pass"].items()} == \
           {"train": (0, 4), "test": (0, 2)}
    second = headtune.train(output_dir=str(tmp_path / "b"), epochs=2, lr=0.05, batch_size=7, seed=3, keep="last",
                            patience=1, class_weight="balanced", calibrate=False, folds=3, **common)
    assert second["data"]["folds"] == 3
    assert {s: (p["cached_shards"], p["computed_shards"]) for s, p in second["backbone_pass"].items()} == \
           {"train": (4, 0), "test": (2, 0)}
    assert second["backbone_pass"]["train"]["padded_tokens"] == 0
    assert second["backbone_pass"]["train"]["real_tokens"] == first["backbone_pass"]["train"]["real_tokens"]


def test_head_seed_keeps_the_sample_and_the_cache_sample_seed_changes_both(tiny_models, sentiment_dir, tmp_path):
    common = dict(dataset=str(sentiment_dir), model=str(tiny_models["distilbert"]), max_length=MAX_LENGTH,
                  device="cpu", train_size=60, test_size=20, epochs=1, cache_dir=str(tmp_path / "cache"))

    def computed(metrics):
        return {s: p["computed_shards"] for s, p in metrics["backbone_pass"].items()}

    once = {"train": 1, "test": 1}
    assert computed(headtune.train(output_dir=str(tmp_path / "a"), seed=1, **common)) == once
    assert computed(headtune.train(output_dir=str(tmp_path / "b"), seed=2, **common)) == dict.fromkeys(once, 0)
    other = headtune.train(output_dir=str(tmp_path / "c"), seed=2, sample_seed=7, **common)
    assert computed(other) == once  # another sample: other texts, other features


# --------------------------------------------------------------------------- damaged shards

def _damage_warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_truncated_shard_is_reported_and_recomputed(distilbert, tmp_path, caplog):
    cache = tmp_path / "cache"
    original, _ = extract(distilbert, TEXTS, cache)
    shard = next(p for p in cache.iterdir() if p.is_dir()) / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])

    with caplog.at_level(logging.WARNING):
        again, stats = extract(distilbert, TEXTS, cache)
    warnings = _damage_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(shard) in message and "\n" not in message
    assert (stats.cached_shards, stats.computed_shards) == (2, 1)
    assert torch.equal(again, original)
    assert shard.read_bytes() == data  # rewritten whole

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert extract(distilbert, TEXTS, cache)[1].computed_shards == 0
    assert _damage_warnings(caplog) == []


def test_flipped_bytes_in_tensor_data_are_caught_by_the_checksum(distilbert, tmp_path, caplog):
    cache = tmp_path / "cache"
    original, _ = extract(distilbert, TEXTS, cache)
    shard = next(p for p in cache.iterdir() if p.is_dir()) / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    begin, end = header["features"]["data_offsets"]
    start = 8 + header_len + begin + (end - begin) // 2
    for i in range(start, start + 4):  # a damaged float in the middle of the features
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert set(load_file(shard)) == {"features", "index", "lengths", "truncated"}  # still parses

    with caplog.at_level(logging.WARNING):
        again, stats = extract(distilbert, TEXTS, cache)
    warnings = _damage_warnings(caplog)
    assert len(warnings) == 1
    assert str(shard) in warnings[0].getMessage() and "checksum" in warnings[0].getMessage()
    assert (stats.cached_shards, stats.computed_shards) == (2, 1)
    assert torch.equal(again, original)


def test_shard_with_wrong_tensors_is_not_trusted(tmp_path, caplog):
    cache = FeatureCache(tmp_path, "k", {"x": 1})
    cache.save(0, {"features": torch.ones(2, 3), "index": torch.arange(2)})
    assert cache.load(0, {"features", "index"})["features"].shape == (2, 3)
    with caplog.at_level(logging.WARNING):
        assert cache.load(0, {"features", "index", "lengths"}) is None
    assert len(_damage_warnings(caplog)) == 1
    assert not cache.shard_path(0).exists()
    assert [p.name for p in cache.folder.iterdir()] == ["key.json"]  # no temporary files left behind


def test_a_folder_where_a_shard_goes_is_refused_in_one_line_and_kept(distilbert, tmp_path):
    """A folder was an internal error (IsADirectoryError): headtune never makes one there, so it is not deleted
    (it may hold someone's files) but named, with the way out; removed, the shard is computed again."""
    cache = tmp_path / "cache"
    original, _ = extract(distilbert, TEXTS, cache)
    shard = next(p for p in cache.iterdir() if p.is_dir()) / "shard-00001.safetensors"
    shard.unlink()
    shard.mkdir()
    (shard / "notes.txt").write_text("mine")
    with pytest.raises(HeadtuneError) as err:
        extract(distilbert, TEXTS, cache)
    assert str(err.value) == (f"cache file {shard} is a folder; remove it and rerun (the file is computed again), "
                              f"or pass --no-cache")
    assert (shard / "notes.txt").read_text() == "mine"
    shutil.rmtree(shard)
    again, stats = extract(distilbert, TEXTS, cache)
    assert (stats.cached_shards, stats.computed_shards) == (2, 1)
    assert torch.equal(again, original)


@pytest.mark.parametrize("name", ["body.safetensors", "tokenizer.safetensors"])  # a model's entry (checkpoint.py)
def test_a_folder_where_any_file_of_an_entry_goes_is_refused(tmp_path, name):
    cache = FeatureCache(tmp_path, "k", {"x": 1})
    (cache.folder / name).mkdir(parents=True)
    path = cache.folder / name
    for use in (lambda: cache.read(path), lambda: cache.write(path, {"t": torch.ones(1)})):
        with pytest.raises(HeadtuneError, match=f"^cache file {re.escape(str(path))} is a folder; remove it and "):
            use()
    assert path.is_dir()


def test_a_file_where_an_entry_goes_is_refused(tmp_path):
    """It was an internal error (FileExistsError) after the shard's whole backbone pass."""
    cache = FeatureCache(tmp_path, "k", {"x": 1})
    cache.folder.write_text("mine")
    for use in (lambda: cache.load(0, {"features"}), lambda: cache.save(0, {"features": torch.ones(2, 3)})):
        with pytest.raises(HeadtuneError) as err:
            use()
        assert str(err.value) == (f"cache entry {cache.folder} is a file, not a folder; remove it and rerun (the "
                                  f"entry is computed again), or pass --no-cache")
    assert cache.folder.read_text() == "mine"


def test_a_damaged_file_that_cannot_be_deleted_is_one_line(tmp_path, monkeypatch):
    """A read-only cache (root ignores permissions, so the refusal is simulated): that was an internal error."""
    cache = FeatureCache(tmp_path, "k", {"x": 1})
    cache.shard_path(0).parent.mkdir()
    cache.shard_path(0).write_bytes(b"not a safetensors file")

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(cache.shard_path(0)), "unlink", refuse)
    shard = re.escape(str(cache.shard_path(0)))
    with pytest.raises(HeadtuneError, match=rf"^cache file {shard} is damaged \(.+\) and cannot be deleted "
                                            r"\(Permission denied\); delete it, or pass --no-cache$"):
        cache.load(0, {"features"})


def test_cache_files_get_the_permissions_the_umask_gives(tmp_path):
    """A cache shared by several users (HEADTUNE_CACHE on a team's server) must be readable by them: a shard is
    written to a private temporary first."""
    saved = os.umask(0o022)
    try:
        FeatureCache(tmp_path, "k", {"x": 1}).save(0, {"features": torch.ones(2, 3)})
    finally:
        os.umask(saved)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "k").iterdir()} == {
        "key.json": 0o644, "shard-00000.safetensors": 0o644}


# --------------------------------------------------------------------------- --no-cache

def test_no_cache_writes_nothing(tiny_models, sentiment_dir, tmp_path):
    cache = tmp_path / "cache"
    metrics = headtune.train(dataset=str(sentiment_dir), model=str(tiny_models["distilbert"]),
                             max_length=MAX_LENGTH, device="cpu", epochs=1, no_cache=True, cache_dir=str(cache),
                             output_dir=str(tmp_path / "out"))
    assert metrics["backbone_pass"]["train"]["computed_shards"] == 1
    assert metrics["backbone_pass"]["train"]["cached_shards"] == 0
    assert not cache.exists() or list(cache.rglob("*")) == []


def test_a_full_disk_is_one_line_naming_the_cache_and_the_way_out(tmp_path, monkeypatch):
    """safetensors says 'No space left on device (os error 28)': that was an internal error (exit 1)."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(headtune.cache, "save_file", full)
    cache = FeatureCache(tmp_path, "k", {"x": 1})
    with pytest.raises(HeadtuneError, match=r"cannot write the feature cache in .*: No space left on device; "
                                            r"choose another --cache-dir, free space there, or pass --no-cache"):
        cache.save(0, {"features": torch.ones(2, 3)})
    assert [p.name for p in cache.folder.iterdir()] == ["key.json"]  # no temporary left behind


def test_the_default_cache_folder_expands_home_and_ignores_a_relative_xdg(monkeypatch, tmp_path):
    from headtune.config import FeatureConfig, default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HEADTUNE_CACHE", "~/hc")
    assert default_cache_dir() == str(tmp_path / "hc")  # a folder named '~' was made in the working folder
    monkeypatch.delenv("HEADTUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec says to ignore it
    assert default_cache_dir() == str(tmp_path / ".cache" / "headtune")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "headtune")
    assert FeatureConfig(cache_dir="~/c").cache_dir == str(tmp_path / "c")
