"""report: the artifacts are written whole (model/, metrics.json, images/), never half, never over a model unasked."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from headtune.config import ModelConfig
from headtune.errors import HeadtuneError
from headtune.modeling import load_for_training
from headtune.report import BAR_CHART, LINE_CHART, bar_chart, check_output_dir, line_chart, write_artifacts
from headtune.training import EpochResult, History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(*accuracies: float) -> History:
    return History([EpochResult(i, None if i == 0 else 0.7 - 0.1 * i, acc, acc - 0.05, 0.1)
                    for i, acc in enumerate(accuracies)])


def assert_png(path, size=(768, 528)):  # 6.4 x 4.4 inches at 120 dpi
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size


@pytest.fixture(scope="module")
def loaded(tiny_models):
    return load_for_training(ModelConfig(model=str(tiny_models["distilbert"]), max_length=32, device="cpu"),
                             ["neg", "pos"], seed=0)


def test_charts_are_valid_pngs(tmp_path):
    h = history(0.5, 0.7, 0.8, 0.85)
    bar_chart(h, "title", tmp_path / "bar.png")
    line_chart(h, "title", tmp_path / "line.png")
    assert_png(tmp_path / "bar.png")
    assert_png(tmp_path / "line.png")
    line_chart(history(0.5, 0.5), "flat", tmp_path / "flat.png")  # equal values: still a valid chart
    assert_png(tmp_path / "flat.png")


def save(loaded):
    def write(folder):
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
    return write


def test_write_artifacts_then_refuse_then_overwrite(loaded, tmp_path):
    out = tmp_path / "run"
    write_artifacts(out, save(loaded), {"run": 1}, history(0.5, 0.6), "t", overwrite=False)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "images", BAR_CHART, LINE_CHART, "metrics.json", "model", "model/config.json", "model/model.safetensors",
        "model/tokenizer.json", "model/tokenizer_config.json"]
    assert json.loads((out / "metrics.json").read_text()) == {"run": 1}
    assert_png(out / BAR_CHART)
    assert_png(out / LINE_CHART)

    with pytest.raises(HeadtuneError, match="--overwrite"):
        write_artifacts(out, save(loaded), {"run": 2}, history(0.5, 0.6), "t", overwrite=False)
    assert json.loads((out / "metrics.json").read_text()) == {"run": 1}  # the earlier run survives

    write_artifacts(out, save(loaded), {"run": 3}, history(0.5, 0.6), "t", overwrite=True)
    assert json.loads((out / "metrics.json").read_text()) == {"run": 3}
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left beside it


def test_check_output_dir(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", overwrite=False)  # not there yet: fine
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", overwrite=False)  # a folder without a model: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeadtuneError, match="is a file"):
        check_output_dir(tmp_path / "file", overwrite=True)
    (tmp_path / "done" / "model").mkdir(parents=True)
    with pytest.raises(HeadtuneError, match="already holds a trained model.*--overwrite"):
        check_output_dir(tmp_path / "done", overwrite=False)
    check_output_dir(tmp_path / "done", overwrite=True)
