#!/usr/bin/env bash
# Regenerate the shipped demo trajectories in bayes_trainmap/demo_data/ (40 seeds each,
# seed ensembles on CPU; about an hour in all on a busy 2-core machine).
#
#   sparse_parities: paper settings (appendix D, Table 5), 25000 SGD steps, a checkpoint
#                    every 125 steps (201 per run); convergence threshold 0.9 eval accuracy.
#   digits:          scikit-learn 8x8 digits MLP, 2400 AdamW steps, a checkpoint every
#                    10 steps (241 per run); convergence threshold 0.95 (max is about 0.97).
#   modular_addition (variant "reduced", not the paper's size): p = 23, 1200 full-batch
#                    AdamW steps, a checkpoint every 10 (121 per run); threshold 0.9.
#                    This one takes about 30 minutes: the transformer is compute-bound.
#   sparse_parities_h256: paper settings with hidden width 256 instead of 128 (issue 17's
#                    detour search, docs/reproduction.md), 40000 SGD steps, a checkpoint
#                    every 200 (201 per run); about 15 minutes on the loaded machine.
#
# Usage: scripts/make_demo_data.sh [OUT_DIR]   (default: bayes_trainmap/demo_data)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${1:-bayes_trainmap/demo_data}

"$PYTHON" -m bayes_trainmap collect --task sparse_parities --seeds 0-39 --steps 25000 --eval-every 125 \
    --device cpu --out "$OUT/sparse_parities"
"$PYTHON" -m bayes_trainmap collect --task digits --seeds 0-39 --steps 2400 --eval-every 10 \
    --device cpu --out "$OUT/digits"
"$PYTHON" -m bayes_trainmap collect --task modular_addition --variant reduced --seeds 0-39 \
    --device cpu --out "$OUT/modular_addition"
"$PYTHON" -m bayes_trainmap collect --task sparse_parities --seeds 0-39 --steps 40000 --eval-every 200 \
    --set hidden=256 --device cpu --out "$OUT/sparse_parities_h256"
