"""Interruptions: a backbone pass killed (SIGKILL) or interrupted (SIGINT) part-way resumes from its
finished shards and gives features identical to an uninterrupted run; nothing half-written is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import headtune.features
import headtune.report
from headtune import cli, distributed

from conftest import sentiment_frame

SHARDS_BEFORE_STOP = 2  # the backbone is stopped in the first batch after this many train shards were committed


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return write_data(tmp_path / "data")


def write_data(folder: Path) -> Path:
    """40 train texts (5 shards of 8, cross-validated) and 16 test texts (2 shards)."""
    folder.mkdir()
    sentiment_frame(40, seed=11).to_parquet(folder / "train.parquet")
    sentiment_frame(16, seed=12).to_parquet(folder / "test.parquet")
    return folder


def train_argv(model: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    # shards of 8 texts, batches of at most 64 tokens: several batches per shard, several shards per split; the
    # last layer (--depth auto's pass over every layer and its hand-on are tests/test_depth.py's)
    return ["train", "--model", str(model), "--dataset", str(data), "--output-dir", str(out), "--cache-dir",
            str(cache), "--shard-size", "8", "--max-tokens-per-batch", "64", "--max-length", "32", "--epochs", "2",
            "--seed", "3", "--depth", "all", *extra]


def shard_files(cache: Path) -> dict[str, Path]:
    return {f"{p.parent.name}/{p.name}": p for p in sorted(cache.glob("*/shard-*.safetensors"))}


def run_in_process(argv: list[str], capsys) -> tuple[int, dict | None, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err
    out = Path(argv[argv.index("--output-dir") + 1])
    metrics = json.loads((out / "metrics.json").read_text()) if code == 0 else None
    return code, metrics, err


CHILD = textwrap.dedent("""
    import glob, os, signal, sys

    import headtune.features
    from headtune import cli

    cache, argv = sys.argv[1], sys.argv[2:]
    real_backbone = headtune.features.run_backbone

    def backbone_then_die(*args, **kwargs):
        # every shard so far was committed (renamed into place); die in the middle of the next one
        if len(glob.glob(os.path.join(cache, "*", "shard-*.safetensors"))) >= {shards}:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_backbone(*args, **kwargs)

    headtune.features.run_backbone = backbone_then_die
    sys.exit(cli.main(argv))
