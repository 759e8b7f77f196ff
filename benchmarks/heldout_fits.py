"""Fits of the shipped demo sets on a seed split, shared by ``bench_online`` and ``bench_forecast``.

``heldout_fit(name, out_dir)`` fits the map on 80% of the seeds (the split of
:func:`bayes_trainmap.data.split_runs` with ``--split-seed``) and returns the fit
directory with the held-out runs. Fits are cached in ``out_dir/<name>-split<seed>``
and reused when the same options wrote them.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from bayes_trainmap.data import demo_trajectories, split_runs
from bayes_trainmap.data.fitdir import is_fit_dir, load_fit_dir
from bayes_trainmap.fitting import pipeline

#: The shipped real sets.
DEMO_SETS = ("sparse_parities", "digits", "modular_addition")


def fold_split(run_ids, fold: int, n_folds: int, split_seed: int = 0) -> tuple[list[str], list[str]]:
    """Training and held-out ids of one fold: with ``n_folds == 1`` the 80/20 split of
    :func:`split_runs`; otherwise the runs (natural order, permuted with ``split_seed``)
    dealt into ``n_folds`` groups, fold ``fold`` held out (5 folds: 80/20 each, every
    run held out once)."""
    if n_folds == 1:
        return split_runs(run_ids, 0.2, seed=split_seed)
    order = np.random.default_rng(split_seed).permutation(len(run_ids))
    held = {run_ids[i] for i in order[fold::n_folds]}
    return [r for r in run_ids if r not in held], [r for r in run_ids if r in held]


def heldout_fit(name: str, out_dir: str | os.PathLike, *, fold: int = 0, n_folds: int = 1, split_seed: int = 0,
                restarts: int = 2, states: str = "auto"):
    """``(fit_dir, trajectories, train_ids, held_out_ids)`` for a demo set."""
    ts = demo_trajectories(name)
    train, held = fold_split(ts.run_ids, fold, n_folds, split_seed)
    out = Path(out_dir) / f"{name}-seed{split_seed}-fold{fold}of{n_folds}-r{restarts}-{states}"
    if not is_fit_dir(out):
        result = pipeline.fit(ts.subset(train), states=states, n_restarts=restarts, progress=False)
        result.save(out, report=False)
    return load_fit_dir(out), ts, train, held
