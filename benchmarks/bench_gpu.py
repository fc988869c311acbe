"""GPU benchmark of headtune's backbone pass: its first pass, the old way, a steady repeat, and a peer.

A randomly initialised DistilBERT-base (`DistilBertConfig()`; speed does not depend on the weights) with the
uncased WordPiece tokenizer reads the full IMDb train + test splits (50,000 texts) at max length 512. In one
fresh process, in this order, each its own timed section:

  (a) headtune's pass: `headtune.features.extract_features` with headtune's CUDA defaults and no cache, the
      first pass in the process: character-ordered shards tokenized on a thread while the previous shard
      runs. Reported: wall, and its tokenizing seconds (PassStats).
  (b) the old way, in a separate fresh subprocess (so it pays its own first-shape costs): every text
      tokenized first, then one pass (extract_features with its
      `tokenize` handing back the pre-tokenized ids: monkeypatched here, not in src).
  (c) a steady repeat of (a)'s batches in the same process (every shape already set up): the speed a pass
      run many times would reach.
  (d) a peer a GPU user would run, in a separate fresh subprocess: sentence-transformers
      `SentenceTransformer(folder)` in bf16 (mean pooling; its own length sorting), `encode` of the 50,000
      texts, then scikit-learn LogisticRegression on the train embeddings, predicting test.

Writes benchmarks/results/gpu_<gpu-name>.json and .png. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import _common as common
from headtune.config import DataConfig, FeatureConfig, ModelConfig
from headtune.data import load_splits
from headtune.features import autocast_dtype, extract_features, tokenize

CUDA = FeatureConfig().for_device("cuda")  # headtune's batching defaults on a GPU

# Dense (no sparsity) tensor-core peak in TFLOP/s at the precision autocast picks there: bf16, or fp16 on
# GPUs without bf16 (V100, T4). From NVIDIA's data sheets; first match wins, so specific names go first.
PEAK_TFLOPS = (
    ("GH200", 989), ("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989),
    ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("A10", 125),
    ("V100", 125), ("T4", 65),
)
SECTIONS = ("old-way", "steady", "sentence-transformers")  # (a) always runs; these can be left out with --skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=None,
                        help="A random DistilBERT folder (benchmarks/make_random_model.py); default: one is built "
                             "in a temporary folder from DistilBertConfig() and --tokenizer.")
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer folder for the built model (default: the MiniLM package's, which has "
                             "distilbert-base-uncased's vocabulary).")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None,
                        help=f"Token budget per batch (default: headtune's for the device; CUDA "
                             f"{CUDA.max_tokens_per_batch}).")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"Texts per shard (default: headtune's for the device; CUDA {CUDA.shard_size}).")
    parser.add_argument("--pad-to-multiple-of", type=int, default=None,
                        help=f"Batch widths rounded up to this (default: headtune's for the device; CUDA "
                             f"{CUDA.pad_to_multiple_of}).")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--limit", type=int, default=None,
                        help="Use only N texts, half from each split, evenly spread (quick checks).")
    parser.add_argument("--device", default="auto", help="auto or cuda[:N]; cpu only for a dry run of the script.")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="Autocast as headtune's --precision: auto = bf16 on Ampere+, fp16 before, fp32 on CPU.")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="The GPU's dense peak at that precision, if the built-in table does not know it.")
    parser.add_argument("--repeats", type=int, default=None,
                        help="Steady repeats of (a)'s batches; the median is reported (default: 3 on a GPU, "
                             "1 on CPU).")
    parser.add_argument("--st-batch-size", type=int, default=128,
                        help="sentence-transformers encode batch size (default 128: 128 x 512 tokens is "
                             "headtune's 65,536-token budget at the longest width).")
    parser.add_argument("--sklearn-max-iter", type=int, default=2000)
    parser.add_argument("--skip", default="", help=f"Comma-separated sections to leave out: {', '.join(SECTIONS)}.")
    parser.add_argument("--dataset", default=str(common.IMDB_DIR))
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights when the model is built.")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--child", choices=["old-way", "sentence-transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - set(SECTIONS):
        parser.error(f"--skip: unknown {', '.join(sorted(args.skip - set(SECTIONS)))}; choose from "
                     f"{', '.join(SECTIONS)}")
    return args


def device_or_exit(name: str) -> torch.device:
    """The device to measure; without CUDA there is nothing to measure, so say so in one line and exit 2."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU visible to PyTorch; this benchmark measures a GPU "
              "(--device cpu only dry-runs the script)", file=sys.stderr)
        raise SystemExit(2)
    return torch.device("cuda" if name == "auto" else name)