""").format(shards=SHARDS_BEFORE_STOP)


def test_sigkill_mid_extraction_then_rerun_resumes_with_identical_features(tmp_path, tiny_models, data_dir,
                                                                            capsys):
    model, out, cache = tiny_models["distilbert"], tmp_path / "out", tmp_path / "cache"
    argv = train_argv(model, data_dir, out, cache)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(cache), *argv], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    kept = shard_files(cache)
    assert len(kept) == SHARDS_BEFORE_STOP  # committed shards survive; the one being computed left nothing
    assert not [p for p in cache.glob("*/.*") if ".tmp-" in p.name], "no partial shard file"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]
    kept_bytes = {name: path.read_bytes() for name, path in kept.items()}

    # the same command again, now uninterrupted: it resumes from the finished shards
    code, resumed, err = run_in_process(argv, capsys)
    assert code == 0, err
    assert resumed["backbone_pass"]["train"]["cached_shards"] == SHARDS_BEFORE_STOP
    assert resumed["backbone_pass"]["train"]["computed_shards"] == 5 - SHARDS_BEFORE_STOP
    assert resumed["backbone_pass"]["test"]["computed_shards"] == 2
    assert {n: shard_files(cache)[n].read_bytes() for n in kept} == kept_bytes  # reused, not rewritten

    # an uninterrupted run from scratch, elsewhere
    fresh_out, fresh_cache = tmp_path / "fresh-out", tmp_path / "fresh-cache"
    code, fresh, err = run_in_process(train_argv(model, data_dir, fresh_out, fresh_cache), capsys)
    assert code == 0, err
    assert fresh["backbone_pass"]["train"]["cached_shards"] == 0

    resumed_shards, fresh_shards = shard_files(cache), shard_files(fresh_cache)
    assert resumed_shards.keys() == fresh_shards.keys() and len(fresh_shards) == 7  # same keys: same features
    for name in fresh_shards:
        a, b = load_file(resumed_shards[name]), load_file(fresh_shards[name])
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)

    # identical features, so the trained heads and their scores are identical too
    a, b = load_file(out / "model" / "model.safetensors"), load_file(fresh_out / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(r["test"], r["validation"], r["train_loss"]) for r in resumed["history"]] == \
           [(r["test"], r["validation"], r["train_loss"]) for r in fresh["history"]]


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "kill"])
def test_interrupt_mid_extraction_exits_keeps_shards_and_resumes(tmp_path, tiny_models, data_dir, capsys,
                                                                 monkeypatch, signum, exit_code):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = train_argv(tiny_models["distilbert"], data_dir, out, cache)
    real_backbone = headtune.features.run_backbone

    def backbone_then_ctrl_c(*args, **kwargs):
        if len(shard_files(cache)) >= SHARDS_BEFORE_STOP:
            signal.raise_signal(signum)  # a real signal: what Ctrl-C (SIGINT) or `kill` (SIGTERM) sends
        return real_backbone(*args, **kwargs)

    monkeypatch.setattr(headtune.features, "run_backbone", backbone_then_ctrl_c)
    # a shell's background job starts with SIGINT ignored, and Python then keeps ignoring it: Ctrl-C as at a terminal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli.main(argv + ["--quiet"])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert code == exit_code
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("headtune: interrupted")
    assert f"nothing was written to {out}" in lines[0]
    assert str(cache) in lines[0] and "rerun the same command to resume" in lines[0]
    assert len(shard_files(cache)) == SHARDS_BEFORE_STOP
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]

    monkeypatch.setattr(headtune.features, "run_backbone", real_backbone)
    code, metrics, err = run_in_process(argv, capsys)
    assert code == 0, err
    assert metrics["backbone_pass"]["train"]["cached_shards"] == SHARDS_BEFORE_STOP
    assert len(shard_files(cache)) == 7  # train 5, test 2


def test_ctrl_c_with_no_cache_says_nothing_is_kept(tmp_path, tiny_models, data_dir, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(headtune.features, "run_backbone", interrupted)
    out = tmp_path / "out"
    code = cli.main(train_argv(tiny_models["distilbert"], data_dir, out, tmp_path / "cache", "--no-cache", "-q"))
    err = capsys.readouterr().err
    assert code == 130 and len(err.splitlines()) == 1
    assert "--no-cache" in err and "start again" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_sigterm_inside_an_extensions_import_is_an_interruption(tmp_path, tiny_models, data_dir, capsys, monkeypatch):
    # pybind11 modules re-raise anything raised while they initialise (our SIGTERM handler's exception too) as
    # `ImportError: initialization failed`; seen in CI when torchrun stopped a process still importing torch's parts
    def import_meets_sigterm(*args, **kwargs):
        try:
            raise cli.Terminated()
        except cli.Terminated as stop:
            raise ImportError("initialization failed") from stop

    for name in distributed.WORLD_SIZE_VARIABLES + distributed.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(headtune.features, "run_backbone", import_meets_sigterm)
    out = tmp_path / "out"
    code = cli.main(train_argv(tiny_models["distilbert"], data_dir, out, tmp_path / "cache", "-q"))
    err = capsys.readouterr().err
    assert code == 143 and len(err.splitlines()) == 1, err
    assert err.startswith(f"headtune: interrupted; nothing was written to {out}") and "internal error" not in err


def test_ctrl_c_while_saving_keeps_the_previous_artifacts(tmp_path, tiny_models, data_dir, capsys, monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = train_argv(tiny_models["distilbert"], data_dir, out, cache)
    code, first, err = run_in_process(argv, capsys)
    assert code == 0, err
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def chart_then_ctrl_c(*args, **kwargs):  # the model is already in the staging folder by now
        raise KeyboardInterrupt

    monkeypatch.setattr(headtune.report, "line_chart", chart_then_ctrl_c)
    code = cli.main(argv + ["--overwrite", "--epochs", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 130 and len(err.splitlines()) == 1, err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the earlier run's model and metrics are untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data", "out"]  # no staging folder left


def test_predict_ctrl_c(tmp_path, capsys, monkeypatch):
    import headtune.inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(headtune.inference, "load_classifier", interrupted)
    code = cli.main(["predict", "--model", str(tmp_path), "hello"])
    err = capsys.readouterr().err
    assert code == 130 and err == "headtune: interrupted; nothing was written\n"


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt, 130), (cli.Terminated, 143)])
def test_a_signal_during_the_interruption_line_still_ends_with_its_code(monkeypatch, capsys, stop, code):
    # main() catches the first signal; a second one while it writes its line escapes main: no traceback, same code
    def interrupted_twice(argv=None):
        raise stop()

    ended = []
    monkeypatch.setattr(cli, "main", interrupted_twice)
    monkeypatch.setattr(cli.os, "_exit", ended.append)
    try:
        cli.console()
    except KeyboardInterrupt:  # caught here: escaping, it would stop pytest itself
        pytest.fail("the signal escaped console() as a traceback")
    assert ended == [code] and capsys.readouterr().err == ""
