"""The charts of a run (training) or of an evaluation, as PNG files.

The charts are drawn from the metrics dict alone (the one written to metrics.json), not from
training objects: what a chart shows is then always what metrics.json says. Each chart has a
`*_figure(metrics, title) -> Figure` that tests can inspect and a `*_chart(metrics, title, path)`
that saves it as a PNG.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.colors import PowerNorm
# Figure without pyplot: no display needed and no global registry of open figures
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from . import atomic
from .calibration import DEFAULT_THRESHOLD

BAR_CHART = "images/BAR_CHART.png"
LINE_CHART = "images/LINE_CHART.png"
LR_SWEEP = "images/LR_SWEEP.png"
CONFUSION_MATRIX = "images/CONFUSION_MATRIX.png"
RELIABILITY = "images/RELIABILITY.png"

SIZE, DPI = (6.4, 4.4), 120  # 768 x 528 pixels
BEFORE, AFTER, VALIDATION, GUIDE = "#9aa5b1", "#2f6db5", "#e07b39", "#555555"
CELL_TEXT_MAX = 20  # more labels than this: cells too small for their counts
# More labels than this: no name per row, and a figure of fixed size (the cells shrink). With a row per name a
# chart of 1,000 labels was 19,000 pixels square and took 14 GB to draw; 3,000 were killed for memory.
NAMES_MAX = 150
UNNAMED_SIZE = (9.0, 8.0)

Chart = Callable[[dict, str, Path], None]


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine, for which savefig runs a whole extra draw first (~15 % of a
    # chart's time); without an engine the same pixels are saved, byte for byte (tests/test_report.py)
    fig.set_layout_engine(None)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic.write_bytes(Path(path), buffer.getvalue())  # a chart is whole or absent, also outside write_artifacts


def _capital(name: str) -> str:
    return name[:1].upper() + name[1:]  # not str.capitalize: "macro F1" must not become "Macro f1"


def _names(metrics: dict) -> tuple[str, str]:
    names = metrics.get("metric_names", {})
    return _capital(names.get("accuracy", "accuracy")), _capital(names.get("f1", "F1"))


def _chance_label(chance: float) -> str:
    return f"chance (majority class) {chance:.2f}"


# --- before vs after -------------------------------------------------------------------------------------------

def bar_figure(metrics: dict, title: str) -> Figure:
    """Accuracy and F1 on the test split, untrained head vs saved head, each bar with its value."""
    names = _names(metrics)
    kept = metrics.get("kept_epoch")
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    width = 0.36
    for offset, (label, scores, color) in enumerate((
            ("Before training (untrained head)", metrics["before"], BEFORE),
            ("After training" + (f" (saved head, epoch {kept})" if kept is not None else ""),
             metrics["after"], AFTER))):
        xs = [i + (offset - 0.5) * width for i in range(2)]
        values = [scores["accuracy"], scores["f1"]]
        bars = ax.bar(xs, values, width, label=label, color=color)
        # A 0 (say, F1 of a head that never predicts the positive class) is labelled too: bar_label
        # counts 0 as positive, so "0.000" sits the same 3 points above the axis (tested).
        # white behind the digits: the chance line often runs right through the untrained head's value
        ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=9, zorder=4,
                     bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    if metrics.get("chance_accuracy") is not None:  # accuracy's floor: always predicting the commonest label
        ax.hlines(metrics["chance_accuracy"], -0.5, 0.5, colors=GUIDE, linestyles="--", linewidth=1,
                  label=_chance_label(metrics["chance_accuracy"]))
    ax.set_xticks(range(2), names)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(0, 1.3)  # room above 1.0 for the values and the legend
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("Score on the test split")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return fig


def bar_chart(metrics: dict, title: str, path: Path) -> None:
    _save(bar_figure(metrics, title), path)


# --- per epoch -------------------------------------------------------------------------------------------------

def line_figure(metrics: dict, title: str) -> Figure:
    """Accuracy after each epoch on the validation (when there is one) and test splits, with the chance
    level and the epoch whose head was saved."""
    history = metrics["history"]
    accuracy_name = _names(metrics)[0]
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    validation = [(r["epoch"], r["validation"]["accuracy"]) for r in history if r.get("validation")]
    if validation:
        folds = (metrics.get("validation") or {}).get("folds")
        label = f"Validation (out-of-fold, {folds} folds)" if folds else "Validation"
        ax.plot(*zip(*validation), marker="o", markersize=4, color=VALIDATION, label=label, clip_on=False)
    test = [r["test"]["accuracy"] for r in history]
    ax.plot(epochs, test, marker="o", markersize=4, color=AFTER, label="Test", clip_on=False)
    if metrics.get("chance_accuracy") is not None:
        ax.axhline(metrics["chance_accuracy"], color=GUIDE, linestyle="--", linewidth=1,
                   label=_chance_label(metrics["chance_accuracy"]))
    kept = metrics.get("kept_epoch")
    if kept is not None and kept in epochs:
        ax.axvline(kept, color=GUIDE, linestyle=":", linewidth=1)
        y = test[epochs.index(kept)]
        threshold = metrics.get("threshold")
        # multi-label: the epochs were scored at the default threshold, the saved head at its tuned one
        tuned = threshold is not None and threshold != DEFAULT_THRESHOLD
        star = f"epoch {kept} at threshold {DEFAULT_THRESHOLD:g}: test {y:.3f}" if tuned else \
            f"saved (epoch {kept}): test {y:.3f}"
        ax.plot([kept], [y], marker="*", markersize=14, color=AFTER, markeredgecolor="black", linestyle="none",
                label=star, clip_on=False, zorder=3)
        if tuned and metrics.get("after"):
            after = metrics["after"]["accuracy"]
            ax.plot([kept], [after], marker="D", markersize=8, color=VALIDATION, markeredgecolor="black",
                    linestyle="none", label=f"saved, threshold {threshold:g}: test {after:.3f}", clip_on=False,
                    zorder=3)
    ax.set_ylim(0, 1)
    ax.set_xlim(min(epochs) - 0.3, max(epochs) + 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: "before\ntraining" if x == 0 else f"{x:g}"))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(accuracy_name)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def line_chart(metrics: dict, title: str, path: Path) -> None:
    _save(line_figure(metrics, title), path)


# --- learning-rate sweep ---------------------------------------------------------------------------------------

def lr_sweep_figure(metrics: dict, title: str) -> Figure:
    """Best validation accuracy per learning rate of the sweep (log axis), thin lines per epoch, the
    chosen rate starred."""
    sweep = sorted(metrics["lr"]["sweep"], key=lambda s: s["lr"])
    chosen = metrics["lr"]["chosen"]
    rates = [s["lr"] for s in sweep]
    best = [s["best_validation_accuracy"] for s in sweep]
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    epochs = max(len(s["validation_accuracy"]) for s in sweep)
    for e in range(epochs):
        # NaN where a rate stopped early: the line breaks instead of inventing a value
        ys = [s["validation_accuracy"][e] if e < len(s["validation_accuracy"]) else np.nan for s in sweep]
        labelled = e in (0, epochs - 1)  # a legend entry per epoch would bury the rest
        ax.plot(rates, ys, color=AFTER, alpha=0.15 + 0.45 * (e + 1) / epochs, linewidth=0.8,
                label=f"after epoch {e + 1}" if labelled and epochs > 1 else None)
    ax.plot(rates, best, marker="o", color=AFTER, linewidth=2, label="best epoch")
    for x, y, s in zip(rates, best, sweep):
        ax.annotate(f"{y:.3f}\n(ep {s['best_epoch']})", (x, y), xytext=(0, 6), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7)
    at = min(range(len(rates)), key=lambda i: abs(np.log(rates[i]) - np.log(chosen)))
    ax.plot([rates[at]], [best[at]], marker="*", markersize=16, color=VALIDATION, markeredgecolor="black",
            linestyle="none", label=f"chosen: lr {chosen:g}", zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.minorticks_off()
    ax.set_xlim(rates[0] / 1.6, rates[-1] * 1.6)
    ax.set_ylim(0, 1.15)  # from 0: a rate that did not learn reads as such, not as "a bit lower"
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("Learning rate")
    accuracy, f1 = _names(metrics)
    held = "out of fold" if (metrics.get("validation") or {}).get("folds") else "on the validation split"
    ax.set_ylabel(f"{f1 if metrics['lr'].get('chosen_by') == 'f1' else accuracy} {held}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def lr_sweep_chart(metrics: dict, title: str, path: Path) -> None:
    _save(lr_sweep_figure(metrics, title), path)


# --- confusion -------------------------------------------------------------------------------------------------

def _row_shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)  # a row never seen: all 0


def _heat_map(fig: Figure, ax, counts: np.ndarray, shares: np.ndarray, text_size: float | None, what: str,
              interpolation: str = "antialiased") -> None:
    # Square-root colour scale: a 5 % confusion is what one looks for, and on a linear scale it is
    # nearly as pale as 0.
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), aspect="auto",
                      interpolation=interpolation)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(what, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if text_size:
        for (i, j), count in np.ndenumerate(counts):
            ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=text_size,
                    color="white" if shares[i, j] > 0.45 else "black")  # readable on dark and light cells


def confusion_matrix_figure(metrics: dict, title: str) -> Figure:
    """Single-label: counts with true labels as rows, predicted as columns, coloured by the row's share
    (recall on the diagonal), counts written in up to CELL_TEXT_MAX labels. Multi-label: TP, FP, FN, TN
    per label, coloured by each label's own 2 x 2 rows (TP, FN: of the texts with the label; FP, TN: of
    those without), counts always written in (four wide columns leave room)."""
    names = metrics["labels"]
    k = len(names)
    small, named = k > CELL_TEXT_MAX, k <= NAMES_MAX
    tick = 6 if small else 9
    # Label names take room beside and below the cells: ~0.6 em per character
    margin = 0.8 + max(len(n) for n in names) * tick * 0.6 / 72 if named else 0.8
    if "confusion" in metrics["test"]:  # multi-label
        table = [metrics["test"]["confusion"][n] for n in names]
        counts = np.array([[c["tp"], c["fp"], c["fn"], c["tn"]] for c in table])
        # (TP, FN) and (FP, TN) are the rows of each label's 2 x 2 matrix: shares within each
        positives, negatives = _row_shares(counts[:, [0, 2]]), _row_shares(counts[:, [1, 3]])
        shares = np.column_stack([positives[:, 0], negatives[:, 0], positives[:, 1], negatives[:, 1]])
        height = k * (0.17 if small else 0.3) + 1.6
        fig = Figure(figsize=(max(SIZE[0], margin + 5.5), max(SIZE[1], height)) if named else UNNAMED_SIZE, dpi=DPI)
        ax = fig.subplots()
        _heat_map(fig, ax, counts, shares, (6 if small else 9) if named else None,
                  "Rate: TP, FN of the texts with the label; FP, TN of those without", "nearest")  # 4 sharp columns
        ax.set_xticks(range(4), ["TP", "FP", "FN", "TN"], fontsize=9)
        _name_rows(ax, names, tick, named, "y")
        if not named:
            ax.set_ylabel(f"Label ({k:,}, in metrics.json's order)")
        ax.set_xlabel("Count per label over the test texts")
    else:
        counts = np.array(metrics["test"]["confusion_matrix"])
        side = k * (0.16 if small else 0.5) + margin + 0.8
        fig = Figure(figsize=(max(SIZE[0], side + 1.6), max(SIZE[1], side)) if named else UNNAMED_SIZE, dpi=DPI)
        ax = fig.subplots()
        text = None if small else (11 if k <= 4 else 8 if k <= 10 else 7.5)
        _heat_map(fig, ax, counts, _row_shares(counts), text, "Share of the true label's texts")
        _name_rows(ax, names, tick, named, "x", rotation=90 if k > 6 or margin > 2 else 0)
        _name_rows(ax, names, tick, named, "y")
        ax.set_xlabel("Predicted label" + ("" if named else f" ({k:,}, in metrics.json's order)"))
        ax.set_ylabel("True label" + ("" if named else f" ({k:,}, in metrics.json's order)"))
        ax.set_aspect("equal")
    ax.tick_params(length=2)
    ax.set_title(title, fontsize=10)
    return fig


def _name_rows(ax, names: list[str], size: float, named: bool, axis: str, rotation: float = 0) -> None:
    """A tick with its name per label; beyond NAMES_MAX, a few numbered ticks (label ids) instead."""
    if named:
        getattr(ax, f"set_{axis}ticks")(range(len(names)), names, fontsize=size, rotation=rotation)
    else:
        getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(10, integer=True))
        ax.tick_params(axis=axis, labelsize=7)


def confusion_matrix_chart(metrics: dict, title: str, path: Path) -> None:
    _save(confusion_matrix_figure(metrics, title), path)


# --- calibration -----------------------------------------------------------------------------------------------

def reliability_figure(metrics: dict, title: str) -> Figure:
    """Accuracy against mean confidence per confidence bin, before and after the temperature, with the
    diagonal of perfect calibration; marker area follows the bin's share of texts."""
    cal = metrics["calibration"]
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=GUIDE, linestyle="--", linewidth=1, label="perfect calibration")
    t = cal.get("temperature")
    series = [("uncalibrated" if t is not None else "model", cal.get("reliability_before"),
               cal.get("ece_before"), BEFORE, "o")]
    if cal.get("reliability_after"):
        series.append((f"temperature {t:.2f}" if t is not None else "calibrated", cal["reliability_after"],
                       cal.get("ece_after"), AFTER, "s"))
    for label, bins, ece, color, marker in series:
        full = [b for b in bins if b["count"]]  # an empty bin has no accuracy to show
        total = sum(b["count"] for b in full)
        ece_text = f" (ECE {ece:.3f})" if ece is not None else ""
        ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], color=color, linewidth=1.2,
                label=label + ece_text)
        ax.scatter([b["confidence"] for b in full], [b["accuracy"] for b in full], color=color, marker=marker,
                   s=[12 + 150 * b["count"] / total for b in full], zorder=3, edgecolors="black", linewidths=0.4,
                   clip_on=False)  # most texts sit in the bin at 1.0: keep its marker whole
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("Confidence (top probability, mean per bin)")
    ax.set_ylabel("Accuracy in the bin")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, title="marker area: share of the texts", title_fontsize=7)
    return fig


