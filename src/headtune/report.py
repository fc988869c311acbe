"""The run's artifacts: model folder, metrics.json and two charts, written atomically.

Everything is first written to a temporary folder beside the output folder and then
renamed into place, so a crash or Ctrl-C never leaves a half-written `model/` or
`metrics.json` behind, and an earlier run's artifacts survive until the new ones are whole.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

# Figure without pyplot: no display needed and no global registry of open figures
from matplotlib.figure import Figure

from . import atomic
from .errors import HeadtuneError, flag
from .training import History

ARTIFACTS = ("model", "images", "metrics.json")
BAR_CHART = "images/BAR_CHART.png"
LINE_CHART = "images/LINE_CHART.png"


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse, before any work is done, to replace a trained model unless asked to."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise HeadtuneError(f"{flag('output_dir')} {out} is a file, not a folder")
    if (out / "model").exists() and not overwrite:
        raise HeadtuneError(f"{out} already holds a trained model; pass {flag('overwrite')} to replace it "
                            f"or choose another {flag('output_dir')}")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise HeadtuneError(f"cannot write to {parent}; choose another {flag('output_dir')}")


def bar_chart(history: History, title: str, path: Path) -> None:
    before, after = history.before, history.after
    names = ["Accuracy", "F1"]
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    width = 0.36
    for offset, (label, result, color) in enumerate(
            (("Before (random head)", before, "#9aa5b1"), (f"After {after.epoch} epochs", after, "#2f6db5"))):
        xs = [i + (offset - 0.5) * width for i in range(len(names))]
        bars = ax.bar(xs, [result.accuracy, result.f1], width, label=label, color=color)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("Score on the test split")
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def line_chart(history: History, title: str, path: Path) -> None:
    epochs = [r.epoch for r in history.epochs]
    accuracy = [r.accuracy for r in history.epochs]
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    ax.plot(epochs, accuracy, marker="o", color="#2f6db5", label="Test accuracy")
    for x, y in zip(epochs, accuracy):
        ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=9)
    ax.set_xticks(epochs)
    ax.set_xlabel("Epoch (0 = before training)")
    ax.set_ylabel("Accuracy on the test split")
    low = min(accuracy)
    ax.set_ylim(max(0.0, low - 0.1), min(1.05, max(accuracy) + 0.08))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def write_artifacts(output_dir: str | os.PathLike, save_model: Callable[[Path], None], metrics: dict,
                    history: History, title: str, overwrite: bool) -> Path:
    """Save model/ (`save_model(folder)` writes it), metrics.json and images/ under output_dir, each renamed
    into place whole."""
    out = Path(output_dir)
    check_output_dir(out, overwrite)  # again: another run may have finished meanwhile
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale(out.parent, out.name)  # a staging folder left by a run killed while saving
    staging = Path(tempfile.mkdtemp(prefix=atomic.temp_prefix(out.name), dir=out.parent))
    try:
        save_model(staging / "model")
        (staging / "images").mkdir()
        bar_chart(history, title, staging / BAR_CHART)
        line_chart(history, title, staging / LINE_CHART)
        with open(staging / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if not out.exists():
            os.replace(staging, out)  # one rename: the whole folder appears at once
            return out
        for name in ARTIFACTS:
            if (out / name).exists():
                os.replace(out / name, staging / f".old-{name}")
            os.replace(staging / name, out / name)
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)
