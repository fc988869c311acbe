"""Several processes (torchrun, accelerate launch): each computes its own share of the missing cache shards, the main
one alone trains and writes the artifacts, and the result is exactly that of one process.

The end-to-end tests start real launchers on CPU (gloo); each process runs one thread, as a single process does in
the run they are compared with, so that the features are bit for bit the same.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import headtune
from headtune import cli, distributed
from headtune.config import FeatureConfig
from headtune.distributed import Processes
from headtune.errors import HeadtuneError
from headtune.features import PassStats, fill_cache, missing_shards

from conftest import Backbone
from test_resume import train_argv, write_data

SRC = Path(headtune.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("runs") / "data")


def child_env() -> dict[str, str]:
    # one thread per process, in the single-process run too: the same kernels, so the same bits
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def launch(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=child_env(), cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_models, data_dir) -> tuple[Path, Path]:
    """(output folder, cache) of the run of one process that the launched runs must match."""
    root = tmp_path_factory.mktemp("single")
    out, cache = root / "out", root / "cache"
    argv = train_argv(tiny_models["distilbert"], data_dir, out, cache, "-q")
    done = launch([sys.executable, "-m", "headtune", *argv], root)
    assert done.returncode == 0, done.stderr
    return out, cache


def cache_files(cache: Path) -> dict[str, Path]:
    return {f"{p.parent.name}/{p.name}": p for p in sorted(cache.glob("*/*")) if p.is_file()}


def comparable(metrics: dict) -> dict:
    """metrics.json without what differs between equal runs: times, where they wrote, how many processes."""
    metrics = json.loads(json.dumps(metrics))
    del metrics["timings_s"]
    for record in metrics["history"]:
        del record["seconds"]
    for stats in metrics["backbone_pass"].values():
        for key in [k for k in stats if k.endswith("seconds")]:
            del stats[key]
    del metrics["config"]["features"]["cache_dir"], metrics["config"]["output"]["output_dir"]
    del metrics["environment"]["processes"]
    return metrics


def assert_same_run(single: tuple[Path, Path], out: Path, cache: Path, shards: int = 5 + 2) -> None:
    one_out, one_cache = single
    # the same cache entries (the same keys), every shard, the body and the tokenizer tensor for tensor
    mine, theirs = cache_files(cache), cache_files(one_cache)
    assert mine.keys() == theirs.keys()
    assert sum(name.split("/")[1].startswith("shard-") for name in mine) == shards
    for name in mine:
        if name.endswith(".safetensors"):
            a, b = load_file(mine[name]), load_file(theirs[name])
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        else:
            assert mine[name].read_bytes() == theirs[name].read_bytes(), name
    assert not [p for p in cache.rglob(".*") if ".tmp-" in p.name], "temporaries left in the cache"

    # only the main process wrote artifacts, and they are those of one process
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["cache", "out"]  # no staging folder of a second writer
    assert (out / "model" / "model.safetensors").read_bytes() == (one_out / "model" / "model.safetensors").read_bytes()
    many, one = json.loads((out / "metrics.json").read_text()), json.loads((one_out / "metrics.json").read_text())
    assert many["environment"]["processes"] == 2 and one["environment"]["processes"] == 1
    assert comparable(many) == comparable(one)
    assert many["backbone_pass"]["train"]["computed_shards"] == 5  # the whole pass, added up over the processes
    assert many["environment"]["model_loaded"] is True


def test_torchrun_two_processes_give_what_one_gives(tmp_path, tiny_models, data_dir, single):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = train_argv(tiny_models["distilbert"], data_dir, out, cache, "--debug")  # --debug: each says its part
    done = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "headtune", *argv], tmp_path)
    assert done.returncode == 0, done.stderr
    parts = dict(re.findall(r"headtune: process (\d) of 2: computed (.*)", done.stderr))
    # shard i is process i % 2's: train 0, 2, 4 and 1, 3; test 0 and 1
    assert parts == {"0": "train 3 of 3 shards, test 1 of 1 shards; loaded the model",
                     "1": "train 2 of 2 shards, test 1 of 1 shards; loaded the model"}, \
        done.stderr
    assert done.stderr.count("headtune: saved model/") == 1
    assert_same_run(single, out, cache)


@pytest.fixture(scope="module")
def single_auto(tmp_path_factory, tiny_models, data_dir) -> tuple[Path, Path]:
    """(output folder, cache) of one process's run with --depth auto."""
    root = tmp_path_factory.mktemp("single-auto")
    out, cache = root / "out", root / "cache"
    done = launch([sys.executable, "-m", "headtune",
                   *train_argv(tiny_models["distilbert"], data_dir, out, cache, "-q", "--depth", "auto")], root)
    assert done.returncode == 0, done.stderr
    return out, cache


