#!/usr/bin/env bash
# Paper setting "cifar100" at full size (appendix D): 40 seeds collected with the seed-ensemble
# trainer (resumable: finished runs are skipped on a re-run), then fit --mode mle and
# --mode svi, the reports, and the comparison with the paper's Tables 1, 2 and 4 in
# ${FITS:-fits/reproduce}/cifar100-comparison.{md,json}.
# GPU-ready: --device auto uses CUDA when present. Extra arguments go to
# scripts/reproduce_paper.py (e.g. --data-root DIR, --ensemble-size 8, --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/reproduce_paper.py cifar100 --device auto \
    --runs "${RUNS:-runs/reproduce}" --fits "${FITS:-fits/reproduce}" "$@"
