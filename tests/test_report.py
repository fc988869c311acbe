"""report: charts drawn from the metrics dict alone (what they show, checked on the figures and on the pixels),
which charts a run draws (the artifacts written whole: test_artifacts.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from headtune.metrics import classification_report, multilabel_report, reliability_bins
from headtune import report
from headtune.report import (BAR_CHART, CONFUSION_MATRIX, LINE_CHART, LR_SWEEP, RELIABILITY, bar_chart, bar_figure,
                             charts_for, confusion_matrix_chart, confusion_matrix_figure, draw_charts,
                             evaluation_charts, line_chart, line_figure, lr_sweep_chart, lr_sweep_figure,
                             reliability_chart, reliability_figure)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_SIZE = (768, 528)  # 6.4 x 4.4 inches at 120 dpi


def history(*accuracies: float, validation: bool = True) -> list[dict]:
    return [{"epoch": i, "train_loss": None if i == 0 else 0.7 - 0.1 * i,
             "validation": {"accuracy": acc + 0.02, "f1": acc, "loss": 0.5} if validation else None,
             "test": {"accuracy": acc, "f1": acc - 0.05, "loss": 0.5}, "seconds": 0.1}
            for i, acc in enumerate(accuracies)]


def sweep() -> list[dict]:
    rows = [(3e-4, [0.55, 0.6, 0.62]), (3e-3, [0.8, 0.84, 0.85]), (3e-2, [0.86, 0.88, 0.87]),
            (3e-1, [0.5, 0.3])]  # the last stopped early
    return [{"lr": lr, "validation_accuracy": acc, "best_epoch": int(np.argmax(acc)) + 1,
             "best_validation_accuracy": max(acc)} for lr, acc in rows]


def calibration(k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, 400)
    logits = rng.normal(0, 1, (400, k)) + 3 * np.eye(k)[labels]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    hot = p ** 2 / (p ** 2).sum(axis=1, keepdims=True)
    return {"temperature": 1.4, "ece_before": 0.081, "ece_after": 0.012,
            "reliability_before": reliability_bins(hot, labels), "reliability_after": reliability_bins(p, labels)}


def single_label(names: list[str], positive: int | None = 1, seed: int = 0) -> dict:
    """A run's metrics dict as metrics.json holds it, with a test report from real predictions."""
    rng = np.random.default_rng(seed)
    k = len(names)
    labels = rng.integers(0, k, 60 * k)
    preds = np.where(rng.random(len(labels)) < 0.8, labels, rng.integers(0, k, len(labels)))
    test = classification_report(labels, preds, names, positive if k == 2 else None)
    return {
        "labels": names,
        "metric_names": {"accuracy": "accuracy", "f1": f"F1 ({names[positive]})" if k == 2 else "macro F1"},
        "chance_accuracy": 0.5,
        "before": {"accuracy": 0.5, "f1": 0.0},  # an untrained head that predicts only the negative label
        "after": {"accuracy": test["accuracy"], "f1": test["f1"]},
        "history": history(0.5, 0.7, 0.8, 0.78),
        "kept_epoch": 2,
        "lr": {"mode": "auto", "chosen": 0.03, "sweep": sweep()},
        "test": test,
        "calibration": calibration(k, seed),
        "task": "single_label_classification",
    }


def multi_label(k: int) -> dict:
    rng = np.random.default_rng(1)
    targets = rng.random((50, k)) < 0.3
    predicted = targets ^ (rng.random((50, k)) < 0.1)
    names = [f"topic_{i}" for i in range(k)]
    test = multilabel_report(targets, predicted, names)
    return {"labels": names, "metric_names": {"accuracy": "subset accuracy", "f1": "micro F1"},
            "chance_accuracy": 0.2, "before": {"accuracy": 0.0, "f1": 0.3},
            "after": {"accuracy": test["accuracy"], "f1": test["f1"]}, "history": history(0.0, 0.3, 0.4),
            "kept_epoch": 2, "lr": {"mode": "fixed", "chosen": 0.01}, "test": test,
            "task": "multi_label_classification"}


IMDB = single_label(["neg", "pos"])
MANY = single_label([f"intent_{i}_{'card_payment_wrong_exchange_rate'[:i % 33]}" for i in range(77)], seed=2)


def assert_png(path, size=DEFAULT_SIZE):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        if size is not None:
            assert image.size == size
        return image.size


def render(fig):
    """The figure drawn as it is saved: pixels (rows from the top) and the renderer for extents."""
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int), canvas.get_renderer()


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def dark_pixels(pixels, bbox) -> int:
    """Dark pixels inside a display-space box (origin bottom left, as matplotlib's)."""
    height = pixels.shape[0]
    box = pixels[height - int(np.ceil(bbox.y1)):height - int(bbox.y0), int(bbox.x0):int(np.ceil(bbox.x1))]
    return int((box.sum(axis=2) < 200).sum())


