"""Preparing trajectories for the model: validation, per-run z-scoring (sec. 2.1), the run split."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bayes_trainmap.core.errors import TrajectoryError
from bayes_trainmap.core.schema import (
    RUN_COLUMN,
    STEP_COLUMN,
)
from bayes_trainmap.data.trajectories import (
    TrajectorySet,
    _natural_key,
)

logger = logging.getLogger(__name__)

#: A feature is constant within a run when its standard deviation over the
#: z-scoring window is at most this fraction of its absolute mean (or exactly 0):
#: the mean of identical floats can be off by an ulp, so "== 0" alone is fragile.
CONSTANT_RTOL = 1e-10


# ----------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------
def validate(ts: TrajectorySet, features: Sequence[str] | None = None, *, min_length: int = 2) -> list[str]:
    """Check that a trajectory set can be modelled; return the resolved features.

    Parameters
    ----------
    ts : TrajectorySet
    features : sequence of str, optional
        Columns to model (default: the weight statistics present).
    min_length : int
        Minimum number of checkpoints per run.

    Returns
    -------
    list of str
        The feature names.

    Raises
    ------
    TrajectoryError
        For an empty set, missing or non-numeric feature columns, NaN/Inf feature
        values, duplicate or unsorted steps, or runs shorter than ``min_length``.
    """
    if ts.n_runs == 0 or len(ts) == 0:
        raise TrajectoryError("the trajectory set is empty: expected at least one run with checkpoints")
    names = ts.resolve_features(features)
    frame = ts.frame

    values = frame[names].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        first = rows[0]
        raise TrajectoryError(
            f"{rows.size} non-finite feature value(s) (NaN/Inf), first in run "
            f"'{frame[RUN_COLUMN].iat[first]}' at step {frame[STEP_COLUMN].iat[first]}, "
            f"column '{names[cols[0]]}' = {values[first, cols[0]]}; expected finite numbers"
        )

    steps = frame[STEP_COLUMN].to_numpy(dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(ts.lengths)[:-1]])
    diffs = np.diff(steps)
    within_run = np.ones(diffs.size, dtype=bool)
    within_run[starts[1:] - 1] = False  # a new run may restart the step count
    bad = np.nonzero(within_run & (diffs <= 0))[0]
    if bad.size:
        i = bad[0]
        kind = "duplicate" if diffs[i] == 0 else "unsorted"
        raise TrajectoryError(
            f"{kind} steps in run '{frame[RUN_COLUMN].iat[i]}': step {steps[i + 1]} follows step "
            f"{steps[i]}; expected strictly increasing steps within each run"
        )

    short = [(r, int(n)) for r, n in zip(ts.run_ids, ts.lengths) if n < min_length]
    if short:
        listed = ", ".join(f"'{r}' ({n})" for r, n in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise TrajectoryError(
            f"run(s) {listed}{more} have fewer than {min_length} checkpoints; "
            f"expected at least {min_length} per run"
        )
    return names


# ----------------------------------------------------------------------------------
# z-scoring and splitting
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZScoreInfo:
    """How :func:`zscore_per_run` normalised each run.

    Attributes
    ----------
    window : int
        Checkpoints used for the statistics: the first ``min(T, window)`` of each run.
    means, stds : numpy.ndarray, shape (N, d)
        Per-run, per-feature mean and population standard deviation (ddof=0)
        over the window.
    constant : numpy.ndarray of bool, shape (N, d)
        Features with zero variance over the window in that run; their
        z-scores are set to 0 for the whole run.
    feature_names, run_ids : list of str
    """

    window: int
    means: np.ndarray
    stds: np.ndarray
    constant: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def constant_features(self) -> list[str]:
        """Features constant (over the window) in at least one run."""
        return [f for j, f in enumerate(self.feature_names) if self.constant[:, j].any()]

    @property
    def fully_constant_features(self) -> list[str]:
        """Features constant in every run: they carry no information."""
        return [f for j, f in enumerate(self.feature_names) if self.constant[:, j].all()]

    def constant_runs(self) -> dict[str, list[str]]:
        """For each constant feature, the runs in which it is constant."""
        return {
            f: [r for i, r in enumerate(self.run_ids) if self.constant[i, j]]
            for j, f in enumerate(self.feature_names)
            if self.constant[:, j].any()
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (what ``zscore.json`` in a fit directory holds)."""
        return {
            "method": "zscore_per_run",
            "window": self.window,
            "ddof": 0,
            "feature_names": list(self.feature_names),
            "run_ids": list(self.run_ids),
            "constant_features": self.constant_features,
            "fully_constant_features": self.fully_constant_features,
            "constant_runs": self.constant_runs(),
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
        }


