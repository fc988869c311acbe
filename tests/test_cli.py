"""The command's doors: --config files, `python -m headtune`, `headtune models`, `headtune evaluate`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headtune.architectures import FAMILIES

from test_cli_errors import assert_one_line_error, run_cli


@pytest.fixture
def base(tiny_models, sentiment_dir, tmp_path):
    return ["train", "--model", tiny_models["distilbert"], "--dataset", sentiment_dir, "--device", "cpu",
            "--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "out", "-q"]


def test_config_file_supplies_settings_and_flags_win(base, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("max_length: 32\nepochs: 1\ntrain_size: 60\ntest_size: 20\nlr: 0.05\nkeep: last\n"
                      "label_names: [bad, good]\nweight_decay: 1e-4\n")  # YAML reads 1e-4 as a string
    code, _, err = run_cli(base + ["--config", config, "--lr", "0.01"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"]["model"]["max_length"] == 32 and metrics["config"]["data"]["train_size"] == 60
    assert metrics["config"]["train"]["lr"] == 0.01  # the command line wins
    assert metrics["config"]["train"]["keep"] == "last" and metrics["labels"] == ["bad", "good"]
    assert metrics["config_file"] == str(config) and metrics["config"]["train"]["weight_decay"] == 1e-4


def test_json_config_with_dashes_and_the_resolved_configuration(base, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"max-length": 32, "epochs": 1, "train_size": 60, "test_size": 20}))
    code, _, err = run_cli(base + ["--config", config], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]["train"]["epochs"] == 1


@pytest.mark.parametrize("text, needles", [
    ("max_length: 32\nlearning_rate: 0.1\n", ("unknown setting 'learning_rate'", "max_length")),
    ("max_length: [32\n", ("is not valid YAML",)),
    ("- 1\n- 2\n", ("must map setting names to values",)),
    ("epochs: three\n", ("--epochs must be an integer above 0",)),
    ("overwrite: 'false'\n", ("--overwrite is on or off: true or false (got 'false')",)),
    ("calibrate: 0\n", ("--calibrate is on or off",)),
    ("lr: 0.1\nepochs: 2\nlr: 0.01\n", ("is not valid YAML", "'lr' is set twice; keep one")),
    ("max-length: 32\nmax_length: 64\n", ("sets 'max_length' twice; keep one",)),
])
def test_bad_config_files_are_one_line(base, tmp_path, capsys, text, needles):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, _, err = run_cli(base + ["--config", config], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_missing_config_file(base, tmp_path, capsys):
    code, _, err = run_cli(base + ["--config", tmp_path / "nope.yaml"], capsys)
    assert_one_line_error(code, err, "--config", "does not exist")


def test_models_lists_every_family_with_its_poolings(capsys):
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    for family in FAMILIES:
        line = next(line for line in out.splitlines() if line.startswith(family.name + " "))
        assert all(model_type in line for model_type in family.model_types)
        assert "native=" in line and "cls=" in line and "mean=" in line
    assert "trust_remote_code=True" in out
    # the README shows this very output, cell for cell (the one-pass and shortcut columns, each pooling's reading)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = readme.split("$ headtune models\n", 1)[1].split("```", 1)[0]
    assert out == shown


def test_python_dash_m_headtune_is_the_same_command(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "headtune", "models"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("family")
    bad = subprocess.run([sys.executable, "-m", "headtune", "train", "--epochs", "0"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "headtune: error: --epochs must be an integer above 0 (got 0)"


def test_evaluate_prints_the_metrics_as_json(base, tmp_path, capsys, sentiment_dir):
    code, _, err = run_cli(base + ["--max-length", "32", "--epochs", "1", "--test-size", "40"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["evaluate", "--model", tmp_path / "out" / "model", "--dataset", sentiment_dir,
                              "--size", "40", "--device", "cpu", "--cache-dir", tmp_path / "cache", "-q"], capsys)
    assert code == 0, err
    result = json.loads(out)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert result["accuracy"] == metrics["after"]["accuracy"] and result["features"] == "cache"
    assert (tmp_path / "out" / "evaluate-test" / "images" / "CONFUSION_MATRIX.png").is_file()


def test_json_config_with_a_setting_written_twice(base, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text('{"lr": 0.1, "epochs": 1, "lr": 0.01}')
    code, _, err = run_cli(base + ["--config", config], capsys)
    assert_one_line_error(code, err, "is not valid JSON", "'lr' is set twice; keep one")
    assert not (tmp_path / "out").exists()