# --- charts ------------------------------------------------------------------------------------------------------

def test_every_chart_is_a_png_of_the_usual_size(tmp_path):
    for name, chart in [("bar", bar_chart), ("line", line_chart), ("lr", lr_sweep_chart),
                        ("confusion", confusion_matrix_chart), ("reliability", reliability_chart)]:
        chart(IMDB, "distilbert on imdb", tmp_path / f"{name}.png")
        assert_png(tmp_path / f"{name}.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # each written whole: no temporaries left
        f"{n}.png" for n in ("bar", "line", "lr", "confusion", "reliability"))


def test_charts_draw_from_metrics_json_as_read_back(tmp_path):
    for metrics in (IMDB, MANY, multi_label(5)):
        read_back = json.loads(json.dumps(metrics))
        for relative, chart in charts_for(read_back):
            chart(read_back, "t", tmp_path / "c.png")
            assert_png(tmp_path / "c.png", size=None)


def test_bar_chart_values_names_and_a_visible_zero():
    fig = bar_figure(IMDB, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Accuracy", "F1 (pos)"]
    after = IMDB["after"]
    assert sorted(texts(ax)) == sorted(["0.500", "0.000", f"{after['accuracy']:.3f}", f"{after['f1']:.3f}"])
    assert "After training (saved head, epoch 2)" in legend(ax)
    assert "chance (majority class) 0.50" in legend(ax)
    pixels, renderer = render(fig)

    def gap(label: str, value: float) -> float:  # pixels from the bar's top to the bottom of its label
        return next(t for t in ax.texts if t.get_text() == label).get_window_extent(renderer).y0 \
            - ax.transData.transform((0, value))[1]

    # A 0 is written as far above the axis as the other values above their bars, and it is inked.
    assert gap("0.000", 0.0) == pytest.approx(gap("0.500", 0.5), abs=0.5) and gap("0.000", 0.0) > 4
    zero = next(t for t in ax.texts if t.get_text() == "0.000")
    assert dark_pixels(pixels, zero.get_window_extent(renderer)) > 20
    assert [t.get_text() for t in bar_figure(MANY, "t").axes[0].get_xticklabels()] == ["Accuracy", "Macro F1"]
    multi = bar_figure(multi_label(4), "t").axes[0]
    assert [t.get_text() for t in multi.get_xticklabels()] == ["Subset accuracy", "Micro F1"]


def test_line_chart_validation_test_chance_and_saved_epoch():
    fig = line_figure(IMDB, "t")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["Test"].get_ydata()) == [0.5, 0.7, 0.8, 0.78]
    assert list(lines["Validation"].get_ydata()) == pytest.approx([0.52, 0.72, 0.82, 0.80])
    assert list(lines["chance (majority class) 0.50"].get_ydata()) == [0.5, 0.5]
    saved = lines["saved (epoch 2): test 0.800"]
    assert list(saved.get_xdata()) == [2] and list(saved.get_ydata()) == [0.8]
    assert ax.get_ylim() == (0.0, 1.0)
    render(fig)
    ticks = {t.get_position()[0]: t.get_text() for t in ax.get_xticklabels()}
    assert ticks[0] == "before\ntraining" and ticks[3] == "3"
    no_validation = dict(IMDB, history=history(0.5, 0.6, validation=False), kept_epoch=1)
    labels = [line.get_label() for line in line_figure(no_validation, "t").axes[0].get_lines()]
    assert "Validation" not in labels and "Test" in labels


def test_line_chart_of_a_tuned_threshold_shows_both_scores():
    """Multi-label epochs are scored at 0.5; the saved head at its tuned threshold is a point of its own."""
    metrics = dict(multi_label(3), threshold=0.35, after={"accuracy": 0.25, "f1": 0.6})
    lines = {line.get_label(): line for line in line_figure(metrics, "t").axes[0].get_lines()}
    assert list(lines["epoch 2 at threshold 0.5: test 0.400"].get_ydata()) == [0.4]
    tuned = lines["saved, threshold 0.35: test 0.250"]
    assert list(tuned.get_xdata()) == [2] and list(tuned.get_ydata()) == [0.25]
    untuned = {line.get_label() for line in line_figure(dict(metrics, threshold=0.5), "t").axes[0].get_lines()}
    assert "saved (epoch 2): test 0.400" in untuned and not any("threshold" in label for label in untuned)


