"""pooling: --pooling auto reads the model's sentence-transformers pooling, mean or cls, else native."""
from __future__ import annotations

import json
import logging

import pytest

from headtune.pooling import resolve, sentence_transformers_pooling


def st_folder(folder, modes: dict | None, module_path="1_Pooling", with_modules=True):
    folder.mkdir(parents=True, exist_ok=True)
    if with_modules:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": module_path, "type": "sentence_transformers.models.Pooling"}]
        (folder / "modules.json").write_text(json.dumps(modules))
    if modes is not None:
        (folder / module_path).mkdir(exist_ok=True)
        settings = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                    "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                    "pooling_mode_mean_sqrt_len_tokens": False, **modes}
        (folder / module_path / "config.json").write_text(json.dumps(settings))
    return folder


@pytest.fixture(autouse=True)
def _propagate(monkeypatch):
    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)


def test_auto_reads_mean_or_cls_from_the_sentence_transformers_config(tmp_path):
    mean = st_folder(tmp_path / "mean", {"pooling_mode_mean_tokens": True})
    cls = st_folder(tmp_path / "cls", {"pooling_mode_cls_token": True}, module_path="pool")
    assert sentence_transformers_pooling(str(mean))[0] == "mean" and resolve("auto", str(mean)) == "mean"
    assert sentence_transformers_pooling(str(cls))[0] == "cls" and resolve("auto", str(cls)) == "cls"


def test_auto_is_native_without_a_sentence_transformers_config(tmp_path, caplog, tiny_models):
    with caplog.at_level(logging.INFO):
        assert resolve("auto", str(tiny_models["bert"])) == "native"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing to warn about
    assert resolve("auto", str(tmp_path / "missing")) == "native"


@pytest.mark.parametrize("modes", [{"pooling_mode_max_tokens": True},
                                   {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
                                   {"pooling_mode_mean_sqrt_len_tokens": True}, {}])
def test_a_pooling_headtune_does_not_offer_is_one_line_and_native(tmp_path, caplog, modes):
    folder = st_folder(tmp_path / "st", modes)
    with caplog.at_level(logging.WARNING):
        assert resolve("auto", str(folder)) == "native"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "native" in warnings[0] and "\n" not in warnings[0]
    assert "no headtune equivalent" in warnings[0]


def test_broken_or_partial_configs_fall_back_to_native_with_one_line(tmp_path, caplog):
    no_pooling_module = tmp_path / "a"
    no_pooling_module.mkdir()
    (no_pooling_module / "modules.json").write_text(json.dumps([{"path": "", "type": "x.Transformer"}]))
    unreadable = st_folder(tmp_path / "b", None)  # modules.json names 1_Pooling, which is missing
    with caplog.at_level(logging.WARNING):
        assert resolve("auto", str(no_pooling_module)) == "native"
        assert resolve("auto", str(unreadable)) == "native"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


@pytest.mark.parametrize("text", ['[{"path": "1_Pooling", "type": ', '{"path": "1_Pooling"}', "\x00\xff"])
def test_a_damaged_modules_json_is_one_line_not_silence(tmp_path, caplog, text):
    """The model may well be a sentence-embedding model read by mean pooling: native instead is said aloud."""
    folder = st_folder(tmp_path / "st", {"pooling_mode_mean_tokens": True})
    (folder / "modules.json").write_text(text)
    with caplog.at_level(logging.WARNING):
        assert resolve("auto", str(folder)) == "native"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "modules.json is not a readable JSON list" in warnings[0], warnings


def test_an_explicit_pooling_is_kept(tmp_path):
    folder = st_folder(tmp_path / "mean", {"pooling_mode_mean_tokens": True})
    for pooling in ("native", "cls", "mean"):
        assert resolve(pooling, str(folder)) == pooling


def test_the_minilm_package_reads_mean():
    from conftest import minilm_path

    assert sentence_transformers_pooling(str(minilm_path()))[0] == "mean"