def _check_lengths(lengths: np.ndarray, n: int) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0 or not np.issubdtype(lengths.dtype, np.integer):
        raise TrajectoryError(f"lengths must be a non-empty 1-d integer array, got {lengths!r}")
    if (lengths < 1).any() or lengths.sum() != n:
        raise TrajectoryError(f"lengths must be positive and sum to the number of rows ({n}), got sum {lengths.sum()}")
    return lengths.astype(np.int64)


def _mean_std(head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and (population) standard deviations of ``head`` (t, d), without
    overflow: deviations are scaled by their largest magnitude before squaring, so values
    near 1e300 give their true spread instead of an infinite one."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by the caller
        mean = head.mean(axis=0)
        dev = head - mean
        scale = np.max(np.abs(dev), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        return mean, scale * np.sqrt(np.mean((dev / scale) ** 2, axis=0))


def zscore_per_run(
    X: np.ndarray,
    lengths: np.ndarray,
    window: int = 1000,
    *,
    feature_names: Sequence[str] | None = None,
    run_ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, ZScoreInfo]:
    """Standardise every feature of every run with statistics of its first checkpoints.

    As in section 2.1 of the paper, run ``i`` and feature ``j`` are transformed as
    ``(x - m_ij) / s_ij`` with the mean and standard deviation (ddof=0) of the first
    ``min(T_i, window)`` checkpoints, which bounds the influence of run length.
    A feature with zero variance over that window is set to 0 for the whole run
    (never divided by zero), flagged in :attr:`ZScoreInfo.constant` and logged.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, d)
        Raw features, runs concatenated.
    lengths : numpy.ndarray, shape (N,)
    window : int
        Number of leading checkpoints per run used for the statistics.
    feature_names, run_ids : sequence of str, optional
        Used in :class:`ZScoreInfo` and the warning.

    Returns
    -------
    Z : numpy.ndarray, shape (n, d)
    info : ZScoreInfo
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise TrajectoryError(f"X must have shape (n, d), got shape {X.shape}")
    lengths = _check_lengths(lengths, X.shape[0])
    if int(window) < 1:
        raise TrajectoryError(f"window must be a positive number of checkpoints, got {window}")
    window = int(window)
    n_runs, d = lengths.size, X.shape[1]
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    runs = list(run_ids) if run_ids is not None else [str(i) for i in range(n_runs)]
    if len(names) != d or len(runs) != n_runs:
        raise TrajectoryError("feature_names/run_ids do not match the shape of X/lengths")

    Z = np.empty_like(X)
    means = np.empty((n_runs, d))
    stds = np.empty((n_runs, d))
    constant = np.empty((n_runs, d), dtype=bool)
    start = 0
    for i, length in enumerate(lengths):
        run = X[start : start + length]
        head = run[: min(length, window)]
        mean, std = _mean_std(head)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            j = int(np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))[0])
            raise TrajectoryError(
                f"feature '{names[j]}' in run '{runs[i]}' is too large to standardise "
                f"(|value| up to {np.max(np.abs(head[:, j])):.3g}); rescale it"
            )
        flat = (std == 0) | (std <= CONSTANT_RTOL * np.abs(mean))
        safe_std = np.where(flat, 1.0, std)
        Z[start : start + length] = np.where(flat, 0.0, (run - mean) / safe_std)
        means[i], stds[i], constant[i] = mean, np.where(flat, 0.0, std), flat
        start += length

    info = ZScoreInfo(window=window, means=means, stds=stds, constant=constant, feature_names=names, run_ids=runs)
    if constant.any():
        described = "; ".join(f"'{f}' in {len(r)} of {n_runs} run(s)" for f, r in info.constant_runs().items())
        logger.warning("constant feature(s) over the z-score window set to 0: %s", described)
    return Z, info


def split_runs(
    run_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split runs (not checkpoints) into training and held-out sets.

    The held-out share is ``round(val_fraction * N)`` runs, at least one, leaving
    at least one training run. The split depends only on the *set* of ids and the
    seed (ids are put in natural order before shuffling), so it is reproducible.

    Parameters
    ----------
    run_ids : sequence of str
    val_fraction : float
        In (0, 1).
    seed : int

    Returns
    -------
    train_ids, val_ids : list of str
        Each in the order of ``run_ids``.
    """
    ids = [str(r) for r in run_ids]
    if len(set(ids)) != len(ids):
        raise TrajectoryError("run ids must be unique")
    if not 0.0 < float(val_fraction) < 1.0:
        raise TrajectoryError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(ids) < 2:
        raise TrajectoryError(
            f"need at least 2 runs to split into training and held-out runs, got {len(ids)}; "
            "record more seeds"
        )
    n_val = min(max(1, int(np.floor(val_fraction * len(ids) + 0.5))), len(ids) - 1)
    ordered = sorted(ids, key=_natural_key)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    held_out = {ordered[i] for i in permutation[:n_val]}
    return [r for r in ids if r not in held_out], [r for r in ids if r in held_out]
