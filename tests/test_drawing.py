"""drawing: the second process draws, from metrics.json, the very charts this process would; one that gets no job
ends having drawn nothing; one that fails or is another headtune is replaced by drawing here; a process with
matplotlib loaded draws its charts itself. (End to end, a warm run draws through it: test_workflow.py.)"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from headtune import drawing
from headtune.drawing import OTHER_PACKAGE, DrawHere, Helper, training_charts

from test_report import IMDB, MANY, multi_label


def staged(folder: Path, metrics: dict) -> Path:
    """A staging folder as write_artifacts hands it to the charts: metrics.json written, images/ empty."""
    (folder / "images").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return folder


def drawn(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "images").iterdir())}


def drawn_here(folder: Path, metrics: dict, title: str) -> dict[str, bytes]:
    charts = DrawHere(metrics, title)
    charts.start(staged(folder, metrics))
    charts.finish()
    return drawn(folder)


@pytest.mark.parametrize("metrics", [IMDB, MANY, multi_label(4)], ids=["imdb", "77 labels", "multi-label"])
def test_the_second_process_draws_what_this_one_draws(metrics, tmp_path):
    helper = Helper.launch()
    try:
        charts = helper.charts(metrics, "MiniLM head-only on imdb")
        charts.start(staged(tmp_path / "there", metrics))
        charts.finish()
        assert helper.process.returncode == 0  # drawn there, not by the fallback here
    finally:
        helper.close()
    there = drawn(tmp_path / "there")
    assert len(there) >= 3
    assert there == drawn_here(tmp_path / "here", metrics, "MiniLM head-only on imdb")


def test_a_second_process_that_gets_no_job_ends_having_drawn_nothing(tmp_path):
    helper = Helper.launch()
    try:
        helper.process.stdin.close()  # the run failed before its charts
        assert helper.process.wait(timeout=120) == 0
    finally:
        helper.close()
    assert helper.errors.closed


def test_the_second_process_refuses_another_headtune(tmp_path):
    assert drawing._serve(str(tmp_path)) == OTHER_PACKAGE


@pytest.mark.parametrize("code, reason", [("import sys; sys.stderr.write('no fonts here\\n'); sys.exit(1)",
                                           "no fonts here"),
                                          (f"import sys; sys.exit({OTHER_PACKAGE})", "another headtune")])
def test_a_failed_second_process_is_replaced_by_drawing_here(code, reason, tmp_path, caplog):
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=errors)
    helper = Helper(process, errors)
    with caplog.at_level(logging.DEBUG, logger="headtune"):
        charts = helper.charts(IMDB, "t")
        charts.start(staged(tmp_path / "failed", IMDB))
        charts.finish()
    helper.close()
    assert process.returncode != 0 and reason in caplog.text
    assert drawn(tmp_path / "failed") == drawn_here(tmp_path / "here", IMDB, "t")


def test_stop_ends_the_second_process_at_once(tmp_path):
    helper = Helper.launch()
    charts = helper.charts(IMDB, "t")
    charts.start(staged(tmp_path / "run", IMDB))
    charts.stop()
    assert helper.process.returncode is not None and helper.errors.closed


def test_a_process_with_matplotlib_loaded_draws_its_charts_itself():
    assert "matplotlib.figure" in sys.modules  # test_report's charts, imported above
    for draws in (True, False):
        with training_charts(draws) as charts:
            assert charts is DrawHere