def reliability_chart(metrics: dict, title: str, path: Path) -> None:
    _save(reliability_figure(metrics, title), path)


# --- which charts ----------------------------------------------------------------------------------------------

def _has_reliability(metrics: dict) -> bool:
    return bool((metrics.get("calibration") or {}).get("reliability_before"))


def charts_for(metrics: dict) -> list[tuple[str, Chart]]:
    """The charts a training run draws: (path relative to the output folder, chart function)."""
    # The functions are looked up at each call, so a test can monkeypatch one (test_resume does).
    charts = [(BAR_CHART, bar_chart), (LINE_CHART, line_chart)]
    if (metrics.get("lr") or {}).get("mode") == "auto" and metrics["lr"].get("sweep"):
        charts.append((LR_SWEEP, lr_sweep_chart))
    charts.append((CONFUSION_MATRIX, confusion_matrix_chart))
    if _has_reliability(metrics):
        charts.append((RELIABILITY, reliability_chart))
    return charts


def evaluation_charts(metrics: dict) -> list[tuple[str, Chart]]:
    """The charts the evaluate command draws: it has no training to show, only the test split."""
    charts = [(CONFUSION_MATRIX, confusion_matrix_chart)]
    if _has_reliability(metrics):
        charts.append((RELIABILITY, reliability_chart))
    return charts


def draw_charts(folder: str | os.PathLike, metrics: dict, charts: list[tuple[str, Chart]], title: str) -> list[Path]:
    """Draw each chart to folder/relative path (folders made as needed); returns the paths written."""
    paths = []
    for relative, draw in charts:
        path = Path(folder) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(metrics, title, path)
        paths.append(path)
    return paths
