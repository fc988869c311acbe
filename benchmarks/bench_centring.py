"""Centred features (`--centre`, the default) against the raw ones (`--no-centre`), over head seeds, against the probe.

For the IMDb small run, BANKING77 and bench_learning.py's five datasets headtune has never seen (bench_depth.py's
list), headtune trains with every other setting at its default, once per head seed (--seeds: the head's
initialisation, shuffling and dropout) and side. All runs of one dataset share one feature cache: the first run
fills it, the others read it, so only the heads differ (the layer `--depth auto` chooses does not depend on the
head seed: each run's is recorded). Beside them: bench_learning.py's logistic-regression probe on the same vectors,
and how the training vectors sit (the length of their mean against a row's distance from it), which is what
centring acts on. Run times are not compared here (the runs after the first are warm).

    python benchmarks/bench_centring.py                # ~20 min on a 2-core CPU (7 cold passes, then warm runs)
    python benchmarks/bench_centring.py --quick --out-dir /tmp/bench-centring    # a dry run

Writes `<out-dir>/centring_<host>.json` and `.png`, and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
import bench_depth  # noqa: E402  (its datasets)
import bench_learning as learning  # noqa: E402  (its run record, feature reader and probe)

SIDES = {"centred": {"centre": True}, "raw": {"centre": False}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_depth.add_data_flags(parser, "centring")
    parser.add_argument("--keep-caches", action="store_true",
                        help="Keep the feature caches already in --work-dir (default: start each dataset empty).")
    parser.add_argument("--seeds", default="42,0,1", type=lambda t: [int(s) for s in t.split(",")],
                        help="Head seeds (42 is the default --seed).")
    return parser.parse_args(argv)


def geometry(train: np.ndarray) -> dict:
    """How far the training vectors share one direction: the length of their mean against a row's distance from it."""
    x = torch.as_tensor(train, dtype=torch.float64)
    mean = x.mean(dim=0)
    return {"mean_norm": float(mean.norm()), "median_row_norm": float(x.norm(dim=1).median()),
            "median_distance_from_mean": float((x - mean).norm(dim=1).median()),
            "median_cosine_to_mean": float(torch.nn.functional.cosine_similarity(x, mean[None]).median())}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.quiet_libraries()
    model = args.model or common.minilm_path()
    results = {}
    for name, data in bench_depth.datasets(args).items():
        work = args.work_dir / common.slug(name)
        if work.exists() and not args.keep_caches:
            shutil.rmtree(work)
        runs = {side: [] for side in SIDES}
        for seed in args.seeds:
            for side, extra in SIDES.items():
                out = work / f"out-{side}-{seed}"
                run = learning.run_headtune({"model": model, **data, **extra, "seed": seed,
                                             "cache_dir": str(work / "cache"), "output_dir": str(out),
                                             "overwrite": True})
                run["seed"] = seed
                run["layers_read"] = json.loads((out / "metrics.json").read_text())["config"]["model"]["depth"]
                runs[side].append(run)
                common.log(f"{name} / {side} / seed {seed}: test accuracy {run['test_accuracy']:.4f} "
                            f"(lr {run['lr']:g}, epoch {run['kept_epoch']}, layer {run['layers_read']})")
        features, labels, names = learning.read_features(work / f"out-centred-{args.seeds[0]}", work / "cache")
        probe = learning.probes(features, labels, len(names))["full"]["test_accuracy"]
        results[name] = {"probe": probe, "geometry": geometry(features["train"]), "runs": runs,
                         "summary": {side: summary(rs, probe) for side, rs in runs.items()}}
    host = common.host_kind(torch.device("cpu"))
    path = args.out_dir / f"centring_{host}.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    common.write_json(path, {**common.run_record("centring", torch.device("cpu")), "model": model,
                             "seeds": args.seeds, "results": results})
    chart(results, args.seeds, path.with_suffix(".png"))
    print(table(results, args.seeds))
    common.log(f"wrote {path} and {path.with_suffix('.png')}")


def summary(runs: list[dict], probe: float) -> dict:
    """Test accuracy per seed, and its difference from the probe in points: mean, worst, and the default seed's."""
    accuracy = [r["test_accuracy"] for r in runs]
    points = [100 * (a - probe) for a in accuracy]
    return {"test_accuracy": accuracy, "mean_accuracy": float(np.mean(accuracy)),
            "points_from_probe": points, "mean_points": float(np.mean(points)), "worst_points": min(points),
            "default_seed_points": points[0], "layers_read": sorted({r["layers_read"] for r in runs}, key=str)}


def table(results: dict, seeds: list[int]) -> str:
    lines = [f"| data | probe | raw: seed {seeds[0]} | raw: mean, worst (seeds {', '.join(map(str, seeds))}) | "
             f"**centred: seed {seeds[0]}** | centred: mean, worst | mean's length / row's distance from it |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        raw, centred, g = r["summary"]["raw"], r["summary"]["centred"], r["geometry"]
        lines.append(f"| {name} | {r['probe']:.4f} | {raw['test_accuracy'][0]:.4f} ({raw['default_seed_points']:+.2f}) | "
                     f"{raw['mean_points']:+.2f}, {raw['worst_points']:+.2f} | "
                     f"**{centred['test_accuracy'][0]:.4f} ({centred['default_seed_points']:+.2f})** | "
                     f"{centred['mean_points']:+.2f}, {centred['worst_points']:+.2f} | "
                     f"{g['mean_norm']:.2f} / {g['median_distance_from_mean']:.2f} |")
    return "\n".join(lines)


def chart(results: dict, seeds: list[int], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    width = 0.38
    for i, side in enumerate(("raw", "centred")):
        s = [results[n]["summary"][side] for n in names]
        means = np.array([x["mean_points"] for x in s])
        low = means - np.array([min(x["points_from_probe"]) for x in s])
        high = np.array([max(x["points_from_probe"]) for x in s]) - means
        ax.bar([x + (i - 0.5) * width for x in range(len(names))], means, width, yerr=[low, high], capsize=3,
               label=f"--{'no-' if side == 'raw' else ''}centre", color="tab:gray" if side == "raw" else "tab:blue")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(-1, color="tab:red", linestyle=":", linewidth=1, label="1 point below the probe")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy - probe (points)")
    ax.set_title(f"MiniLM head-only, defaults otherwise: mean and min-max over head seeds {seeds}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
