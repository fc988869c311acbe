"""Same inputs and --seed: bit-identical head weights and identical metrics on CPU, from two fresh processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from headtune import cli

from conftest import sentiment_frame

HEADTUNE = Path(sys.executable).with_name("headtune")


def without_timings(metrics: dict) -> dict:
    """metrics.json minus wall-clock seconds, the only values allowed to differ between identical runs."""
    metrics = json.loads(json.dumps(metrics))
    metrics.pop("timings_s")
    for row in metrics["history"]:
        row.pop("seconds")
    for split in metrics["backbone_pass"].values():
        for key in [k for k in split if k.endswith("seconds")]:
            split.pop(key)
    return metrics


def test_same_seed_in_two_fresh_processes_gives_identical_results(tmp_path, tiny_models, capsys):
    data = tmp_path / "data"
    data.mkdir()
    sentiment_frame(48, seed=21).to_parquet(data / "train.parquet")
    sentiment_frame(16, seed=22).to_parquet(data / "test.parquet")
    # relative --output-dir and --cache-dir, run from two folders: even the recorded config is the same
    def argv(out="out", cache="cache", seed=5):
        return ["train", "--model", str(tiny_models["bert"]), "--dataset", str(data), "--output-dir", str(out),
                "--cache-dir", str(cache), "--max-length", "32", "--epochs", "3", "--batch-size", "8",
                "--seed", str(seed), "--train-size", "40", "--device", "cpu", "-q"]

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = []
    for cwd in runs:
        cwd.mkdir()
        procs.append(subprocess.Popen([str(HEADTUNE), *argv()], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    weights = [load_file(cwd / "out" / "model" / "model.safetensors") for cwd in runs]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    metrics = [json.loads((cwd / "out" / "metrics.json").read_text()) for cwd in runs]
    assert without_timings(metrics[0]) == without_timings(metrics[1])
    assert metrics[0]["data"]["train"] + metrics[0]["data"]["validation"] == 40 and len(metrics[0]["history"]) == 4

    # the head really depends on the seed (so the equality above is not vacuous)
    other = tmp_path / "c"
    code = cli.main(argv(other / "out", other / "cache", seed=6))
    assert code == 0, capsys.readouterr().err
    changed = load_file(other / "out" / "model" / "model.safetensors")
    head = [name for name in changed if name.startswith("classifier")]
    assert head and not all(torch.equal(changed[n], weights[0][n]) for n in head)
    backbone = [name for name in changed if name.startswith("bert.encoder")]
    assert backbone and all(torch.equal(changed[n], weights[0][n]) for n in backbone)  # frozen: untouched