def test_line_chart_many_epochs_keeps_readable_ticks():
    fig = line_figure(dict(IMDB, history=history(*np.linspace(0.5, 0.9, 41)), kept_epoch=40), "t")
    render(fig)
    assert len(fig.axes[0].get_xticks()) <= 14


def test_lr_sweep_chart():
    fig = lr_sweep_figure(IMDB, "t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["best epoch"].get_xdata()) == [3e-4, 3e-3, 3e-2, 3e-1]
    assert list(lines["best epoch"].get_ydata()) == [0.62, 0.85, 0.88, 0.5]
    chosen = lines["chosen: lr 0.03"]
    assert list(chosen.get_xdata()) == [3e-2] and list(chosen.get_ydata()) == [0.88]
    last = lines["after epoch 3"].get_ydata()
    assert np.isnan(last[-1])  # the rate that stopped after two epochs has no third
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0003", "0.003", "0.03", "0.3"]


def cell_colour(fig, pixels, row, col):
    x, y = fig.axes[0].transData.transform((col, row))
    return pixels[pixels.shape[0] - int(y), int(x)]


def test_confusion_matrix_two_labels():
    fig = confusion_matrix_figure(IMDB, "t")
    ax = fig.axes[0]
    counts = IMDB["test"]["confusion_matrix"]
    assert sorted(texts(ax)) == sorted(f"{c:,}" for row in counts for c in row)
    # each count in its own cell: column = predicted label (x), row = true label (y)
    assert {t.get_position(): t.get_text() for t in ax.texts} == \
        {(col, row): f"{counts[row][col]:,}" for row in range(2) for col in range(2)}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["neg", "pos"]  # rows: true labels
    assert ax.get_ylabel() == "True label" and ax.get_xlabel() == "Predicted label"
    shares = ax.images[0].get_array()
    assert list(shares.sum(axis=1)) == pytest.approx([1, 1])
    assert shares[1, 1] == pytest.approx(counts[1][1] / sum(counts[1]))
    pixels, _ = render(fig)
    # colour by the row's share: the diagonal (about 90 %) darker than the rest
    diagonal = cell_colour(fig, pixels, 0, 0).sum()
    assert diagonal < cell_colour(fig, pixels, 0, 1).sum() - 150
    assert cell_colour(fig, pixels, 1, 1).sum() < cell_colour(fig, pixels, 1, 0).sum() - 150
    assert fig.get_size_inches() * fig.dpi == pytest.approx(DEFAULT_SIZE)


def test_confusion_matrix_77_labels_is_big_without_cell_text(tmp_path):
    fig = confusion_matrix_figure(MANY, "t")
    ax = fig.axes[0]
    assert texts(ax) == []
    assert len(ax.get_xticklabels()) == len(ax.get_yticklabels()) == 77
    assert all(t.get_fontsize() <= 6 for t in ax.get_yticklabels())
    confusion_matrix_chart(MANY, "t", tmp_path / "c.png")
    width, height = assert_png(tmp_path / "c.png", size=None)
    # every row at least 8 pixels tall: room for its 6-point name
    assert height / 77 >= 8 * 1.5 and width >= height
    _, renderer = render(fig)
    names = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    assert all(a.y0 >= b.y1 - 0.5 for a, b in zip(names, names[1:]))  # tick names do not overlap
    assert fig.get_window_extent(renderer).contains(*names[0].p0)  # the longest names fit in the figure


@pytest.mark.parametrize("metrics", [single_label([f"L{i}" for i in range(1000)], seed=3), multi_label(1000)],
                         ids=["single-label", "multi-label"])
def test_a_thousand_labels_make_a_chart_of_fixed_size_without_names(metrics, tmp_path):
    """A row per named label made a 19,000-pixel square for 1,000 labels (14 GB to draw; 3,000 were killed)."""
    from headtune.report import DPI, NAMES_MAX, UNNAMED_SIZE

    assert len(metrics["labels"]) > NAMES_MAX
    fig = confusion_matrix_figure(metrics, "t")
    ax = fig.axes[0]
    assert tuple(fig.get_size_inches()) == UNNAMED_SIZE and texts(ax) == []
    _, renderer = render(fig)
    shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"0", "500", "900"} <= set(shown) and len(shown) <= 13 and "L5" not in shown  # label ids, a few
    assert "1,000, in metrics.json's order" in ax.get_ylabel()
    confusion_matrix_chart(metrics, "t", tmp_path / "c.png")
    assert assert_png(tmp_path / "c.png", size=None) == (UNNAMED_SIZE[0] * DPI, UNNAMED_SIZE[1] * DPI)


