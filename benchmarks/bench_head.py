"""The head stage of a wide head, the working tree against an earlier commit, alternating, side by side.

A warm run's cost beyond start-up is the head stage: the 5 folds x 7 rates of `--lr auto` trained as one stacked
module, then the saved head. With MiniLM's head (384 x 2) that is about a second; DistilBERT's own head adds a
768 x 768 `pre_classifier`, so 35 copies of it train together, and on a CPU that stage took minutes. This script
times `crossval.train_on_folds` with the defaults (`TrainConfig()`, `LR_GRID`, 5 folds) on the IMDb small run's
shape, 4,000 training and 2,000 test rows of 768 features and 2 labels, for DistilBERT's native head (built by the
registry from `DistilBertConfig()`), in a fresh process per timing, the two sides in turn, `--rounds` times,
alternating which goes first. The features are seeded Gaussian rows whose class moves their mean (the head's
arithmetic does not depend on the values; the backbone pass is not part of this stage), and both sides get the
same rows, the same head and the same folds. Two versions that sum the same products in another order may end a
few test rows apart (Adam's normalised steps carry float rounding along), so accuracies are recorded, not required
equal.

    python benchmarks/bench_head.py --baseline d7c1bf5          # ~15 min on a 2-core CPU

Writes `<out-dir>/head_<host>.json` (every time, the load average) and prints the means.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

ROWS = {"train": 4000, "test": 2000}
WIDTH = 768


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="The commit to compare the working tree with.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--child", action="store_true", help="Time one head stage with the headtune on sys.path.")
    return parser.parse_args(argv)


def features(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(WIDTH, generator=g)
    out = {}
    for split, n in ROWS.items():
        labels = torch.randint(0, 2, (n,), generator=g)
        out[split] = (torch.randn(n, WIDTH, generator=g) + 0.05 * (2 * labels[:, None] - 1) * direction,
                      labels.numpy())
    return out


def child() -> dict:
    """One timing of the head stage, with whichever headtune PYTHONPATH points at."""
    from transformers import DistilBertConfig

    from headtune.architectures import family_of, HeadPlan
    from headtune.config import TrainConfig
    from headtune.crossval import train_on_folds
    from headtune.sampling import assign_folds
    from headtune.training import LR_GRID, CachedInputs, Labelled, Task

    config = DistilBertConfig()
    family = family_of("distilbert")
    head = HeadPlan(family, family.reading(config, "native"), False).new_head(config, 2, 42)
    data = features()
    cpu = torch.device("cpu")
    train, test = (Labelled(CachedInputs(x, cpu), y) for x, y in (data["train"], data["test"]))
    folds = assign_folds(data["train"][1], 5, 42, False)
    started = time.perf_counter()
    result = train_on_folds(head, train, folds, test, Task(2), TrainConfig(), list(LR_GRID))
    return {"seconds": round(time.perf_counter() - started, 3), "test_accuracy": result.history[-1]["test"]["accuracy"],
            "lr": result.lrs[result.chosen], "kept_epoch": result.kept_epoch,
            "head_parameters": sum(p.numel() for p in head.parameters())}


def timed(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).resolve().parent}", "HF_HUB_OFFLINE": "1"}
    load = common.load_average()
    done = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_average_at_start": load}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child()))
        return
    if not args.baseline:
        raise SystemExit("--baseline COMMIT is required")
    root = Path(__file__).resolve().parents[1]
    runs = {"working tree": [], args.baseline: []}
    with tempfile.TemporaryDirectory(prefix="headtune-bench-head-") as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(worktree), args.baseline],
                       check=True, capture_output=True)
        try:
            sides = {"working tree": root / "src", args.baseline: worktree / "src"}
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
                for side in order:
                    run = timed(sides[side])
                    runs[side].append(run)
                    common.log(f"round {round_ + 1}, {side}: {run['seconds']:.1f} s (test accuracy "
                               f"{run['test_accuracy']:.4f}, load {run['load_average_at_start']})")
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(worktree)], check=False)
    summary = {side: {"mean_s": float(np.mean([r["seconds"] for r in rs])), "min_s": min(r["seconds"] for r in rs),
                      "max_s": max(r["seconds"] for r in rs)} for side, rs in runs.items()}
    ratio = summary["working tree"]["mean_s"] / summary[args.baseline]["mean_s"]
    path = args.out_dir / f"head_{common.host_kind(torch.device('cpu'))}.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    common.write_json(path, {**common.run_record("head", torch.device("cpu")), "baseline": args.baseline,
                             "rows": ROWS, "width": WIDTH, "runs": runs, "summary": summary,
                             "ratio_working_tree_to_baseline": ratio})
    for side, s in summary.items():
        print(f"{side:>14}: mean {s['mean_s']:.1f} s ({s['min_s']:.1f} to {s['max_s']:.1f})")
    print(f"ratio (working tree / {args.baseline}): {ratio:.2f}")
    common.log(f"wrote {path}")


if __name__ == "__main__":
    main()
