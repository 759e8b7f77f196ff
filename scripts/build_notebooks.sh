#!/usr/bin/env bash
# Build notebooks/NN_*.ipynb from their sources notebooks/NN_*.py (jupytext percent format).
#
#   scripts/build_notebooks.sh              # write each .ipynb, without outputs (what is committed)
#   scripts/build_notebooks.sh --execute    # also run each one into build/notebooks/NN_*.ipynb (git-ignored)
#
# Edit the .py files, never the .ipynb: tests/test_notebooks.py checks that both hold the
# same cells and runs every notebook. BTM_NOTEBOOK_FAST=1 shrinks the budgets (as the tests do).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../notebooks"
export PYTHONPATH="$(cd .. && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's bayes_trainmap
for source in [0-9][0-9]_*.py; do
    jupytext --quiet --update --to ipynb "$source"  # --update keeps the cell ids: diff-free rebuilds
    if [[ "${1:-}" == "--execute" ]]; then
        mkdir -p ../build/notebooks  # the kernel still runs in notebooks/, next to _setup.py
        jupyter-execute --timeout=1800 --output='../build/notebooks/{notebook_name}' "${source%.py}.ipynb"
    fi
done
