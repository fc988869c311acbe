"""Which end of a too-long text to keep: `headtune train --truncation-side right` (the default) against `left`.

For the real IMDb small run (4,000 / 2,000 texts, max length 256: 42 % of the reviews are longer), the real
BANKING77 (max length 64: short queries, hardly any cut) and BANKING77 cut to 16 tokens (a stand-in for texts that
say first what they are about, as emails and tickets do), with all-MiniLM-L6-v2 and every other setting at its
default, headtune
trains once per side, each in its own empty feature cache (a cold run), and a scikit-learn
`LogisticRegression(max_iter=5000)` probe fits on exactly the features that run cached (bench_learning's probe):
what a linear reader of the same vectors gets. Accuracy is the point here; the wall times are one cold run each on
a shared machine, not a speed comparison.

    python benchmarks/bench_truncation.py            # ~9 min on a 2-core CPU
    python benchmarks/bench_truncation.py --quick --out-dir /tmp/bench-truncation   # a dry run in ~1 min

Writes `<out-dir>/truncation_side_<host>.json` and `.png`, and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from bench_learning import BANKING_DIR, probes, read_features, run_headtune  # noqa: E402

SIDES = ("right", "left")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench-truncation"),
                        help="Where the runs' output folders and feature caches go (emptied first).")
    parser.add_argument("--quick", action="store_true", help="A tiny dry run: small samples, short max lengths.")
    return parser.parse_args(argv)


def datasets(quick: bool) -> dict[str, dict]:
    if quick:
        return {"imdb": {"dataset": str(common.IMDB_DIR), "train_size": 300, "test_size": 200, "max_length": 48},
                "banking77": {"dataset": str(BANKING_DIR), "label_column": "category", "train_size": 800,
                              "test_size": 300, "max_length": 24},
                "banking77 at 16 tokens": {"dataset": str(BANKING_DIR), "label_column": "category",
                                           "train_size": 800, "test_size": 300, "max_length": 12}}
    return {"imdb": {"dataset": str(common.IMDB_DIR), "small_run": True, "max_length": 256},
            "banking77": {"dataset": str(BANKING_DIR), "label_column": "category", "max_length": 64},
            # queries cut short, as a long email or ticket is: what a text is about comes first
            "banking77 at 16 tokens": {"dataset": str(BANKING_DIR), "label_column": "category", "max_length": 16}}


def run(args: argparse.Namespace) -> dict:
    model = common.minilm_path()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    results = {}
    for name, data in datasets(args.quick).items():
        results[name] = {}
        for side in SIDES:
            common.log(f"{name}, --truncation-side {side}")
            cache = args.work_dir / f"cache-{common.slug(name)}-{side}"
            out_dir = args.work_dir / common.slug(name) / side
            row = run_headtune({"model": model, **data, "truncation_side": side, "cache_dir": str(cache),
                                "output_dir": str(out_dir), "device": "cpu"})
            features, labels, names = read_features(out_dir, cache)
            row["probe"] = probes(features, labels, len(names))["full"]
            results[name][side] = row
    return results


def table(results: dict) -> str:
    lines = ["| dataset | side | texts cut (train / test) | headtune test accuracy | out-of-fold / validation "
             "| probe on the same vectors | cold run |",
             "|---|---|---|---|---|---|---|"]
    for name, sides in results.items():
        for side, row in sides.items():
            cut = row["data"]["truncated"]
            lines.append(f"| {name} | {side} | {cut['train']:,} / {cut['test']:,} | {row['test_accuracy']:.4f} | "
                         f"{row['validation_accuracy']:.4f} | {row['probe']['test_accuracy']:.4f} | "
                         f"{row['timings_s']['total_before_save']:.0f} s |")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    for ax, (name, sides) in zip(axes.flat, results.items()):
        xs = range(len(sides))
        ours = [row["test_accuracy"] for row in sides.values()]
        probe = [row["probe"]["test_accuracy"] for row in sides.values()]
        ax.bar([x - 0.2 for x in xs], ours, width=0.4, color="#2f6db5", label="headtune, defaults")
        ax.bar([x + 0.2 for x in xs], probe, width=0.4, color="#9aa5b1", label="logistic-regression probe")
        for x, (a, b) in enumerate(zip(ours, probe)):
            ax.text(x - 0.2, a, f"{a:.4f}", ha="center", va="bottom", fontsize=8)
            ax.text(x + 0.2, b, f"{b:.4f}", ha="center", va="bottom", fontsize=8)
        low = min(ours + probe)
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(ours + probe) + 0.03))
        ax.set_xticks(list(xs), [f"--truncation-side {side}" for side in sides])
        ax.set_title(f"{name}: test accuracy")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.quiet_libraries()
    started = time.time()
    results = run(args)
    host = common.host_kind(torch.device("cpu"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"truncation_side_{host}.json"
    common.write_json(path, {**common.run_record("truncation_side", torch.device("cpu"), started),
                             "quick": args.quick, "model": common.minilm_path(), "results": results})
    chart(results, path.with_suffix(".png"))
    print(table(results))
    common.log(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
