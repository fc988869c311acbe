"""GPU benchmark of headtune's backbone pass: how close does it get to the GPU's peak?

A randomly initialised DistilBERT-base (`DistilBertConfig()`; speed does not depend on the weights) runs
over the full IMDb train + test splits (50,000 texts) at max length 512, exactly as headtune's pass
runs it: tokenized once with a real WordPiece tokenizer, length-sorted, cut into cache shards and
token-budget batches, autocast (bf16 on Ampere or newer), pinned memory and non_blocking copies.
Reports tokens per second, padded vs real tokens, and achieved TFLOP/s as a share of the GPU's dense
peak; writes benchmarks/results/gpu_<gpu-name>.json. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
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

# Dense (no sparsity) tensor-core peak in TFLOP/s at the precision autocast picks there: bf16, or fp16 on
# GPUs without bf16 (V100, T4). From NVIDIA's data sheets; first match wins, so specific names go first.
PEAK_TFLOPS = (
    ("GH200", 989), ("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989),
    ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("A10", 125),
    ("V100", 125), ("T4", 65),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens-per-batch", type=int, default=65536,
                        help="Token budget per batch (headtune's --max-tokens-per-batch; default %(default)s).")
    parser.add_argument("--shard-size", type=int, default=FeatureConfig().shard_size,
                        help="Texts per cache shard; batches never cross a shard (headtune's default %(default)s).")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--limit", type=int, default=None, help="Use only N texts, evenly spread (quick checks).")
    parser.add_argument("--device", default="auto", help="auto or cuda[:N]; cpu only for a dry run of the script.")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="Autocast as headtune's --precision: auto = bf16 on Ampere+, fp16 before, fp32 on CPU.")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="The GPU's dense peak at that precision, if the built-in table does not know it.")
    # On CPU one 65,536-token DistilBERT batch takes minutes, so a dry run skips the warm-up and repeats.
    parser.add_argument("--warmup-batches", type=int, default=None,
                        help="Untimed batches first, the longest ones (default: 3 on a GPU, 0 on CPU).")
    parser.add_argument("--repeats", type=int, default=None,
                        help="Timed passes; the median is reported (default: 3 on a GPU, 1 on CPU).")
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
    splits = load_splits(DataConfig(dataset=dataset), seed=0)  # no sizes: whole splits, nothing sampled
    texts = splits.train.texts + splits.test.texts
    if limit is not None and limit < len(texts):
        # evenly spread, not the first N: the splits are stored neg-then-pos, sorted by review id
        texts = [texts[i] for i in np.linspace(0, len(texts) - 1, limit).round().astype(int)]
    return texts


def random_distilbert(device: torch.device, seed: int) -> torch.nn.Module:
    from transformers import AutoModel, DistilBertConfig

    torch.manual_seed(seed)
    return AutoModel.from_config(DistilBertConfig()).to(device).eval()


def timed_passes(model, ids, batches, pad_id, dtype, args) -> tuple[float, list[float]]:
    """Warm-up seconds, then the seconds of each timed pass over all batches."""
    spec = HEADS["distilbert"]  # [CLS] of the last hidden state, what DistilBERT's head reads
    warmup = common.backbone_pass(model, spec, ids, batches[:args.warmup_batches], pad_id, dtype).seconds
    runs = []
    for repeat in range(args.repeats):
        result = common.backbone_pass(model, spec, ids, batches, pad_id, dtype)
        runs.append(result.seconds)
        common.log(f"pass {repeat + 1}/{args.repeats}: {result.seconds:.2f} s")
    return warmup, runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = device_or_exit(args.device)
    on_gpu = device.type == "cuda"
    args.warmup_batches = (3 if on_gpu else 0) if args.warmup_batches is None else args.warmup_batches
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
    batches = common.headtune_batches(lengths, args.max_tokens_per_batch, args.shard_size)

    model = random_distilbert(device, args.seed)
    dtype = autocast_dtype(device, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    common.log(f"{len(batches)} batches on {device}, autocast {dtype or 'off (fp32)'}")
    warmup_s, runs = timed_passes(model, tok.ids, batches, tokenizer.pad_token_id or 0, dtype, args)

    seconds = statistics.median(runs)
    flops = common.EncoderFlops.from_config(model.config)
    real, padded = int(lengths.sum()), common.padded_tokens(lengths, batches)
    # headtune's pass: the last layer runs its query side for the first token only
    work = {"real": flops.real(lengths, True), "padded": flops.padded(lengths, batches, True)}
    peak = peak_tflops(device, args.peak_tflops)
    achieved = work["padded"] / seconds / 1e12
    report = {
        "texts": len(texts), "truncated": int(tok.truncated.sum()), "real_tokens": real, "padded_tokens": padded,
        "padding_ratio": padded / real, "batches": len(batches), "mean_batch_tokens": padded / len(batches),
        "tokenize_s": tokenize_s, "warmup_s": warmup_s, "pass_s": seconds, "pass_s_runs": runs,
        "real_tokens_per_s": real / seconds, "padded_tokens_per_s": padded / seconds,
        "tflops_achieved": achieved, "tflops_useful": work["real"] / seconds / 1e12,
        "peak_tflops": peak, "share_of_peak": achieved / peak if peak else None,
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
    print(f"wrote {path}")
    return 0


def print_report(r: dict, device: torch.device, dtype: torch.dtype | None) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({common.cpu_cores()} cores)"
    share = f"{100 * r['share_of_peak']:.1f}% of {r['peak_tflops']:g} peak" if r["peak_tflops"] \
        else "peak unknown: pass --peak-tflops"
    print(f"device          {name}, autocast {dtype or 'fp32'}")
    print(f"texts           {r['texts']:,} ({r['truncated']:,} truncated), {r['batches']:,} batches "
          f"of {r['mean_batch_tokens']:,.0f} tokens on average")
    print(f"tokens          {r['real_tokens']:,} real, {r['padded_tokens']:,} padded ({r['padding_ratio']:.3f}x)")
    print(f"seconds         tokenize {r['tokenize_s']:.2f}, warm-up {r['warmup_s']:.2f}, "
          f"pass {r['pass_s']:.2f} (median of {len(r['pass_s_runs'])})")
    print(f"throughput      {r['real_tokens_per_s']:,.0f} real tokens/s, {r['padded_tokens_per_s']:,.0f} padded")
    print(f"compute         {r['tflops_achieved']:.2f} TFLOP/s achieved ({share}), {r['tflops_useful']:.2f} useful")
    if r["peak_memory_gib"] is not None:
        print(f"peak memory     {r['peak_memory_gib']:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
