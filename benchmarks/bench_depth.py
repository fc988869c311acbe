"""`--depth auto` (the default) against `--depth all` (the last layer), side by side, on the real and unseen data.

For the IMDb small run (--max-length 256), BANKING77 (--max-length 64) and bench_learning.py's five datasets
headtune has never seen, headtune trains twice with every other setting at its default: reading the last layer
(`--depth all`, the default before `auto`) and with `--depth auto` (the layer chosen by cross-validation on the
training sample). Each run is cold, in an empty cache of its own, so their wall times compare: what the choice
costs or saves (the every-layer pass over the training texts, then the test texts through the model cut to the
chosen layer). Beside each run, bench_learning.py's logistic-regression probe on exactly the vectors its head read.

    python benchmarks/bench_depth.py                  # ~25 min on a 2-core CPU
    python benchmarks/bench_depth.py --sides auto --name depth_auto    # the auto runs alone
    python benchmarks/bench_depth.py --quick --out-dir /tmp/bench-depth    # a dry run in ~3 min

Writes `<out-dir>/<name>_<host>.json` and (both sides) `<out-dir>/<name>_<host>.png`, and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
import bench_learning as learning  # noqa: E402  (its datasets and its run record)

SIDES = {"all": {"depth": "all"}, "auto": {"depth": "auto"}}  # --depth all: the last layer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_flags(parser, "depth")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"Which of {', '.join(SIDES)} to run.")
    parser.add_argument("--name", default="depth", help="The results are <out-dir>/<name>_<host>.{json,png}.")
    return parser.parse_args(argv)


def add_data_flags(parser: argparse.ArgumentParser, name: str) -> None:
    """The flags `datasets` reads, and where results and scratch files go (/tmp/headtune-*-<name>)."""
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="A tiny dry run: small samples and short max lengths.")
    parser.add_argument("--model", default=None, help="Backbone folder (default: the MiniLM package).")
    parser.add_argument("--imdb", type=Path, default=common.IMDB_DIR)
    parser.add_argument("--banking77", type=Path, default=learning.BANKING_DIR)
    parser.add_argument("--unseen-dir", type=Path, default=Path(f"/tmp/headtune-unseen-{name}"))
    parser.add_argument("--work-dir", type=Path, default=Path(f"/tmp/headtune-bench-{name}"))


def datasets(args: argparse.Namespace) -> dict[str, dict]:
    """name -> the data settings of headtune.train."""
    found = dict(learning.real_datasets(args))
    for spec in learning.build_unseen(args):
        found[spec["name"]] = {"dataset": spec["path"], "text_column": spec["text_column"],
                               "label_column": spec["label_column"], "max_length": spec["max_length"]}
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.quiet_libraries()
    model = args.model or common.minilm_path()
    results = {}
    for name, data in datasets(args).items():
        results[name] = {}
        for side in args.sides.split(","):
            extra = SIDES[side]
            work = args.work_dir / common.slug(f"{name}-{side}")
            if work.exists():
                shutil.rmtree(work)  # cold: an empty cache of its own
            run = learning.run_headtune({"model": model, **data, **extra, "cache_dir": str(work / "cache"),
                                         "output_dir": str(work / "out"), "overwrite": True})
            metrics = json.loads((work / "out" / "metrics.json").read_text())
            run["depth"] = metrics.get("depth")
            run["layers_read"] = metrics["config"]["model"]["depth"]
            # a logistic-regression probe on exactly the vectors the run's head read (bench_learning.py's)
            run["probe"] = learning.probes(*learning.read_features(work / "out", work / "cache"))
            results[name][side] = run
            common.log(f"{name} / {side}: test accuracy {run['test_accuracy']:.4f}, depth {run['layers_read']}, "
                       f"{run['timings_s']['total_before_save']:.1f} s")
    host = common.host_kind(torch.device("cpu"))
    path = args.out_dir / f"{args.name}_{host}.json"
    common.write_json(path, {**common.run_record("depth", torch.device("cpu")), "model": model,
                             "results": results})
    if set(SIDES) <= set(args.sides.split(",")):
        chart(results, args.out_dir / f"{args.name}_{host}.png")
        print(table(results))
    common.log(f"wrote {path}")


def table(results: dict) -> str:
    lines = ["| data | `--depth all`: test accuracy | `--depth auto`: layer, test accuracy | cold run, all / auto |",
             "|---|---:|---:|---:|"]
    for name, sides in results.items():
        every, auto = sides["all"], sides["auto"]
        lines.append(f"| {name} | {every['test_accuracy']:.4f} | {auto['layers_read']} of "
                     f"{auto['depth']['layers']}: {auto['test_accuracy']:.4f} | "
                     f"{every['timings_s']['total_before_save']:.1f} s / {auto['timings_s']['total_before_save']:.1f} s |")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    width = 0.38
    for i, side in enumerate(SIDES):
        values = [results[n][side]["test_accuracy"] for n in names]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(names))], values, width, label=f"--depth {side}")
        if side != "all":
            for bar, n in zip(bars, names):
                ax.annotate(f"layer {results[n][side]['layers_read']}", (bar.get_x() + bar.get_width() / 2,
                                                                          bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(min(r[s]["test_accuracy"] for r in results.values() for s in SIDES) - 0.05, 1.0)
    ax.legend(fontsize=8)
    ax.set_title("MiniLM head-only, every other setting at its default")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