def test_confusion_matrix_ten_labels_writes_counts():
    metrics = single_label([f"class {i}" for i in range(10)])
    ax = confusion_matrix_figure(metrics, "t").axes[0]
    counts = metrics["test"]["confusion_matrix"]
    assert {t.get_position(): t.get_text() for t in ax.texts} == \
        {(col, row): f"{counts[row][col]:,}" for row in range(10) for col in range(10)}


def test_multilabel_table_of_counts():
    metrics = multi_label(4)
    fig = confusion_matrix_figure(metrics, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["TP", "FP", "FN", "TN"]
    assert [t.get_text() for t in ax.get_yticklabels()] == metrics["labels"]
    confusion = metrics["test"]["confusion"]
    expected = [f"{confusion[n][c]:,}" for n in metrics["labels"] for c in ("tp", "fp", "fn", "tn")]
    assert texts(ax) == expected
    c = confusion[metrics["labels"][0]]
    assert list(ax.images[0].get_array()[0]) == pytest.approx(  # each label's own 2 x 2 rows
        [c["tp"] / (c["tp"] + c["fn"]), c["fp"] / (c["fp"] + c["tn"]),
         c["fn"] / (c["tp"] + c["fn"]), c["tn"] / (c["fp"] + c["tn"])])
    many = confusion_matrix_figure(multi_label(77), "t")
    assert len(many.axes[0].get_yticklabels()) == 77 and many.get_size_inches()[1] > 10


def test_reliability_chart():
    fig = reliability_figure(IMDB, "t")
    ax = fig.axes[0]
    assert legend(ax) == ["perfect calibration", "uncalibrated (ECE 0.081)", "temperature 1.40 (ECE 0.012)"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["perfect calibration"].get_xydata().ravel()) == [0, 0, 1, 1]
    full = [b for b in IMDB["calibration"]["reliability_after"] if b["count"]]
    after = lines["temperature 1.40 (ECE 0.012)"]
    assert list(after.get_xdata()) == [b["confidence"] for b in full]
    assert list(after.get_ydata()) == [b["accuracy"] for b in full]
    # evaluate: the model's own probabilities, no temperature fitted
    evaluation = {"calibration": {"temperature": None, "ece_before": 0.05, "ece_after": None,
                                  "reliability_before": IMDB["calibration"]["reliability_before"],
                                  "reliability_after": None}}
    assert legend(reliability_figure(evaluation, "t").axes[0]) == ["perfect calibration", "model (ECE 0.050)"]


def test_which_charts():
    assert [p for p, _ in charts_for(IMDB)] == [BAR_CHART, LINE_CHART, LR_SWEEP, CONFUSION_MATRIX, RELIABILITY]
    fixed = dict(IMDB, lr={"mode": "fixed", "chosen": 0.01})
    del fixed["calibration"]
    assert charts_for(fixed) == [(BAR_CHART, bar_chart), (LINE_CHART, line_chart),
                                 (CONFUSION_MATRIX, confusion_matrix_chart)]
    assert [p for p, _ in charts_for(multi_label(3))] == [BAR_CHART, LINE_CHART, CONFUSION_MATRIX]
    assert evaluation_charts(IMDB) == [(CONFUSION_MATRIX, confusion_matrix_chart), (RELIABILITY, reliability_chart)]
    assert evaluation_charts({"test": IMDB["test"], "calibration": None}) == [
        (CONFUSION_MATRIX, confusion_matrix_chart)]


def test_draw_charts_makes_folders(tmp_path):
    paths = draw_charts(tmp_path / "eval", IMDB, evaluation_charts(IMDB), "t")
    assert paths == [tmp_path / "eval" / CONFUSION_MATRIX, tmp_path / "eval" / RELIABILITY]
    for p in paths:
        assert_png(p)


def test_report_does_not_import_training_or_torch():
    code = "import sys, headtune.report; print(sorted(m for m in ('torch', 'headtune.training', 'sklearn') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"



@pytest.mark.parametrize("figure", [bar_figure, line_figure, lr_sweep_figure, confusion_matrix_figure,
                                    reliability_figure])
def test_saved_without_the_extra_draw_are_the_same_bytes(figure, tmp_path):
    """_save drops the placeholder layout engine tight_layout leaves (so savefig skips a whole draw): the file is
    what matplotlib's ordinary tight_layout + savefig writes."""
    ordinary = figure(IMDB, "t")
    ordinary.tight_layout()
    assert ordinary.get_layout_engine() is not None  # the extra draw this saves would run
    ordinary.savefig(tmp_path / "ordinary.png", format="png")
    fig = figure(IMDB, "t")
    report._save(fig, tmp_path / "saved.png")
    assert fig.get_layout_engine() is None
    assert (tmp_path / "saved.png").read_bytes() == (tmp_path / "ordinary.png").read_bytes()