def test_torchrun_two_processes_choose_the_depth_one_process_chooses(tmp_path, tiny_models, data_dir, single_auto):
    """Each process computes its share of the every-layer pass; the main one chooses, and the run goes on at that
    depth in both: the same cache (every-layer shards, the chosen layer's handed on, the cut model's test shards),
    the same choice in metrics.json and the same saved model as one process."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = train_argv(tiny_models["distilbert"], data_dir, out, cache, "--debug", "--depth", "auto")
    done = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "headtune", *argv], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the last layer is read" not in done.stderr  # no fallback to --depth all
    assert done.stderr.count("headtune: --depth auto: layer") == 1  # the main process chooses, and says so once
    # the every-layer pass's 5 train shards, the chosen layer's 5 handed on, the cut model's 2 test shards
    assert_same_run(single_auto, out, cache, shards=5 + 5 + 2)
    many = json.loads((out / "metrics.json").read_text())
    assert many["depth"]["mode"] == "auto" and many["config"]["model"]["depth"] == many["depth"]["chosen"]
    # the cut model's test shards: one per process (shard i is process i % 2's); its train shards were handed on
    parts = dict(re.findall(r"headtune: process (\d) of 2: computed (.*)", done.stderr))
    assert parts == {"0": "train 0 of 3 shards, test 1 of 1 shards; loaded the model",
                     "1": "train 0 of 2 shards, test 1 of 1 shards; loaded the model"}, done.stderr


def test_accelerate_launch_two_processes_give_what_one_gives(tmp_path, tiny_models, data_dir, single):
    out, cache = tmp_path / "out", tmp_path / "cache"
    # --multi_gpu starts one process each (through torchrun's machinery); on a machine without GPUs they run on the
    # CPU. (`--cpu --num_processes 2` would start a single process: accelerate runs several CPU processes via MPI.)
    done = launch([sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
                   "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                   "no", "--main_process_port", "0", "-m", "headtune",
                   *train_argv(tiny_models["distilbert"], data_dir, out, cache)], tmp_path)
    assert done.returncode == 0, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("headtune:")]
    # the other process keeps to warnings: the main process's report only, each line once
    assert ours and len(ours) == len(set(ours)), done.stderr
    assert sum(line.startswith("headtune: backbone pass train:") for line in ours) == 1
    assert "LOAD REPORT" not in done.stderr
    assert_same_run(single, out, cache)


def test_bad_input_under_torchrun_is_the_error_line_not_an_interruption(tmp_path, tiny_models):
    # every process meets the bad input; whichever the launcher stops first must not send the user to "resume"
    argv = train_argv(tiny_models["distilbert"], tmp_path / "no-such-data", tmp_path / "out", tmp_path / "cache")
    done = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "headtune", *argv], tmp_path)
    ours = [line for line in done.stderr.splitlines() if line.startswith("headtune: ")]
    assert done.returncode != 0
    assert f"headtune: error: dataset path {tmp_path / 'no-such-data'} does not exist; pass a folder with --dataset" \
        in ours, done.stderr
    # the other process printed the same error, or says its launcher stopped it: never a bare "interrupted"
    assert all(line.startswith(("headtune: error: dataset path", "headtune: process 0 of 2 was stopped by its "
                                "launcher", "headtune: process 1 of 2 was stopped by its launcher")) for line in ours), ours


@pytest.mark.parametrize("rank, launched", [(1, "2"), (0, "2"), (0, None)])
def test_sigterm_under_a_launcher_says_the_launcher_stopped_the_process(monkeypatch, tiny_models, tmp_path, rank,
                                                                        launched):
    for name in distributed.WORLD_SIZE_VARIABLES + distributed.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if launched:
        monkeypatch.setenv("WORLD_SIZE", launched)
        monkeypatch.setenv("RANK", str(rank))
    cfg = cli.RunConfig.from_flat(**{"model": str(tiny_models["distilbert"]), "output_dir": str(tmp_path / "o"),
                                     "cache_dir": str(tmp_path / "c")})
    line = cli.interrupted_message("train", cfg, terminated=True)
    if launched:
        assert line.startswith(f"process {rank} of 2 was stopped by its launcher, which stops them all when one "
                               f"fails (see that one's error line) or when the run is interrupted; nothing was "
                               f"written to {tmp_path / 'o'}"), line
    else:
        assert line.startswith(f"interrupted; nothing was written to {tmp_path / 'o'}"), line
    assert line.endswith("rerun the same command to resume from them")
    assert cli.interrupted_message("predict", None, terminated=False) == "interrupted; nothing was written"


@pytest.mark.parametrize("rank", [0, 1])
def test_predict_and_evaluate_run_in_the_launchers_first_process_alone(single, data_dir, tmp_path, monkeypatch,
                                                                       capsys, rank):
    for name in distributed.WORLD_SIZE_VARIABLES + distributed.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setattr(distributed, "current", lambda: pytest.fail("joined a process group"))
    model = single[0] / "model"
    assert cli.main(["predict", "--model", str(model), "a fine film", "a dull film"]) == 0
    out, err = capsys.readouterr()
    evaluated = tmp_path / "evaluated"
    assert cli.main(["evaluate", "--model", str(model), "--dataset", str(data_dir), "--output-dir",
                     str(evaluated)]) == 0
    if rank:  # another process's output would repeat the first's, or race it for the same files
        assert (out, err) == ("", "")
        assert capsys.readouterr() == ("", "") and not evaluated.exists()
    else:
        assert [row["text"] for row in json.loads(out)] == ["a fine film", "a dull film"]
        assert "predict runs in one process: this one does it all, and the launcher's other 1 do nothing" in err
        assert err.count("runs in one process") == 1
        assert (evaluated / "metrics.json").is_file()


# --------------------------------------------------------------------------- one process's role, in this process

def test_a_process_that_is_not_the_main_one_fills_its_shards_and_writes_nothing_else(tmp_path, tiny_models,
                                                                                      data_dir, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "current", lambda: Processes(rank=1, world_size=2, local_rank=1,
                                                                  local_world_size=2))
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli.main(train_argv(tiny_models["distilbert"], data_dir, out, cache)) == 0
    assert capsys.readouterr().err == ""  # no report: that is the main process's
    assert not out.exists()
    assert sorted(name.split("/")[1] for name in cache_files(cache) if "shard-" in name) == \
           ["shard-00001.safetensors"] * 2 + ["shard-00003.safetensors"]  # train 1 and 3, test 1; no body
    assert not any(name.endswith("body.safetensors") for name in cache_files(cache))


def test_no_cache_is_refused_with_several_processes(tmp_path, tiny_models, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "current", lambda: pytest.fail("joined a process group"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = cli.main(train_argv(tiny_models["distilbert"], data_dir, out, cache, "--no-cache"))
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("headtune: error: --no-cache cannot be used with 2 processes") and "feature cache" in err
    assert not out.exists() and not cache.exists()


# --------------------------------------------------------------------------- distributed.py

def test_every_shard_has_exactly_one_owner():
    for world in (1, 2, 3, 8):
        team = [Processes(rank, world) for rank in range(world)]
        for shard in range(50):
            assert [p.rank for p in team if p.owns(shard)] == [shard % world]


def test_one_process_needs_no_launcher_and_imports_no_accelerate(monkeypatch):
    for name in distributed.WORLD_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "accelerate", None)  # importing it would now fail
    one = distributed.current()
    assert (one.rank, one.world_size, one.main, one.several) == (0, 1, True, False)
    one.barrier()
    assert one.gather({"a": 1}) == [{"a": 1}]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.current() == Processes()


def test_a_bad_world_size_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(HeadtuneError, match="WORLD_SIZE='two' is not a number of processes"):
        distributed.current()


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    second_machine = [Processes(rank, 8, rank - 4, 4) for rank in range(4, 8)]
    assert [p.device("auto") for p in second_machine] == [torch.device("cuda", i) for i in range(4)]
    assert second_machine[1].device("cuda") == torch.device("cuda", 1)
    assert second_machine[1].device("cpu") == torch.device("cpu")
    assert Processes().device("cuda:2") == torch.device("cuda", 2)  # one process: as asked
    with pytest.raises(HeadtuneError, match="--device cuda:2 names one GPU, but 8 processes run"):
        second_machine[0].device("cuda:2")


def test_more_processes_than_gpus_share_them_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="headtune"):
        devices = [Processes(rank, 3, rank, 3).device("cuda") for rank in range(3)]
    assert devices == [torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cuda", 0)]
    assert len(caplog.records) == 1 and "3 processes on this machine share its 2 GPU(s)" in caplog.text


# --------------------------------------------------------------------------- features.fill_cache

TEXTS = [f"the film was {'great' if i % 3 else 'dull'} and the plot " + "very " * (i % 7) + "moving"
         for i in range(21)]


@pytest.fixture(scope="module")
def backbone(tiny_models):
    return Backbone(tiny_models["distilbert"], max_length=32)


def fill(backbone, cache, shards=None, reader=None, **cfg):
    return fill_cache(reader or backbone.reader, torch.device("cpu"), backbone.plan.point, backbone.tokenizer, TEXTS,
                      max_length=32, cfg=FeatureConfig(cache_dir=str(cache), shard_size=4, **cfg),
                      identity=backbone.identity, dtype=None, shards=shards)


def missing(backbone, cache, shards=None):
    return missing_shards(backbone.plan.point, TEXTS, device=torch.device("cpu"), max_length=32,
                          cfg=FeatureConfig(cache_dir=str(cache), shard_size=4), identity=backbone.identity,
                          dtype=None, shards=shards)


def test_parts_of_a_pass_fill_the_cache_with_the_features_of_one_pass(backbone, tmp_path):
    whole, one_pass = backbone.extract(TEXTS, cache_dir=str(tmp_path / "one"), shard_size=4)  # 6 shards
    cache = tmp_path / "parts"
    team = [Processes(rank, 3) for rank in range(3)]
    assert missing(backbone, cache, team[1].owns) == [1, 4]
    parts = [fill(backbone, cache, p.owns) for p in team]
    assert [(p.computed_shards, p.cached_shards) for p in parts] == [(2, 0), (2, 0), (2, 0)]
    assert missing(backbone, cache) == []
    features, read = backbone.extract(TEXTS, cache_dir=str(cache), shard_size=4)
    assert torch.equal(features, whole) and read.computed_shards == 0
    combined = PassStats.combine(parts)
    times = ("seconds", "tokenize_seconds")
    assert {**vars(combined), **dict.fromkeys(times, 0)} == {**vars(one_pass), **dict.fromkeys(times, 0)}
    assert all(getattr(combined, t) == max(getattr(p, t) for p in parts) for t in times)

    # a resumed run: each process computes only its own missing shards, and reads nothing it needs not
    (next(cache.glob("*/shard-00004.safetensors"))).unlink()
    assert missing(backbone, cache, team[0].owns) == []
    again = fill(backbone, cache, team[1].owns)
    assert (again.computed_shards, again.cached_shards) == (1, 1)


def test_a_part_with_nothing_missing_needs_no_backbone(backbone, tmp_path):
    fill(backbone, tmp_path)
    stats = fill_cache(None, torch.device("cpu"), backbone.plan.point, None, TEXTS, max_length=32,
                       cfg=FeatureConfig(cache_dir=str(tmp_path), shard_size=4), identity=backbone.identity,
                       dtype=None, shards=Processes(1, 2).owns)
    # shards 1, 3 and 5 (the last holds 21 - 20 texts)
    assert (stats.computed_shards, stats.cached_shards, stats.texts) == (0, 3, 4 + 4 + 1)


def test_a_shard_another_process_wrote_meanwhile_is_used(backbone, tmp_path):
    done = tmp_path / "done"
    fill(backbone, done)  # what the other process writes
    cache, calls = tmp_path / "cache", []

    def reader(ids, mask):
        if not calls:  # while this process computes shard 0, another one finishes shards 1 to 5
            for path in done.glob("*/shard-*.safetensors"):
                if not path.name.endswith("00000.safetensors"):
                    target = cache / path.parent.name / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
        calls.append(len(ids))
        return backbone.reader(ids, mask)

    stats = fill(backbone, cache, reader=reader)
    assert (stats.computed_shards, stats.cached_shards) == (1, 5)
    assert sum(calls) == 4  # the backbone ran on shard 0's four texts only
    features, _ = backbone.extract(TEXTS, cache_dir=str(cache), shard_size=4)
    assert torch.equal(features, backbone.extract(TEXTS, cache_dir=str(done), shard_size=4)[0])


def test_fill_cache_needs_the_cache(backbone, tmp_path):
    with pytest.raises(ValueError, match="needs the feature cache"):
        fill(backbone, tmp_path, no_cache=True)
