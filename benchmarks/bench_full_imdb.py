"""Full-IMDb benchmark, end to end on a GPU: headtune against the notebook workflow and a sentence-transformers peer.

The whole IMDb train / test splits (25,000 / 25,000), max length 512, 3 epochs, a randomly initialised
DistilBERT-base folder (benchmarks/make_random_model.py; speed does not depend on the weights, so the
accuracies mean nothing). Every system is a fresh process, timed from start to result:

  seed-style      transformers Trainer, frozen backbone, evaluation of the random head, after every epoch and
                  after training; the Trainer's default precision (fp32). --seed-style-budget-s stops it early
                  and extrapolates its full time from what ran (see _common.run_seed_style).
  headtune-cold   `python -m headtune train` with its defaults, fresh feature cache
  headtune-warm   the same command again, features and model body from the cache
  st+sklearn      sentence-transformers encode (bf16) of both splits + scikit-learn LogisticRegression

Targets (the issue's): headtune cold >= 10x faster than seed-style, and >= 2x faster than st+sklearn.
Writes benchmarks/results/full_imdb_<host>.{json,png}. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import _common as common
from bench_small_run import Result, bar_chart, format_stages, ratio, stages
from headtune.config import DataConfig
from headtune.data import load_splits
from headtune.features import resolve_device

# headtune first and seed-style last: with a time limit on the whole run, what is cut is the budgeted,
# extrapolated system (the JSON is rewritten after every system, so what ran is kept)
SYSTEMS = ("headtune-cold", "headtune-warm", "st+sklearn", "seed-style")
IN_CHILD = ("seed-style", "st+sklearn")
SEED_STYLE_LR = 3e-2
TARGETS = (("seed-style", 10.0), ("st+sklearn", 2.0))  # headtune cold at least this many times faster


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="Model folder (default: a random DistilBERT-base built from DistilBertConfig() and "
                             "--tokenizer in a temporary folder).")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer for the built model (default: the MiniLM "
                                                          "package's, distilbert-base-uncased's vocabulary).")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"Comma-separated subset of: {', '.join(SYSTEMS)}.")
    parser.add_argument("--dataset", default=str(common.IMDB_DIR))
    parser.add_argument("--train-size", type=int, default=None,
                        help="Stratified sample of the train split (default: all 25,000); for dry runs.")
    parser.add_argument("--test-size", type=int, default=None, help="Likewise for test (default: all 25,000).")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="seed-style's batch size (headtune's default).")
    parser.add_argument("--seed", type=int, default=42, help="Sample seed (with sizes), seed-style's seed.")
    parser.add_argument("--seed-style-lr", type=float, default=SEED_STYLE_LR)
    parser.add_argument("--seed-style-budget-s", type=float, default=0.0,
                        help="Stop seed-style's training after this many seconds and extrapolate its full time "
                             "(0: run it to the end).")
    parser.add_argument("--seed-style-eval-sample", type=int, default=2048,
                        help="With a budget: test texts its evaluation runs on (twice: first and steady).")
    parser.add_argument("--st-batch-size", type=int, default=128)
    parser.add_argument("--sklearn-max-iter", type=int, default=2000)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N, for every system.")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--child", choices=IN_CHILD, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    asked = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not asked or set(asked) - set(SYSTEMS):
        parser.error(f"--systems: choose from {', '.join(SYSTEMS)}")
    if "headtune-warm" in asked and "headtune-cold" not in asked:
        parser.error("--systems: headtune-warm reads the cache headtune-cold fills; select both")
    args.systems = [s for s in SYSTEMS if s in asked]
    return args


def load_data(args: argparse.Namespace):
    """The splits every system but headtune reads (headtune reads the same files itself): whole, or sampled."""
    return load_splits(DataConfig(dataset=args.dataset, train_size=args.train_size, test_size=args.test_size,
                                  sample_seed=args.seed, val_fraction=0.0))


def run_child(args: argparse.Namespace, device: torch.device) -> int:
    splits = load_data(args)
    if args.child == "seed-style":
        work = Path(tempfile.mkdtemp(prefix="bench-full-seed-"))
        out = common.run_seed_style(
            args.model, splits.train.texts, splits.train.labels, splits.test.texts, splits.test.labels,
            max_length=args.max_length, epochs=args.epochs, batch_size=args.batch_size, lr=args.seed_style_lr,
            lr_schedule="linear", seed=args.seed, device=str(device), work=work,
            num_labels=len(splits.label_names), train_budget_s=args.seed_style_budget_s,
            eval_sample=args.seed_style_eval_sample)
    else:
        out = common.sentence_transformers_and_logistic_regression(
            args.model, {"train": (splits.train.texts, splits.train.labels),
                         "test": (splits.test.texts, splits.test.labels)},
            max_length=args.max_length, batch_size=args.st_batch_size, max_iter=args.sklearn_max_iter, device=device)
    args.child_result.write_text(json.dumps(out, default=str))
    return 0


def in_child(system: str, argv: list[str], model: str, work: Path) -> Result:
    """A system in a fresh interpreter (this script with --child), the whole process timed."""
    out = common.run_as_child(__file__, system, [*argv, "--model", model], work)
    wall = out["process_wall_s"]
    if system == "seed-style":
        # extrapolated: the process as measured, plus what the skipped training steps and evaluations would take
        total = wall + out.get("extra_s", 0.0) if out["extrapolated"] else wall
        return Result(system, total, out.pop("accuracy"), out.pop("f1"), out.pop("real_tokens"),
                      out.pop("padded_tokens"), out)
    return Result(system, wall, out.get("accuracy"), out.get("f1"), out.get("real_tokens"), out.get("padded_tokens"),
                  out)


def headtune(args: argparse.Namespace, model: str, device: torch.device, work: Path, warm: bool) -> Result:
    """`python -m headtune train` with its defaults (the full splits unless sizes are given), fresh cache."""
    system = "headtune-warm" if warm else "headtune-cold"
    output = work / "headtune-output"
    command = [sys.executable, "-m", "headtune", "train", "--model", model, "--dataset", args.dataset,
               "--max-length", str(args.max_length), "--epochs", str(args.epochs), "--device", str(device),
               "--cache-dir", str(work / "headtune-cache"), "--output-dir", str(output)]
    if args.train_size or args.test_size:
        command += ["--sample-seed", str(args.seed)]
        command += ["--train-size", str(args.train_size)] if args.train_size else []
        command += ["--test-size", str(args.test_size)] if args.test_size else []
    command += ["--overwrite"] if warm else []
    log_path = work / f"{system}.log"
    with open(log_path, "w") as log_file:
        start = time.perf_counter()
        done = subprocess.run(command, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
    text = log_path.read_text()
    if done.returncode != 0:
        raise SystemExit(f"bench_full_imdb: {system} failed (exit {done.returncode}):\n"
                         + "\n".join(text.strip().splitlines()[-15:]))
    metrics = json.loads((output / "metrics.json").read_text())
    passes = metrics["backbone_pass"]
    return Result(system, wall, metrics["after"]["accuracy"], metrics["after"]["f1"],
                  sum(p["real_tokens"] for p in passes.values()), sum(p["padded_tokens"] for p in passes.values()),
                  {"command": shlex.join(command), "stages_s": stages(wall, metrics, text), "backbone_pass": passes,
                   "timings_s": metrics["timings_s"], "data": metrics["data"], "lr": metrics["lr"]["chosen"],
                   "pooling": metrics["pooling"], "autocast": metrics["environment"]["autocast"],
                   "model_loaded": metrics["environment"]["model_loaded"],
                   "log_tail": text.strip().splitlines()[-12:]})


def check_targets(results: dict[str, Result]) -> list[dict]:
    cold = results.get("headtune-cold")
    out = []
    for system, times in TARGETS:
        value = ratio(results[system].wall_s, cold.wall_s) if cold and system in results else None
        out.append({"target": f"headtune cold >= {times:g}x faster than {system}", "value": value, "limit": times,
                    "passed": None if value is None else value >= times,
                    "extrapolated": bool(system in results and results[system].details.get("extrapolated"))})
    return out


def format_table(results: dict[str, Result]) -> str:
    cold = results.get("headtune-cold")
    header = f"{'system':<15}{'wall s':>10}{'x cold':>8}  notes"
    rows = [header, "-" * 72]
    for r in results.values():
        d = r.details
        if r.system == "seed-style":
            note = (f"EXTRAPOLATED from {d['steps_done']} of {d['steps_total']} steps and a "
                    f"{d['eval_sample_texts']}-text evaluation (process {d['process_wall_s']:.1f} s)"
                    if d["extrapolated"] else f"{d['steps_total']} steps, {len(d['evaluations']) + 1} evaluations")
            note += f"; {d['precision']['parameter_dtype']}, bf16={d['precision']['bf16']}"
        elif r.system == "st+sklearn":
            note = (f"encode {d['encode_s']:.1f} s ({d['dtype']}), fit {d['fit_s']:.1f} s "
                    f"({d['lbfgs_iterations']} iterations), load {d['load_s']:.1f} s")
        else:
            st = d["stages_s"]
            note = (f"features {st['features']:.1f} s, train {st['train']:.1f} s, outside {st['outside']:.1f} s, "
                    f"autocast {d['autocast']}")
        x = ratio(r.wall_s, cold and cold.wall_s)
        rows.append(f"{r.system:<15}{r.wall_s:>10.1f}{'-' if x is None else format(x, '.2f'):>8}  {note}")
    return "\n".join(rows)


def format_targets(targets: list[dict]) -> str:
    rows = ["targets"]
    for t in targets:
        status = {True: "PASS", False: "FAIL", None: "skip"}[t["passed"]]
        value = "not run" if t["value"] is None else f"{t['value']:.3g}x"
        rows.append(f"  {status}  {t['target']}: {value}{' (extrapolated)' if t['extrapolated'] else ''}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.quiet_libraries()
    device = resolve_device(args.device)
    if args.child:
        return run_child(args, device)
    child_argv = list(sys.argv[1:] if argv is None else argv)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    host = common.host_kind(device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out_dir / f"full_imdb_{host}.json", args.out_dir / f"full_imdb_{host}.png"

    def save(results: dict[str, Result], complete: bool) -> None:
        common.write_json(json_path, {
            "benchmark": "full_imdb", "complete": complete, "started_utc": started,
            "command": shlex.join([sys.executable, *sys.argv]), "host_kind": host,
            "environment": common.environment(device),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "systems": list(results), "results": {k: vars(v) for k, v in results.items()},
            "ratio_to_headtune_cold": {k: ratio(v.wall_s, results["headtune-cold"].wall_s)
                                       for k, v in results.items()} if "headtune-cold" in results else {},
            "headtune_stages_s": {k: v.details["stages_s"] for k, v in results.items() if k.startswith("headtune")},
            "targets": check_targets(results), "chart": png_path.name})

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-full-imdb-") as tmp:
        work = Path(tmp)
        model = args.model or str(common.save_random_distilbert(
            work / "distilbert-random", args.tokenizer or common.minilm_path()))
        for system in args.systems:
            common.log(f"{system}: running")
            if system in IN_CHILD:
                results[system] = in_child(system, child_argv, model, work)
            else:
                results[system] = headtune(args, model, device, work, warm=system == "headtune-warm")
            common.log(f"{system}: {results[system].wall_s:.1f} s")
            save(results, complete=False)  # what ran so far survives a time limit on the whole run
    print(format_table(results))
    print()
    if any(name.startswith("headtune") for name in results):
        print(format_stages(results))
        print()
    print(format_targets(check_targets(results)))
    sizes = f"{args.train_size or 25_000:,}/{args.test_size or 25_000:,}"
    extrapolated = " (seed-style extrapolated)" if results.get("seed-style") and \
        results["seed-style"].details.get("extrapolated") else ""
    bar_chart(results, f"random DistilBERT-base on IMDb {sizes}, max length {args.max_length}, {args.epochs} epochs, "
                       f"{host}{extrapolated}", png_path)
    save(results, complete=True)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
