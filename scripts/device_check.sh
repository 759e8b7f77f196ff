#!/usr/bin/env bash
# One-shot GPU check (issue 17): CUDA tests, EM engines sequential vs scan, SVI, and a
# 40-seed modular-addition collection (p = 113, Table 6 settings) for as many steps as
# fit the remaining time budget. Everything goes under $OUT (default ./out/device) in
# at most 8 files:
#   install.log nvidia_smi.log pytest_cuda.log bench_mle.log bench_svi.log collect.log
#   modular_addition.tar.gz summary.txt
#
#   scripts/device_check.sh                          # on the GPU machine (< 8 minutes)
#   DEVICE_CHECK_DRY_RUN=1 scripts/device_check.sh   # every stage tiny, on the CPU (< 2 minutes)
#
# Environment: OUT, BUDGET_S (total seconds, default 460; 110 in a dry run), PYTHON,
# DEVICE_CHECK_SKIP_INSTALL=1 (default in a dry run: never touch a shared environment).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd); export ROOT
OUT=${OUT:-$ROOT/out/device}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DRY=${DEVICE_CHECK_DRY_RUN:-0}
PY=${PYTHON:-$(command -v python || command -v python3)}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, installed or not
export PYTHONUNBUFFERED=1
START=$(date +%s)
if [ "$DRY" = 1 ]; then
    BUDGET_S=${BUDGET_S:-110}; DEVICE=cpu; SKIP_INSTALL=${DEVICE_CHECK_SKIP_INSTALL:-1}
    export NUMBA_NUM_THREADS=${NUMBA_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    BUDGET_S=${BUDGET_S:-460}; DEVICE=cuda; SKIP_INSTALL=${DEVICE_CHECK_SKIP_INSTALL:-0}
fi
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
remaining() { echo $(( BUDGET_S - $(elapsed) )); }

# stage NAME LOG TIMEOUT_S CMD...: run under timeout, tee to LOG, record rc and seconds.
stage() {
    local name=$1 log=$2 limit=$3; shift 3
    local left; left=$(remaining)
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ "$limit" -lt 5 ]; then note "[$name] skipped: budget spent"; return 0; fi
    local t0 rc; t0=$(date +%s)
    echo "\$ $*" >> "$log"
    set +e
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    set -e
    note "[$name] rc=$rc in $(( $(date +%s) - t0 )) s (limit ${limit} s)$([ "$rc" = 124 ] && echo ' TIMED OUT')"
    return 0
}

note "device_check: $(date -u +%FT%TZ) dry_run=$DRY device=$DEVICE budget=${BUDGET_S}s commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# 1. environment ---------------------------------------------------------------------
install_env() {
    if ! "$PY" -c "import torch" 2>/dev/null; then
        echo "torch missing: pip install torch==2.14.1"
        "$PY" -m pip install torch==2.14.1 || echo "torch install failed"
    fi
    # With the dependencies present, install the package alone (no index needed); else
    # ask the index once, briefly (the machine may have no network).
    if "$PY" -c "import torch, numba, pyro, hmmlearn, pandas, pyarrow, sklearn, statsmodels, arviz, networkx, ot, pytest" \
        && "$PY" -m pip install --no-deps --no-build-isolation -e .; then
        echo "dependencies present; installed -e . without resolving them"
    elif "$PY" -m pip install --retries 1 --timeout 10 -e ".[test]"; then
        echo "installed -e .[test]"
    else
        echo "no install; running from PYTHONPATH=$ROOT"
    fi
}
if [ "$SKIP_INSTALL" = 1 ]; then
    note "[install] skipped (DEVICE_CHECK_SKIP_INSTALL=1); PYTHONPATH=$ROOT"
else
    stage install "$OUT/install.log" 120 bash -c "$(declare -f install_env); PY='$PY'; install_env"
fi
stage versions "$OUT/install.log" 60 "$PY" -c "
import importlib
for m in ('torch', 'numpy', 'numba', 'pyro', 'hmmlearn', 'pandas', 'pyarrow', 'pytest'):
    try:
        print(m, getattr(importlib.import_module(m), '__version__', '?'))
    except Exception as exc:
        print(m, 'MISSING', exc)