def known_peak(gpu_name: str) -> float | None:
    for pattern, peak in PEAK_TFLOPS:  # word boundaries: "A10" must not match "A100" or "A10G"
        if re.search(rf"\b{re.escape(pattern)}\b", gpu_name, re.IGNORECASE):
            return float(peak)
    return None


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None or device.type != "cuda":
        return override
    return known_peak(torch.cuda.get_device_name(device))


def load_data(dataset: str, limit: int | None) -> dict:
    """Both whole IMDb splits (no validation held out), or `limit` texts, half from each, evenly spread (the
    files are stored neg-then-pos, sorted by review id, so the first N would be one class)."""
    splits = load_splits(DataConfig(dataset=dataset, val_fraction=0.0))
    out = {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        index = np.arange(len(split.texts))
        if limit is not None and limit // 2 < len(index):
            index = np.linspace(0, len(index) - 1, max(1, limit // 2)).round().astype(int)
        out[name] = ([split.texts[i] for i in index], split.labels[index])
    return out


def feature_config(args: argparse.Namespace) -> FeatureConfig:
    return FeatureConfig(no_cache=True, max_tokens_per_batch=args.max_tokens_per_batch, shard_size=args.shard_size,
                         pad_to_multiple_of=args.pad_to_multiple_of)


def load_model(folder: str, max_length: int, device: torch.device):
    """Tokenizer and model as `headtune train` loads them (modeling.load_for_training), on the device."""
    from headtune.modeling import load_for_training, load_tokenizer

    cfg = ModelConfig(model=folder, max_length=max_length, device=str(device))
    tokenizer = load_tokenizer(folder, cfg)
    model = load_for_training(cfg, ["neg", "pos"], 42, tokenizer).model.to(device)
    return tokenizer, model


def headtune_pass(reader, device, plan, tokenizer, texts, args, dtype):
    """One extract_features call, timed between synchronizations; returns (seconds, PassStats)."""
    common.synchronize(device)
    start = time.perf_counter()
    _, stats = extract_features(reader, device, plan.point, tokenizer, texts, max_length=args.max_length,
                                cfg=feature_config(args), identity={}, dtype=dtype, split="imdb")
    common.synchronize(device)
    return time.perf_counter() - start, stats


# --------------------------------------------------------------------------- the child processes

def child_old_way(args: argparse.Namespace, device: torch.device, texts: list[str]) -> dict:
    """(b): tokenize every text first, then extract_features, handing it those tokens."""
    import headtune.features as features

    tokenizer, model = load_model(args.model_dir, args.max_length, device)
    plan = common.head_plan(model, args.model_dir)
    reader = common.reader_of(model, plan, trim=True)
    dtype = autocast_dtype(device, args.precision)
    start = time.perf_counter()
    everything = tokenize(tokenizer, texts, args.max_length)
    tokenize_s = time.perf_counter() - start
    position = {id(text): i for i, text in enumerate(texts)}  # extract_features passes the same str objects

    def pretokenized(_tokenizer, shard_texts, _max_length):
        index = [position[id(text)] for text in shard_texts]
        return features.Tokenized([everything.ids[i] for i in index], everything.truncated[index])

    features.tokenize = pretokenized
    pass_s, stats = headtune_pass(reader, device, plan, tokenizer, texts, args, dtype)
    return {"tokenize_s": tokenize_s, "pass_s": pass_s, "total_s": tokenize_s + pass_s,
            "padded_tokens": stats.padded_tokens, "pass_stats": vars(stats)}


def child_sentence_transformers(args: argparse.Namespace, device: torch.device, data: dict) -> dict:
    """(d): SentenceTransformer(folder) (mean pooling, bf16 on a GPU), encode both splits, LogisticRegression."""
    return common.sentence_transformers_and_logistic_regression(
        args.model_dir, data, max_length=args.max_length, batch_size=args.st_batch_size,
        max_iter=args.sklearn_max_iter, device=device)


def run_child(section: str, argv: list[str], folder: str, work: Path) -> dict:
    """Run a section in a fresh interpreter (this script with --child) and time the whole process too."""
    return common.run_as_child(__file__, section, [*argv, "--model-dir", folder], work)


# --------------------------------------------------------------------------- main

def speed(seconds: float, real: int, padded: int, work: dict, peak: float | None) -> dict:
    achieved = work["padded"] / seconds / 1e12
    return {"seconds": seconds, "real_tokens_per_s": real / seconds, "padded_tokens_per_s": padded / seconds,
            "tflops_achieved": achieved, "tflops_useful": work["real"] / seconds / 1e12,
            "share_of_peak": achieved / peak if peak else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = device_or_exit(args.device)
    on_gpu = device.type == "cuda"
    args.repeats = (3 if on_gpu else 1) if args.repeats is None else args.repeats
    common.quiet_libraries()
    data = load_data(args.dataset, args.limit)
    if args.child:
        texts = data["train"][0] + data["test"][0]
        out = child_old_way(args, device, texts) if args.child == "old-way" \
            else child_sentence_transformers(args, device, data)
        args.child_result.write_text(json.dumps(out, default=str))
        return 0

    child_argv = [a for a in (sys.argv[1:] if argv is None else argv)]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        if args.model_dir is None:
            args.model_dir = str(common.save_random_distilbert(work / "distilbert-random",
                                                               args.tokenizer or common.minilm_path(), args.seed))
        report = measure(args, device, data, child_argv, work, lambda partial: save(args, device, partial, False))
    print_report(report, device)
    path = save(args, device, report, complete=True)
    plot(json.loads(path.read_text()), path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


def measure(args: argparse.Namespace, device: torch.device, data: dict, child_argv: list[str], work: Path,
            checkpoint=lambda report: None) -> dict:
    """The four sections in order; `checkpoint(report)` after each, so what ran survives a time limit."""
    on_gpu = device.type == "cuda"
    texts = data["train"][0] + data["test"][0]
    tokenizer, model = load_model(args.model_dir, args.max_length, device)
    plan = common.head_plan(model, args.model_dir)
    reader = common.reader_of(model, plan, trim=True)  # headtune's own pass
    dtype = autocast_dtype(device, args.precision)
    cfg = feature_config(args).for_device(device.type)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    # (a) headtune's pass, the first in this process
    common.log(f"(a) headtune's pass over {len(texts):,} texts on {device}, autocast {dtype or 'off (fp32)'}")
    wall, stats = headtune_pass(reader, device, plan, tokenizer, texts, args, dtype)
    common.log(f"(a) {wall:.2f} s (of which tokenizing {stats.tokenize_seconds:.2f} s)")

    # the same batches, planned here (untimed): the FLOP count, the shape count, and (c)'s batches
    split_plan = common.plan_split(tokenizer, texts, args.max_length, cfg)
    flops = common.EncoderFlops.from_config(model.config)
    cut = common.trimmed(plan)
    work_done = {"real": flops.real(split_plan.lengths, cut), "padded": flops.padded(split_plan, cut)}
    real, padded = split_plan.real_tokens, split_plan.padded_tokens
    peak = peak_tflops(device, args.peak_tflops)
    report = {
        "texts": len(texts), "truncated": int(split_plan.truncated.sum()), "real_tokens": real,
        "padded_tokens": padded, "padding_ratio": padded / real, "batches": len(split_plan.batches),
        "batch_shapes": split_plan.shapes, "plan_matches_pass": padded == stats.padded_tokens,
        "pooling": plan.reading.name, "trimmed_last_layer": cut, "peak_tflops": peak,
        "batching": {"max_tokens_per_batch": cfg.max_tokens_per_batch, "shard_size": cfg.shard_size,
                     "pad_to_multiple_of": cfg.pad_to_multiple_of},
        "flops": {**flops.describe(), "tflop_real": work_done["real"] / 1e12, "tflop_padded": work_done["padded"] / 1e12},
    }
    compute = wall - stats.tokenize_seconds
    report["headtune_pass"] = {
        "wall_s": wall, "tokenize_s": stats.tokenize_seconds, "compute_s": compute, "pass_stats": vars(stats),
        "wall": speed(wall, real, padded, work_done, peak), "compute": speed(compute, real, padded, work_done, peak)}

    checkpoint(report)

    # (b) the old way, in a fresh process of its own
    if "old-way" not in args.skip:
        common.log("(b) the old way: tokenize everything first, then the pass (fresh process)")
        old = run_child("old-way", child_argv, args.model_dir, work)
        old["pass"] = speed(old["pass_s"], real, padded, work_done, peak)
        old["total"] = speed(old["total_s"], real, padded, work_done, peak)
        report["old_way"] = old
        common.log(f"(b) tokenize {old['tokenize_s']:.2f} s + pass {old['pass_s']:.2f} s = {old['total_s']:.2f} s")
        checkpoint(report)

    # (c) the same batches again: every shape is set up now
    if "steady" not in args.skip:
        runs = []
        for repeat in range(args.repeats):
            result = common.backbone_pass(reader, device, split_plan, tokenizer.pad_token_id or 0, dtype)
            runs.append(result.seconds)
            common.log(f"(c) steady repeat {repeat + 1}/{args.repeats}: {result.seconds:.2f} s")
        report["steady"] = {"runs_s": runs, **speed(statistics.median(runs), real, padded, work_done, peak)}
    report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else None
    checkpoint(report)

    # (d) the peer, in a fresh process of its own
    if "sentence-transformers" not in args.skip:
        common.log("(d) sentence-transformers encode (bf16 on a GPU) + LogisticRegression (fresh process)")
        report["sentence_transformers"] = run_child("sentence-transformers", child_argv, args.model_dir, work)
        st = report["sentence_transformers"]
        common.log(f"(d) encode {st['encode_s']:.2f} s, fit {st['fit_s']:.2f} s")
    return report


def save(args: argparse.Namespace, device: torch.device, report: dict, complete: bool) -> Path:
    host = common.host_kind(device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"gpu_{host}.json"
    dtype = autocast_dtype(device, args.precision)
    common.write_json(path, {
        "benchmark": "gpu_backbone_pass", "complete": complete,
        "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]), "host_kind": host,
        "environment": common.environment(device),
        "settings": {**{k: (str(v) if isinstance(v, (Path, set)) else v) for k, v in vars(args).items()},
                     "autocast": str(dtype) if dtype else "fp32"},
        "results": report})
    return path


def print_report(r: dict, device: torch.device) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({common.cpu_cores()} cores)"
    peak = r["peak_tflops"]

    def rate(s: dict) -> str:
        share = f", {100 * s['share_of_peak']:.1f}% of {peak:g}" if s["share_of_peak"] is not None else ""
        return f"{s['tflops_achieved']:.2f} TFLOP/s{share}"

    print(f"device                 {name}, pooling {r['pooling']}{' (last layer trimmed)' if r['trimmed_last_layer'] else ''}")
    print(f"texts                  {r['texts']:,} ({r['truncated']:,} truncated), {r['batches']:,} batches, "
          f"{r['batch_shapes']} shapes")
    print(f"tokens                 {r['real_tokens']:,} real, {r['padded_tokens']:,} padded ({r['padding_ratio']:.3f}x)"
          + ("" if r["plan_matches_pass"] else "  WARNING: the plan's padded tokens differ from the pass's"))
    a = r["headtune_pass"]
    print(f"(a) headtune's pass    {a['wall_s']:.2f} s wall ({rate(a['wall'])}) = tokenize {a['tokenize_s']:.2f} s "
          f"+ compute {a['compute_s']:.2f} s ({rate(a['compute'])})")
    if "old_way" in r:
        b = r["old_way"]
        print(f"(b) old way            {b['total_s']:.2f} s = tokenize {b['tokenize_s']:.2f} s + pass {b['pass_s']:.2f} s "
              f"({rate(b['pass'])} in the pass); {b['total_s'] / a['wall_s']:.2f}x (a)")
    if "steady" in r:
        c = r["steady"]
        print(f"(c) steady repeat      {c['seconds']:.2f} s (median of {len(c['runs_s'])}), {rate(c)}")
    if "sentence_transformers" in r:
        d = r["sentence_transformers"]
        print(f"(d) sentence-transf.   encode {d['encode_s']:.2f} s ({d['dtype']}, batch {d['batch_size']}, "
              f"{d['padded_tokens']:,} padded tokens), LogisticRegression fit {d['fit_s']:.2f} s "
              f"({d['lbfgs_iterations']} iterations), load {d['load_s']:.2f} s, process {d['process_wall_s']:.1f} s; "
              f"encode = {d['encode_s'] / a['wall_s']:.2f}x (a)")
    if r["peak_memory_gib"] is not None:
        print(f"peak memory            {r['peak_memory_gib']:.2f} GiB (this process)")


def plot(result: dict, path: Path) -> None:
    """Seconds of each section, split into its parts; from the JSON this script writes, so a chart can be
    redrawn from saved results."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    r = result["results"]
    a = r["headtune_pass"]
    rows = [("(a) headtune's pass", [("tokenize", a["tokenize_s"], "#9ec3ea"), ("compute", a["compute_s"], "#2f6db5")],
             f"{a['wall_s']:.1f} s" + (f", {100 * a['wall']['share_of_peak']:.1f}% of peak"
                                       if a["wall"]["share_of_peak"] is not None else ""))]
    if "old_way" in r:
        b = r["old_way"]
        rows.append(("(b) old way", [("tokenize first", b["tokenize_s"], "#bbbbbb"), ("pass", b["pass_s"], "#c44e52")],
                     f"{b['total_s']:.1f} s"))
    if "steady" in r:
        c = r["steady"]
        rows.append(("(c) steady repeat", [("pass", c["seconds"], "#4d4d4d")],
                     f"{c['seconds']:.1f} s" + (f", {100 * c['share_of_peak']:.1f}% of peak"
                                                if c["share_of_peak"] is not None else "")))
    if "sentence_transformers" in r:
        d = r["sentence_transformers"]
        rows.append(("(d) sentence-transformers\n+ LogisticRegression",
                     [("encode", d["encode_s"], "#8172b2"), ("fit", d["fit_s"], "#ccb974")],
                     f"{d['encode_s']:.1f} + {d['fit_s']:.1f} s"))
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(rows) + 1.6))
    seen = set()
    for i, (label, parts, text) in enumerate(rows):
        left = 0.0
        for name, seconds, color in parts:
            ax.barh(i, seconds, left=left, color=color, label=None if name in seen else name)
            seen.add(name)
            left += seconds
        ax.text(left, i, f"  {text}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [row[0] for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(sum(p[1] for p in row[1]) for row in rows) * 1.5)
    ax.set_xlabel("seconds, lower is better")
    ax.legend(fontsize=7, loc="lower right")
    shape = r["flops"]
    ax.set_title(f"{result['environment'].get('gpu', result['host_kind'])}: random DistilBERT "
                 f"({shape['layers']} layers, width {shape['hidden']}) over "
                 f"{r['texts']:,} IMDb texts, max length {result['settings']['max_length']}, "
                 f"{result['settings']['autocast']}, {r['batch_shapes']} batch shapes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
