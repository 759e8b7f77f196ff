"""The fitted runs: one object for the data a fit modelled and how it decoded it.

:class:`FittedRuns` is produced by the ``fit`` pipeline and by opening a fit
directory (:meth:`bayes_trainmap.data.fitdir.FitDirectory.fitted_runs`), and consumed by
the analysis, the reports, the Bayesian propagation and the notebooks, so that every
consumer sees the same arrays in the same order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import FitDirectoryError
from bayes_trainmap.core.schema import RUN_COLUMN, STEP_COLUMN

__all__ = ["SPLIT_TRAIN", "SPLIT_VAL", "FittedRuns"]

#: Values of the per-run ``split`` labels.
SPLIT_TRAIN, SPLIT_VAL = "train", "val"
SPLIT_COLUMN, STATE_COLUMN = "split", "state"


@dataclass(frozen=True)
class FittedRuns:
    """The modelled runs, concatenated in ``run_ids`` order.

    Attributes
    ----------
    features : list of str, length d
        Model features, in column order of ``Z``.
    Z : numpy.ndarray, shape (n, d)
        z-scored features of every checkpoint (n = ``lengths.sum()``).
    lengths : numpy.ndarray of int64, shape (N,)
        Checkpoints per run.
    run_ids : list of str, length N
    steps : numpy.ndarray of int64, shape (n,)
        Training step of every checkpoint.
    outcomes : dict of str -> numpy.ndarray, shape (n,)
        Raw outcome columns (``eval_accuracy``, losses, ...).
    split : numpy.ndarray of str, shape (N,)
        ``"train"`` or ``"val"`` per run (the 80/20 split used for BIC).
    paths : numpy.ndarray of int64, shape (n,), or None
        Viterbi state of every checkpoint; None before decoding.
    """

    features: list[str]
    Z: np.ndarray
    lengths: np.ndarray
    run_ids: list[str]
    steps: np.ndarray
    outcomes: dict[str, np.ndarray] = field(default_factory=dict)
    split: np.ndarray | None = None
    paths: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, n_runs = int(np.sum(self.lengths)), len(self.run_ids)
        if self.Z.shape != (n, len(self.features)) or self.lengths.shape != (n_runs,) or self.steps.shape != (n,):
            raise ValueError(
                f"inconsistent fitted runs: Z {self.Z.shape}, {len(self.features)} features, "
                f"lengths {self.lengths.shape} for {n_runs} runs, steps {self.steps.shape}"
            )
        if self.paths is not None and self.paths.shape != (n,):
            raise ValueError(f"paths must have shape ({n},), got {self.paths.shape}")

    # -- derived views -------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        return len(self.run_ids)

    @property
    def offsets(self) -> np.ndarray:
        """Start of each run in the concatenated arrays, shape (N + 1,)."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def run_ids_in(self, split: str) -> list[str]:
        """Runs of one side of the split (``"train"`` or ``"val"``)."""
        return [r for r, s in zip(self.run_ids, self._split()) if s == split]

    def rows_in(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(Z rows, lengths)`` of the runs on one side of the split."""
        runs = self._split() == split
        return self.Z[np.repeat(runs, self.lengths)], self.lengths[runs]

    def with_paths(self, paths: np.ndarray) -> "FittedRuns":
        """A copy carrying decoded ``paths`` (shape (n,))."""
        return dataclasses.replace(self, paths=np.asarray(paths, dtype=np.int64))

    def _split(self) -> np.ndarray:
        return np.asarray(self.split if self.split is not None else [SPLIT_TRAIN] * self.n_runs)

    # -- the fit directory's tables --------------------------------------------------
    def _index_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                RUN_COLUMN: np.repeat(self.run_ids, self.lengths),
                STEP_COLUMN: self.steps,
                SPLIT_COLUMN: np.repeat(self._split(), self.lengths),
            }
        )

    def zscored_frame(self) -> pd.DataFrame:
        """``run, step, split``, the z-scored features and the raw outcome columns."""
        frame = self._index_frame()
        for j, name in enumerate(self.features):
            frame[name] = self.Z[:, j]
        for name, values in self.outcomes.items():
            frame[name] = values
        return frame

    def decoded_frame(self) -> pd.DataFrame:
        """``run, step, split, state`` for every checkpoint."""
        if self.paths is None:
            raise ValueError("the runs are not decoded yet")
        frame = self._index_frame()
        frame[STATE_COLUMN] = self.paths.astype(np.int64)
        return frame

    @classmethod
    def from_frames(
        cls, zscored: pd.DataFrame, features: list[str], decoded: pd.DataFrame | None = None
    ) -> "FittedRuns":
        """Rebuild the runs from :meth:`zscored_frame` (and :meth:`decoded_frame`)."""
        missing = [c for c in (RUN_COLUMN, STEP_COLUMN, *features) if c not in zscored.columns]
        if missing:
            raise FitDirectoryError(f"the z-scored table lacks column(s) {missing}")
        runs = zscored[RUN_COLUMN].astype(str)
        run_ids = list(dict.fromkeys(runs))
        lengths = runs.value_counts().reindex(run_ids).to_numpy(dtype=np.int64)
        split = None
        if SPLIT_COLUMN in zscored.columns:
            split = zscored.groupby(RUN_COLUMN, sort=False)[SPLIT_COLUMN].first().reindex(run_ids).to_numpy(dtype=str)
        reserved = {RUN_COLUMN, STEP_COLUMN, SPLIT_COLUMN, *features}
        outcomes = {c: zscored[c].to_numpy(dtype=float) for c in zscored.columns if c not in reserved}
        paths = None
        if decoded is not None:
            if len(decoded) != len(zscored) or STATE_COLUMN not in decoded.columns:
                raise FitDirectoryError("the decoded table does not match the z-scored table")
            paths = decoded[STATE_COLUMN].to_numpy(dtype=np.int64)
        return cls(
            features=list(features),
            Z=zscored[list(features)].to_numpy(dtype=np.float64),
            lengths=lengths,
            run_ids=run_ids,
            steps=zscored[STEP_COLUMN].to_numpy(dtype=np.int64),
            outcomes=outcomes,
            split=split,
            paths=paths,
        )

    @classmethod
    def from_arrays(
        cls,
        Z: np.ndarray,
        lengths: np.ndarray,
        run_ids: list[str],
        steps: np.ndarray,
        outcomes: Mapping[str, np.ndarray] | None = None,
        *,
        features: list[str] | None = None,
        split=None,
        paths: np.ndarray | None = None,
    ) -> "FittedRuns":
        """Build from loose arrays (shapes as in the class docstring)."""
        Z = np.asarray(Z, dtype=np.float64)
        return cls(
            features=list(features) if features is not None else [f"f{j}" for j in range(Z.shape[1])],
            Z=Z,
            lengths=np.asarray(lengths, dtype=np.int64),
            run_ids=[str(r) for r in run_ids],
            steps=np.asarray(steps, dtype=np.int64),
            outcomes={k: np.asarray(v, dtype=float) for k, v in (outcomes or {}).items()},
            split=None if split is None else np.asarray(split, dtype=str),
            paths=None if paths is None else np.asarray(paths, dtype=np.int64),
        )