import torch
print('cuda available', torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')
"
grep -E "^(torch [0-9]|cuda available|[a-z_]+ MISSING)" "$OUT/install.log" | sed 's/^/  /' >> "$SUMMARY" || true
if [ "$DRY" = 1 ]; then
    stage nvidia-smi "$OUT/nvidia_smi.log" 10 bash -c "nvidia-smi || echo 'no nvidia-smi (dry run)'"
else
    stage nvidia-smi "$OUT/nvidia_smi.log" 20 nvidia-smi
fi

# 2. CUDA tests ----------------------------------------------------------------------
if [ "$DRY" = 1 ]; then TESTS=tests/inference/test_scan.py; else TESTS=tests; fi
stage pytest-cuda "$OUT/pytest_cuda.log" 100 "$PY" -m pytest -m cuda "$TESTS" -q -rs \
    -p no:cacheprovider --continue-on-collection-errors
tail -n 3 "$OUT/pytest_cuda.log" | sed 's/^/  /' >> "$SUMMARY"

# 3. EM engines: sequential vs scan (and numba on the host CPU) ------------------------
if [ "$DRY" = 1 ]; then
    MLE_SIZE=(--runs 4 --features 3 --grid-lengths 50 200 --grid-states 2 3 --grid-iters 1 --threads 1)
else
    MLE_SIZE=(--runs 40 --features 14 --grid-lengths 1000 10000 --grid-states 6 16 --grid-iters 2)
fi
stage bench-mle "$OUT/bench_mle.log" 170 "$PY" benchmarks/bench_mle.py --skip iteration sweep memory \
    --engines torch-seq,torch-scan,numba --device "$DEVICE" --repeats 1 "${MLE_SIZE[@]}"
sed -n '/^\[4\]/,$p' "$OUT/bench_mle.log" | sed 's/^/  /' >> "$SUMMARY"

# 4. SVI --------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then SVI_SIZE=(--runs 3 --length 40 --features 2 --states 2); else SVI_SIZE=(); fi
stage bench-svi "$OUT/bench_svi.log" 100 "$PY" benchmarks/bench_svi.py --quick --device "$DEVICE" \
    --fb-methods auto,sequential,scan "${SVI_SIZE[@]}"
grep -E "^(data|seconds per SVI step|converged fit)" "$OUT/bench_svi.log" | sed 's/^/  /' >> "$SUMMARY" || true

# 5. modular addition, 40 seeds, steps from the remaining budget ----------------------
if [ "$DRY" = 1 ]; then
    COLLECT=(--task modular_addition --size smoke --seeds 0-3 --device cpu); CAL_STEPS=20; EVERY=10; MAX_STEPS=40
else
    COLLECT=(--task modular_addition --seeds 0-39 --device cuda); CAL_STEPS=100; EVERY=50; MAX_STEPS=20000
fi
CAL_DIR=$(mktemp -d)
t0=$(date +%s)
stage collect-calibration "$OUT/collect.log" 90 "$PY" -m bayes_trainmap collect "${COLLECT[@]}" \
    --steps "$CAL_STEPS" --eval-every "$EVERY" --out "$CAL_DIR/cal" --no-progress
CAL_S=$(( $(date +%s) - t0 ))
rm -rf "$CAL_DIR"
# Steps that fit: the calibration's time (setup included, so an over-estimate of the
# per-step cost) scaled to what is left, less 25 s for packing, with a 0.85 margin.
AVAIL=$(( $(remaining) - 25 ))
STEPS=$("$PY" -c "
cal, avail, every, cap = max($CAL_S, 1), $AVAIL, $EVERY, $MAX_STEPS
steps = int(0.85 * avail / cal * $CAL_STEPS) // every * every
print(max(0, min(cap, steps)))")
note "[collect] calibration: $CAL_STEPS steps in ${CAL_S} s; ${AVAIL} s left -> --steps $STEPS (paper: 20000)"
if [ "$STEPS" -ge "$EVERY" ]; then
    stage collect "$OUT/collect.log" "$AVAIL" "$PY" -m bayes_trainmap collect "${COLLECT[@]}" \
        --steps "$STEPS" --eval-every "$EVERY" --out "$OUT/modular_addition" --no-progress
    grep -E "run\(s\) trained|diverged" "$OUT/collect.log" | tail -n 2 | sed 's/^/  /' >> "$SUMMARY" || true
else
    note "[collect] skipped: no time for one checkpoint interval"
fi
if [ -d "$OUT/modular_addition" ]; then
    note "  runs written: $(find "$OUT/modular_addition" -name 'run-*.parquet' | wc -l)"
    tar -czf "$OUT/modular_addition.tar.gz" -C "$OUT" modular_addition && rm -rf "$OUT/modular_addition"
fi
note "device_check: done in $(elapsed) s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
