"""A warm run of the working tree against a warm run of an earlier commit, alternating, side by side.

A warm run (features and model body cached) costs seconds, and on a shared machine its wall time moves by a
second from one run to the next; only runs interleaved in one script compare. This script checks the `--baseline`
commit out into a temporary git worktree, fills each side's cache with one cold run (a cache key may differ
between versions), then times `python -m headtune train` of both sides in turn, `--rounds` times, alternating
which goes first, each a fresh process (interpreter start and imports included, as a user's run). The IMDb
small run with MiniLM from the package, `--max-length 256`, every other setting at its default.

    python benchmarks/bench_warm.py --baseline f1cc6de            # ~8 min on a 2-core CPU (two cold runs)

Writes `<out-dir>/warm_<host>.json` (every wall time, each run's `timings_s`, the load average) and prints the
means.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="The commit to compare the working tree with.")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--train-size", type=int, default=None, help="Default: the small run (4,000 / 2,000).")
    return parser.parse_args(argv)


def command(work: Path, side: str, args: argparse.Namespace) -> list[str]:
    sizes = ["--small-run"] if args.train_size is None else ["--train-size", str(args.train_size),
                                                             "--test-size", str(args.train_size // 2)]
    return [sys.executable, "-m", "headtune", "train", "--model", common.minilm_path(), "--dataset",
            str(common.IMDB_DIR), *sizes, "--max-length", "256", "--cache-dir", str(work / f"cache-{side}"),
            "--output-dir", str(work / f"out-{side}"), "--overwrite", "--quiet"]


def timed_run(work: Path, side: str, src: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    load = common.load_average()
    started = time.perf_counter()
    done = subprocess.run(command(work, side, args), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed: {done.stderr.strip().splitlines()[-1:]}")
    metrics = json.loads((work / f"out-{side}" / "metrics.json").read_text())
    return {"wall_s": round(wall, 3), "timings_s": metrics["timings_s"], "load_average_at_start": load,
            "model_loaded": metrics["environment"]["model_loaded"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    repo = common.REPO
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.baseline], capture_output=True,
                            text=True, check=True).stdout.strip()
    current = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    baseline_tree = work / "baseline"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(baseline_tree), commit],
                   check=True, capture_output=True)
    sources = {"baseline": baseline_tree / "src", "current": repo / "src"}
    try:
        for side, src in sources.items():
            common.log(f"{side}: cold run to fill its cache")
            timed_run(work, side, src, args)
        runs = {side: [] for side in sources}
        for i in range(args.rounds):
            order = list(sources) if i % 2 == 0 else list(reversed(sources))
            for side in order:
                run = timed_run(work, side, sources[side], args)
                if run["model_loaded"]:
                    raise RuntimeError(f"{side}: the warm run loaded the model; its cache did not hold")
                runs[side].append(run)
                common.log(f"round {i + 1} {side}: {run['wall_s']:.2f} s (load {run['load_average_at_start']})")
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(baseline_tree)],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    summary = {side: {"mean_wall_s": round(sum(r["wall_s"] for r in rs) / len(rs), 3),
                      "min_wall_s": min(r["wall_s"] for r in rs), "max_wall_s": max(r["wall_s"] for r in rs)}
               for side, rs in runs.items()}
    summary["current_over_baseline"] = round(summary["current"]["mean_wall_s"] / summary["baseline"]["mean_wall_s"], 3)
    host = common.host_kind(torch.device("cpu"))
    path = args.out_dir / f"warm_{host}.json"
    common.write_json(path, {**common.run_record("warm", torch.device("cpu")),
                             "baseline": commit, "current": current + " (working tree)", "rounds": args.rounds,
                             "summary": summary, "runs": runs})
    for side in sources:
        s = summary[side]
        print(f"{side:8s} mean {s['mean_wall_s']:.2f} s (min {s['min_wall_s']:.2f}, max {s['max_wall_s']:.2f})")
    print(f"current / baseline: {summary['current_over_baseline']:.3f}")
    common.log(f"wrote {path}")


if __name__ == "__main__":
    main()
