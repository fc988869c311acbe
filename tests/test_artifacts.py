"""artifacts: model/, metrics.json and images/ written whole, never half, never over a model unasked; with the
charts drawn here or by drawing.py's second process."""
from __future__ import annotations

import json
import os
import stat

import pytest

from headtune.artifacts import check_output_dir, write_artifacts
from headtune.drawing import DrawHere, Helper
from headtune.errors import HeadtuneError
from headtune.report import BAR_CHART, CONFUSION_MATRIX, LINE_CHART, LR_SWEEP, RELIABILITY

from test_report import IMDB, assert_png


@pytest.fixture(scope="module")
def loaded(tiny_models):
    from conftest import Backbone

    return Backbone(tiny_models["distilbert"], max_length=32)


def save(loaded):
    def write(folder):
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
    return write


def test_write_artifacts_then_refuse_then_overwrite(loaded, tmp_path):
    out = tmp_path / "run"
    first = dict(IMDB, run=1)
    write_artifacts(out, save(loaded), first, DrawHere(first, "t"), overwrite=False)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted([
        "images", BAR_CHART, LINE_CHART, LR_SWEEP, CONFUSION_MATRIX, RELIABILITY, "metrics.json", "model",
        "model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/tokenizer_config.json"])
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(first))
    for chart in (BAR_CHART, LINE_CHART, LR_SWEEP, CONFUSION_MATRIX, RELIABILITY):
        assert_png(out / chart)

    second = dict(IMDB, run=2)
    with pytest.raises(HeadtuneError, match="--overwrite"):
        write_artifacts(out, save(loaded), second, DrawHere(second, "t"), overwrite=False)
    assert json.loads((out / "metrics.json").read_text())["run"] == 1  # the earlier run survives

    third = dict(IMDB, run=3, lr={"mode": "fixed", "chosen": 0.01})
    write_artifacts(out, save(loaded), third, DrawHere(third, "t"), overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["run"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model"]
    assert not (out / LR_SWEEP).exists()  # images/ is replaced whole: no chart of the earlier run lingers
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left beside it


def test_a_failing_chart_leaves_nothing(loaded, tmp_path):
    def broken(metrics, title, path):
        raise RuntimeError("chart failed")

    with pytest.raises(RuntimeError, match="chart failed"):
        write_artifacts(tmp_path / "run", save(loaded), IMDB, DrawHere(IMDB, "t", [(BAR_CHART, broken)]), overwrite=False)
    assert list(tmp_path.iterdir()) == []


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


def test_a_failing_model_save_stops_the_second_process_and_leaves_nothing(tmp_path):
    helper = Helper.launch()
    assert helper is not None

    def broken(folder):
        raise RuntimeError("disk full")

    try:
        with pytest.raises(RuntimeError, match="disk full"):
            write_artifacts(tmp_path / "run", broken, IMDB, helper.charts(IMDB, "t"), overwrite=False)
        assert helper.process.poll() is not None  # stopped before the staging folder was removed
        assert list(tmp_path.iterdir()) == []
    finally:
        helper.close()


def test_the_artifacts_get_the_permissions_the_umask_gives(loaded, tmp_path):
    saved = os.umask(0o022)
    try:
        write_artifacts(tmp_path / "run", save(loaded), IMDB, DrawHere(IMDB, "t"), overwrite=False)
    finally:
        os.umask(saved)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [tmp_path / "run", *(tmp_path / "run").rglob("*")]}
    assert len(modes) == 13 and modes["run"] == modes["run/images"] == modes["run/model"] == 0o755
    assert {mode for path, mode in modes.items() if "." in path} == {0o644}  # the charts and the weights were 0o600


class Interrupted:
    """Charts whose wait is interrupted (SIGTERM to the run's process alone: a second process drawing goes on)."""

    def __init__(self):
        self.calls = []

    def start(self, folder):
        self.calls.append("start")

    def finish(self):
        self.calls.append("finish")
        raise KeyboardInterrupt

    def stop(self):
        self.calls.append("stop")


def test_charts_interrupted_while_finishing_are_stopped_before_the_folder_is_removed(loaded, tmp_path):
    charts = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        write_artifacts(tmp_path / "run", save(loaded), IMDB, charts, overwrite=False)
    assert charts.calls == ["start", "finish", "stop"]
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_on_a_filesystem_of_its_own(loaded, tmp_path, monkeypatch):
    """A mount point (a container's volume, say): a rename into or out of it fails with EXDEV. The artifacts were
    staged beside it, and a whole run was lost at the last step."""
    import errno

    out = tmp_path / "volume"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    real_rename, real_replace = os.rename, os.replace

    def inside(path) -> bool:
        return os.path.abspath(path).startswith(str(out) + os.sep)

    def one_filesystem(rename):
        def checked(src, dst):
            if inside(src) != inside(dst):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
            return rename(src, dst)
        return checked

    monkeypatch.setattr(os, "rename", one_filesystem(real_rename))
    monkeypatch.setattr(os, "replace", one_filesystem(real_replace))
    for run in (1, 2):
        metrics = dict(IMDB, run=run)
        write_artifacts(out, save(loaded), metrics, DrawHere(metrics, "t"), overwrite=run == 2)
        assert json.loads((out / "metrics.json").read_text())["run"] == run
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume"]


@pytest.mark.parametrize("exists", [True, False], ids=["folder there", "folder made by the runs"])
def test_of_two_runs_saving_at_once_without_overwrite_one_wins(loaded, tmp_path, exists):
    """Both found no model/ when they started; the one that renames model/ in first keeps the folder, and the
    other is refused in one line instead of replacing the first one's model unasked."""
    out = tmp_path / "run"
    if exists:
        out.mkdir()
    first, second = dict(IMDB, run=1), dict(IMDB, run=2)

    def save_while_another_run_finishes(folder):
        write_artifacts(out, save(loaded), second, DrawHere(second, "t"), overwrite=False)  # finishes first
        save(loaded)(folder)

    with pytest.raises(HeadtuneError, match="already holds a trained model, saved by another run"):
        write_artifacts(out, save_while_another_run_finishes, first, DrawHere(first, "t"), overwrite=False)
    assert json.loads((out / "metrics.json").read_text())["run"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_full_disk_while_saving_is_one_line_and_leaves_nothing(tmp_path):
    import errno

    def full(folder):
        folder.mkdir()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.safetensors"))

    out = tmp_path / "run"
    with pytest.raises(HeadtuneError, match=r"cannot write to .*run: No space left on device; nothing of this run"):
        write_artifacts(out, full, IMDB, DrawHere(IMDB, "t"), overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the folder nor a staging folder
