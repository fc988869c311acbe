"""How the head's learning rate, batch size and schedule change test accuracy, on one set of cached features.

The backbone runs once (or not at all, with a warm --cache-dir); then, for every combination of
--lrs x --batch-sizes x --schedules and every head seed in --seeds, a fresh head is trained for --epochs
exactly as `headtune train` trains it (same seeded init, shuffling and dropout: seed 42 reproduces the
CLI's numbers). A converged scikit-learn LogisticRegression on the same features is the reference line.
This is how headtune's defaults were chosen; it writes benchmarks/results/head_grid_<host-kind>.json/.png.

    python benchmarks/tune_head.py                     # MiniLM, IMDb 4,000 / 2,000, max length 256
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from headtune.config import DataConfig, FeatureConfig, ModelConfig, TrainConfig  # noqa: E402
from headtune.data import load_splits  # noqa: E402
from headtune.features import extract_features  # noqa: E402
from headtune.heads import new_head  # noqa: E402
from headtune.modeling import check_model, load_for_training  # noqa: E402
from headtune.training import CachedInputs, train_head  # noqa: E402

SAMPLE_SEED = 42  # the texts stay fixed (so the features do); only the head's seed varies


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Backbone folder (default: the MiniLM package).")
    parser.add_argument("--dataset", default=str(common.IMDB_DIR))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--lrs", type=floats, default=[1e-2, 2e-2, 3e-2, 5e-2])
    parser.add_argument("--batch-sizes", type=ints, default=[16, 32])
    parser.add_argument("--schedules", default="constant,linear", type=lambda t: t.split(","))
    parser.add_argument("--seeds", type=ints, default=[42, 0, 1], help="Head seeds (init, shuffling, dropout).")
    parser.add_argument("--cache-dir", default=FeatureConfig().cache_dir, help="headtune's feature cache.")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.quiet_libraries()
    model_cfg = ModelConfig(model=args.model or common.minilm_path(), max_length=args.max_length, device="cpu")
    tokenizer, _ = check_model(model_cfg)
    splits = load_splits(DataConfig(dataset=args.dataset, train_size=args.train_size, test_size=args.test_size,
                                    sample_seed=SAMPLE_SEED))
    loaded = load_for_training(model_cfg, splits.label_names, SAMPLE_SEED, tokenizer)
    features = {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        features[name], stats = extract_features(
            loaded.model, loaded.spec, tokenizer, split.texts, max_length=args.max_length,
            cfg=FeatureConfig(cache_dir=args.cache_dir), identity=loaded.identity, dtype=None, split=name)
        common.log(f"features {name}: {stats.texts} texts, {stats.seconds:.1f} s, {stats.cached_shards} shards cached")

    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(max_iter=2000, random_state=SAMPLE_SEED).fit(
        features["train"].numpy(), splits.train.labels)
    reference_acc = float((reference.predict(features["test"].numpy()) == splits.test.labels).mean())
    common.log(f"LogisticRegression on the same features: accuracy {reference_acc:.4f}")

    runs = []
    for lr, batch_size, schedule in itertools.product(args.lrs, args.batch_sizes, args.schedules):
        per_seed = []
        for seed in args.seeds:
            # a fresh seeded head, exactly as `headtune train --seed` builds it
            head = new_head(loaded.spec, loaded.model.config, len(splits.label_names), seed)
            cfg = TrainConfig(epochs=args.epochs, lr=lr, batch_size=batch_size, lr_schedule=schedule, seed=seed)
            history = train_head(head, CachedInputs(head, features["train"]), splits.train.labels,
                                 CachedInputs(head, features["test"]), splits.test.labels,
                                 len(splits.label_names), cfg)
            per_seed.append({"seed": seed, "accuracy_per_epoch": [r.accuracy for r in history.epochs],
                             "f1": history.after.f1})
        finals = [r["accuracy_per_epoch"][-1] for r in per_seed]
        runs.append({"lr": lr, "batch_size": batch_size, "lr_schedule": schedule, "seeds": per_seed,
                     "final_accuracy_mean": float(np.mean(finals)), "final_accuracy_min": min(finals),
                     "final_accuracy_max": max(finals)})
        common.log(f"lr {lr:g} batch {batch_size} {schedule:8s}: final accuracy mean {np.mean(finals):.4f} "
                   f"(min {min(finals):.4f}, max {max(finals):.4f}) over seeds {args.seeds}")

    host = common.host_kind(torch.device("cpu"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"head_grid_{host}.json"
    common.write_json(path, {
        "benchmark": "head_grid", "command": " ".join(["python", *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": common.environment(torch.device("cpu")),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": model_cfg.model, "head_modules": list(loaded.spec.modules), "feature_point": loaded.spec.point,
        "logistic_regression_accuracy": reference_acc, "runs": runs})
    chart(runs, reference_acc, args, path.with_suffix(".png"))
    common.log(f"wrote {path} and {path.with_suffix('.png')}")


def chart(runs: list[dict], reference: float, args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"lr {r['lr']:g}\nbs {r['batch_size']}\n{r['lr_schedule']}" for r in runs]
    means = np.array([r["final_accuracy_mean"] for r in runs])
    low = means - np.array([r["final_accuracy_min"] for r in runs])
    high = np.array([r["final_accuracy_max"] for r in runs]) - means
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(runs)), 4.2))
    colours = ["tab:blue" if r["lr_schedule"] == "linear" else "tab:gray" for r in runs]
    ax.bar(range(len(runs)), means, yerr=[low, high], color=colours, capsize=3)
    ax.axhline(reference, color="tab:red", linestyle="--", label=f"LogisticRegression {reference:.3f}")
    ax.axhline(reference - 0.01, color="tab:red", linestyle=":", linewidth=1, label="1 point below")
    ax.set_xticks(range(len(runs)), labels, fontsize=7)
    ax.set_ylim(min(means.min() - 0.02, reference - 0.03), max(means.max(), reference) + 0.01)
    ax.set_ylabel(f"test accuracy after {args.epochs} epochs")
    ax.set_title(f"Head settings on cached features: mean, min-max over seeds {args.seeds}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
