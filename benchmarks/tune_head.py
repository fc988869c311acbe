"""How the head's learning rate, batch size and schedule change test accuracy, on one set of cached features.

The features come from headtune's own path (`preparation.prepare_cached`: the cache, or one backbone pass
that fills it), with the model's pooling (--pooling auto: MiniLM's mean) and `--folds 1`: 10 % of the
training sample held out as the validation split (headtune's default before it cross-validated). Then, for every combination of --lrs x --batch-sizes x
--schedules and every head seed in --seeds, a fresh head is trained for --epochs exactly as `headtune train`
trains it (same seeded init, shuffling and dropout, the best validation epoch kept), and once more per
batch size and schedule with --lr auto (the 7 stacked rates, the best on validation kept: the CLI's
default with --folds 1; seed 42, batch 16, linear reproduces that run's test accuracy). A converged scikit-learn
LogisticRegression on the whole training sample's features is the reference line. Writes
benchmarks/results/head_grid_<host-kind>.json/.png.

    python benchmarks/tune_head.py                     # MiniLM, IMDb 4,000 / 2,000, max length 256
    python benchmarks/tune_head.py --cache-dir CACHE   # reuse the features of a headtune run (e.g. the benchmark's)
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from headtune import pooling  # noqa: E402
from headtune.architectures import HeadPlan, family_of  # noqa: E402
from headtune.checkpoint import body_cache, load_body  # noqa: E402
from headtune.config import FeatureConfig, RunConfig, TrainConfig  # noqa: E402
from headtune.data import load_splits  # noqa: E402
from headtune.modeling import ConfigView, ModelSource  # noqa: E402
from headtune.preparation import prepare_cached  # noqa: E402
from headtune.training import LR_GRID, Labelled, Task, train_head  # noqa: E402

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
    parser.add_argument("--no-auto", action="store_true", help="Leave out the --lr auto rows.")
    parser.add_argument("--cache-dir", default=FeatureConfig().cache_dir, help="headtune's feature cache.")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def features_as_headtune_reads_them(args: argparse.Namespace):
    """(splits, prepared inputs, config, family, reading): what `headtune train` would train its head on."""
    cfg = RunConfig.from_flat(model=args.model, dataset=args.dataset, train_size=args.train_size,
                              test_size=args.test_size, sample_seed=SAMPLE_SEED, max_length=args.max_length,
                              epochs=args.epochs, folds=1, device="cpu", cache_dir=args.cache_dir)
    source = ModelSource(cfg.model)
    family = family_of(source.model_type)
    if family is None:
        raise SystemExit(f"tune_head: model type '{source.model_type}' has no headtune entry (cached features)")
    body = load_body(body_cache(cfg.features, source.identity()))
    config = body.config if body is not None else ConfigView.of(source.checked()[1])
    reading = family.reading(config, pooling.resolve(cfg.model.pooling, cfg.model.model))
    splits = load_splits(cfg.data)
    prep = prepare_cached(cfg, splits, source, body, config, family, reading, torch.device("cpu"), None, {})
    for name, stats in prep.passes.items():
        common.log(f"features {name}: {stats['texts']} texts, {stats['seconds']:.1f} s, "
                   f"{stats['cached_shards']} shards cached")
    return splits, prep, config, family, reading


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.quiet_libraries()
    args.model = args.model or common.minilm_path()
    splits, prep, config, family, reading = features_as_headtune_reads_them(args)
    n = len(splits.label_names)
    labelled = {name: Labelled(prep.inputs[name], getattr(splits, name).labels) for name in prep.inputs}
    task = Task(n, False, splits.positive if splits.positive is not None else 1)

    from sklearn.linear_model import LogisticRegression

    fit_rows = [prep.inputs["train"].features] + ([prep.inputs["validation"].features] if "validation" in prep.inputs
                                                  else [])
    fit_labels = np.concatenate([splits.train.labels] + ([splits.validation.labels] if splits.validation else []))
    reference = LogisticRegression(max_iter=2000, random_state=SAMPLE_SEED).fit(torch.cat(fit_rows).numpy(), fit_labels)
    reference_acc = float((reference.predict(prep.inputs["test"].features.numpy()) == splits.test.labels).mean())
    common.log(f"LogisticRegression on the whole training sample's features: test accuracy {reference_acc:.4f}")

    plan = HeadPlan(family, reading, False)
    grid = [(lr, b, s) for lr, b, s in itertools.product(args.lrs, args.batch_sizes, args.schedules)]
    if not args.no_auto:
        grid += [("auto", b, s) for b, s in itertools.product(args.batch_sizes, args.schedules)]
    runs = []
    for lr, batch_size, schedule in grid:
        per_seed = []
        for seed in args.seeds:
            head = plan.new_head(config, n, seed)  # a fresh seeded head, exactly as `headtune train --seed` builds it
            cfg = TrainConfig(epochs=args.epochs, lr=lr, batch_size=batch_size, lr_schedule=schedule, seed=seed)
            result = train_head(head, labelled["train"], labelled.get("validation"), labelled["test"], task, cfg,
                                list(LR_GRID) if lr == "auto" else [lr], prep.stackable)
            per_seed.append({"seed": seed, "accuracy_per_epoch": [r["test"]["accuracy"] for r in result.history],
                             "kept_epoch": result.kept_epoch, "chosen_lr": result.lrs[result.chosen],
                             "kept_accuracy": result.history[result.kept_epoch]["test"]["accuracy"],
                             "kept_f1": result.history[result.kept_epoch]["test"]["f1"]})
        kept = [r["kept_accuracy"] for r in per_seed]
        last = [r["accuracy_per_epoch"][-1] for r in per_seed]
        runs.append({"lr": lr, "batch_size": batch_size, "lr_schedule": schedule, "seeds": per_seed,
                     "kept_accuracy_mean": float(np.mean(kept)), "kept_accuracy_min": min(kept),
                     "kept_accuracy_max": max(kept), "last_epoch_accuracy_mean": float(np.mean(last))})
        common.log(f"lr {lr} batch {batch_size} {schedule:8s}: kept-epoch test accuracy mean {np.mean(kept):.4f} "
                   f"(min {min(kept):.4f}, max {max(kept):.4f}), last epoch {np.mean(last):.4f}, seeds {args.seeds}")

    host = common.host_kind(torch.device("cpu"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"head_grid_{host}.json"
    common.write_json(path, {
        **common.run_record("head_grid", torch.device("cpu")),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "samples": {"train": len(splits.train.texts), "validation": len(splits.validation.texts)
                    if splits.validation else 0, "test": len(splits.test.texts)},
        "model": args.model, "pooling": reading.name, "head_modules": prep.parameters["head_modules"],
        "feature_point": prep.parameters["feature_point"], "lr_grid_auto": list(LR_GRID),
        "logistic_regression_accuracy": reference_acc, "runs": runs})
    chart(runs, reference_acc, args, path.with_suffix(".png"))
    common.log(f"wrote {path} and {path.with_suffix('.png')}")


def chart(runs: list[dict], reference: float, args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"lr {r['lr']:g}\nbs {r['batch_size']}\n{r['lr_schedule']}" if r["lr"] != "auto"
              else f"lr auto\nbs {r['batch_size']}\n{r['lr_schedule']}" for r in runs]
    means = np.array([r["kept_accuracy_mean"] for r in runs])
    low = means - np.array([r["kept_accuracy_min"] for r in runs])
    high = np.array([r["kept_accuracy_max"] for r in runs]) - means
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(runs)), 4.2))
    colours = ["tab:green" if r["lr"] == "auto" else "tab:blue" if r["lr_schedule"] == "linear" else "tab:gray"
               for r in runs]
    ax.bar(range(len(runs)), means, yerr=[low, high], color=colours, capsize=3)
    ax.axhline(reference, color="tab:red", linestyle="--", label=f"LogisticRegression {reference:.3f}")
    ax.axhline(reference - 0.01, color="tab:red", linestyle=":", linewidth=1, label="1 point below")
    ax.set_xticks(range(len(runs)), labels, fontsize=7)
    ax.set_ylim(min(means.min() - 0.02, reference - 0.03), max(means.max(), reference) + 0.01)
    ax.set_ylabel(f"test accuracy, best validation epoch of {args.epochs}")
    ax.set_title(f"Head settings on cached features: mean, min-max over seeds {args.seeds} (green: --lr auto)",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
