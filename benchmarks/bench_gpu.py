"""GPU benchmark of headtune's backbone pass: how close does it get to the GPU's peak?

A randomly initialised DistilBERT-base (`DistilBertConfig()`; speed does not depend on the weights) runs
over the full IMDb train + test splits (50,000 texts) at max length 512, exactly as headtune's pass
runs it on a GPU: tokenized once with a real WordPiece tokenizer, length-sorted, cut into cache shards
and token-budget batches with widths rounded to headtune's --pad-to-multiple-of, autocast (bf16 on
Ampere or newer), pinned memory and non_blocking copies.

headtune runs this pass once, so the number that matters is the first pass in a fresh process, which
pays the one-time setup of every new batch shape; later passes over the same shapes show the steady
speed. Reports both: tokens per second, padded vs real tokens, and achieved TFLOP/s as a share of the
GPU's dense peak; writes benchmarks/results/gpu_<gpu-name>.json. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import _common as common
from headtune.config import DataConfig, FeatureConfig
from headtune.data import load_splits
from headtune.features import autocast_dtype, tokenize
from headtune.heads import HEADS

GPU = FeatureConfig().for_device("cuda")  # headtune's batching defaults on a GPU

# Dense (no sparsity) tensor-core peak in TFLOP/s at the precision autocast picks there: bf16, or fp16 on
# GPUs without bf16 (V100, T4). From NVIDIA's data sheets; first match wins, so specific names go first.
PEAK_TFLOPS = (
    ("GH200", 989), ("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989),
    ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("A10", 125),
    ("V100", 125), ("T4", 65),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens-per-batch", type=int, default=GPU.max_tokens_per_batch,
                        help="Token budget per batch (headtune's default on CUDA: %(default)s).")
    parser.add_argument("--shard-size", type=int, default=GPU.shard_size,
                        help="Texts per cache shard; batches never cross a shard (headtune's default on CUDA: "
                             "%(default)s).")
    parser.add_argument("--pad-to-multiple-of", type=int, default=GPU.pad_to_multiple_of,
                        help="Batch widths rounded up to this (headtune's default on CUDA: %(default)s; 1 = exact).")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--limit", type=int, default=None, help="Use only N texts, evenly spread (quick checks).")
    parser.add_argument("--device", default="auto", help="auto or cuda[:N]; cpu only for a dry run of the script.")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="Autocast as headtune's --precision: auto = bf16 on Ampere+, fp16 before, fp32 on CPU.")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="The GPU's dense peak at that precision, if the built-in table does not know it.")
    # On CPU one 65,536-token DistilBERT batch takes minutes, so a dry run makes one pass.
    parser.add_argument("--repeats", type=int, default=None,
                        help="Timed passes: the first, then repeats whose median is the steady speed "
                             "(default: 3 on a GPU, 1 on CPU).")
    parser.add_argument("--dataset", default=str(common.IMDB_DIR))
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer folder (default: the MiniLM package's, distilbert-base-uncased's vocabulary).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


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


def load_texts(dataset: str, limit: int | None) -> list[str]:
    splits = load_splits(DataConfig(dataset=dataset))  # no sizes: whole splits, nothing sampled
    texts = splits.train.texts + splits.test.texts
    if limit is not None and limit < len(texts):
        # evenly spread, not the first N: the splits are stored neg-then-pos, sorted by review id
        texts = [texts[i] for i in np.linspace(0, len(texts) - 1, limit).round().astype(int)]
    return texts


def random_distilbert(device: torch.device, seed: int) -> torch.nn.Module:
    from transformers import AutoModel, DistilBertConfig

    torch.manual_seed(seed)
    return AutoModel.from_config(DistilBertConfig()).to(device).eval()


def timed_passes(model, ids, batches, pad_id, dtype, args) -> list[float]:
    """Seconds of each pass over all batches; the first one is what headtune's single pass costs."""
    spec = HEADS["distilbert"]  # [CLS] of the last hidden state, what DistilBERT's head reads
    runs = []
    for repeat in range(args.repeats):
        result = common.backbone_pass(model, spec, ids, batches, pad_id, dtype, args.pad_to_multiple_of)
        runs.append(result.seconds)
        common.log(f"pass {repeat + 1}/{args.repeats}: {result.seconds:.2f} s")
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = device_or_exit(args.device)
    on_gpu = device.type == "cuda"
    args.repeats = (3 if on_gpu else 1) if args.repeats is None else args.repeats
    common.quiet_libraries()
    from transformers import AutoTokenizer

    texts = load_texts(args.dataset, args.limit)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or common.minilm_path())
    common.log(f"tokenizing {len(texts):,} texts")
    start = time.perf_counter()
    tok = tokenize(tokenizer, texts, args.max_length)
    tokenize_s = time.perf_counter() - start
    lengths = np.array([len(ids) for ids in tok.ids])
    batches = common.headtune_batches(lengths, args.max_tokens_per_batch, args.shard_size, args.pad_to_multiple_of)

    model = random_distilbert(device, args.seed)
    dtype = autocast_dtype(device, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    common.log(f"{len(batches)} batches on {device}, autocast {dtype or 'off (fp32)'}")
    runs = timed_passes(model, tok.ids, batches, tokenizer.pad_token_id or 0, dtype, args)

    flops = common.EncoderFlops.from_config(model.config)
    real, padded = int(lengths.sum()), common.padded_tokens(lengths, batches, args.pad_to_multiple_of)
    # headtune's pass: the last layer runs its query side for the first token only
    work = {"real": flops.real(lengths, True),
            "padded": flops.padded(lengths, batches, True, args.pad_to_multiple_of)}
    peak = peak_tflops(device, args.peak_tflops)
    report = {
        "texts": len(texts), "truncated": int(tok.truncated.sum()), "real_tokens": real, "padded_tokens": padded,
        "padding_ratio": padded / real, "batches": len(batches), "mean_batch_tokens": padded / len(batches),
        "batch_shapes": len({(len(b), common.padded_width(int(lengths[b].max()), args.pad_to_multiple_of))
                             for b in batches}),
        "tokenize_s": tokenize_s, "pass_s_runs": runs,
        "first": speed(runs[0], real, padded, work, peak),
        "steady": speed(statistics.median(runs[1:]), real, padded, work, peak) if len(runs) > 1 else None,
        "peak_tflops": peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    print_report(report, device, dtype)

    host = common.host_kind(device)
    path = args.out_dir / f"gpu_{host}.json"
    common.write_json(path, {
        "benchmark": "gpu_backbone_pass", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]), "host_kind": host,
        "environment": common.environment(device),
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "autocast": str(dtype) if dtype else "fp32",
                     "attention": getattr(model.config, "_attn_implementation", None)},
        "flops": {**flops.describe(), "tflop_real": work["real"] / 1e12, "tflop_padded": work["padded"] / 1e12},
        "results": report})
    plot(json.loads(path.read_text()), path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


def plot(result: dict, path: Path) -> None:
    """Seconds of the first pass (what headtune pays) and of the steady repeats, labelled with the share
    of the GPU's peak; from the JSON this script writes, so a chart can be redrawn from saved results."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    r = result["results"]
    bars = [(label, r[key]) for label, key in (("first pass", "first"), ("steady repeats", "steady")) if r[key]]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh([label for label, _ in bars], [s["pass_s"] for _, s in bars], color=["#c44e52", "#4c72b0"][:len(bars)])
    for i, (_, s) in enumerate(bars):
        share = f" ({100 * s['share_of_peak']:.1f}% of peak)" if s["share_of_peak"] else ""
        ax.text(s["pass_s"], i, f" {s['pass_s']:.1f} s, {s['tflops_achieved']:.0f} TFLOP/s{share}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(s["pass_s"] for _, s in bars) * 2.4)
    ax.set_xlabel("seconds")
    settings = result["settings"]
    ax.set_title(f"{result['environment'].get('gpu', result['host_kind'])}: DistilBERT pass over "
                 f"{r['texts']:,} texts\n{settings['autocast']}, widths rounded to "
                 f"{settings['pad_to_multiple_of']}, {r['batch_shapes']} batch shapes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speed(seconds: float, real: int, padded: int, work: dict, peak: float | None) -> dict:
    achieved = work["padded"] / seconds / 1e12
    return {"pass_s": seconds, "real_tokens_per_s": real / seconds, "padded_tokens_per_s": padded / seconds,
            "tflops_achieved": achieved, "tflops_useful": work["real"] / seconds / 1e12,
            "share_of_peak": achieved / peak if peak else None}


def print_report(r: dict, device: torch.device, dtype: torch.dtype | None) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({common.cpu_cores()} cores)"
    print(f"device                {name}, autocast {dtype or 'fp32'}")
    print(f"texts                 {r['texts']:,} ({r['truncated']:,} truncated), {r['batches']:,} batches "
          f"of {r['mean_batch_tokens']:,.0f} tokens on average, {r['batch_shapes']} shapes")
    print(f"tokens                {r['real_tokens']:,} real, {r['padded_tokens']:,} padded ({r['padding_ratio']:.3f}x)")
    print(f"tokenize              {r['tokenize_s']:.2f} s")
    n = len(r["pass_s_runs"])
    for label, s in (("first pass", r["first"]), (f"steady (median of {n - 1})", r["steady"])):
        if s is None:
            continue
        share = f"{100 * s['share_of_peak']:.1f}% of {r['peak_tflops']:g} peak" if r["peak_tflops"] \
            else "peak unknown: pass --peak-tflops"
        print(f"{label:<21} {s['pass_s']:.2f} s, {s['real_tokens_per_s']:,.0f} real tokens/s, "
              f"{s['tflops_achieved']:.2f} TFLOP/s achieved ({share}), {s['tflops_useful']:.2f} useful")
    if r["peak_memory_gib"] is not None:
        print(f"peak memory           {r['peak_memory_gib']:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
