"""Save a randomly initialised DistilBERT-base (`DistilBertConfig()`) with the uncased WordPiece tokenizer as an
ordinary model folder: what bench_gpu.py, bench_small_run.py and bench_full_imdb.py measure on a GPU (speed
does not depend on the weights; accuracies on it mean nothing).

    python benchmarks/make_random_model.py --out /tmp/distilbert-random
    python benchmarks/make_random_model.py --out /tmp/tiny --tokenizer .gpu/tokenizer --tiny   # dry runs only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder to write (created).")
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer folder (default: the MiniLM package's: distilbert-base-uncased's vocabulary).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    parser.add_argument("--tiny", action="store_true", help="2 layers of width 128: for CPU dry runs of the scripts.")
    args = parser.parse_args(argv)
    common.quiet_libraries()
    folder = common.save_random_distilbert(args.out, args.tokenizer or common.minilm_path(), args.seed, args.tiny)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"wrote {folder} ({'tiny' if args.tiny else 'DistilBertConfig()'}, {size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
