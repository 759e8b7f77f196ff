"""The trajectory-set container: checkpoint statistics of several runs in long format.

A *trajectory set* is long-format data with one row per checkpoint: ``run`` (str),
``seed`` (int), ``step`` (int, strictly increasing within a run), optionally
``epoch``, the weight statistics of appendix B (:data:`~bayes_trainmap.core.schema.STATISTIC_NAMES`)
and outcome columns (``eval_accuracy``, losses, ...). Runs may have different lengths.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import TrajectoryError
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)

logger = logging.getLogger(__name__)


#: Columns that identify a checkpoint rather than describe it.
IDENTIFIER_COLUMNS: tuple[str, ...] = (RUN_COLUMN, SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN)



def _natural_key(text: str) -> tuple:
    """Sort key that orders ``run_2`` before ``run_10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


class TrajectorySet:
    """Checkpoint statistics of several training runs in long format.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per checkpoint with at least ``run`` and ``step`` columns.
        Rows are grouped by run (runs in natural order, ``run_2`` before
        ``run_10``); the order of rows *within* a run is kept as given, so that
        :func:`validate` can report unsorted steps instead of hiding them.
    metadata : dict, optional
        Task name, hyperparameters and provenance (JSON-serialisable).

    Notes
    -----
    The frame is treated as immutable: methods return new objects.
    """

    def __init__(self, frame: pd.DataFrame, metadata: dict[str, Any] | None = None):
        if not isinstance(frame, pd.DataFrame):
            raise TrajectoryError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in (RUN_COLUMN, STEP_COLUMN) if c not in frame.columns]
        if missing:
            raise TrajectoryError(
                f"trajectory data is missing required column(s) {missing}; "
                f"expected long format with '{RUN_COLUMN}' and '{STEP_COLUMN}' columns"
            )
        frame = frame.copy()
        frame[RUN_COLUMN] = frame[RUN_COLUMN].astype(str)
        frame[STEP_COLUMN] = _integer_column(frame, STEP_COLUMN)
        if SEED_COLUMN in frame.columns:
            frame[SEED_COLUMN] = _integer_column(frame, SEED_COLUMN)
        run_order = sorted(frame[RUN_COLUMN].unique(), key=_natural_key)
        rank = frame[RUN_COLUMN].map({run: i for i, run in enumerate(run_order)})
        order = np.argsort(rank.to_numpy(), kind="stable")
        self._frame = frame.iloc[order].reset_index(drop=True)
        self._run_ids = [str(r) for r in run_order]
        counts = self._frame[RUN_COLUMN].value_counts()
        self._lengths = np.array([int(counts[r]) for r in self._run_ids], dtype=np.int64)
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- basic properties ----------------------------------------------------------
    @property
    def frame(self) -> pd.DataFrame:
        """The long-format frame (do not modify in place)."""
        return self._frame

    @property
    def run_ids(self) -> list[str]:
        """Run identifiers in the order used by every array method."""
        return list(self._run_ids)

    @property
    def n_runs(self) -> int:
        """Number of runs, N."""
        return len(self._run_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Checkpoints per run, shape (N,), in :attr:`run_ids` order."""
        return self._lengths.copy()

    @property
    def feature_columns(self) -> list[str]:
        """The weight statistics present, in :data:`schema.STATISTIC_NAMES` order."""
        return [c for c in STATISTIC_NAMES if c in self._frame.columns]

    @property
    def outcome_columns(self) -> list[str]:
        """Numeric columns that are neither identifiers nor weight statistics."""
        skip = set(IDENTIFIER_COLUMNS) | set(STATISTIC_NAMES)
        return [c for c in self._frame.columns if c not in skip and _is_numeric(self._frame[c])]

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        return (
            f"TrajectorySet(n_runs={self.n_runs}, n_checkpoints={len(self)}, "
            f"features={len(self.feature_columns)}, task={self.metadata.get('task')!r})"
        )

    # -- selection -----------------------------------------------------------------
    def subset(self, run_ids: Iterable[str]) -> "TrajectorySet":
        """The runs in ``run_ids`` (unknown ids raise :class:`TrajectoryError`)."""
        wanted = [str(r) for r in run_ids]
        unknown = sorted(set(wanted) - set(self._run_ids))
        if unknown:
            raise TrajectoryError(f"unknown run id(s) {unknown[:5]}; the set has {self.n_runs} runs")
        mask = self._frame[RUN_COLUMN].isin(wanted).to_numpy()
        return TrajectorySet(self._frame.loc[mask], self.metadata)

    def absent_statistics(self) -> list[str]:
        """The paper's statistics (:data:`STATISTIC_NAMES`) that no run of this set has."""
        return [s for s in STATISTIC_NAMES if s not in self._frame.columns]

    def resolve_features(self, features: Sequence[str] | None = None) -> list[str]:
        """Feature names to model: ``features`` checked against the frame, or by
        default the weight statistics present.

        Raises
        ------
        TrajectoryError
            If a requested column is missing or not numeric, or none is available.
        """
        if features is None:
            names = self.feature_columns
            if not names:
                raise TrajectoryError(
                    "no feature columns found: expected some of the statistics "
                    f"{', '.join(STATISTIC_NAMES)} (or choose columns with features=/--features); "
                    f"columns present: {list(self._frame.columns)}"
                )
        else:
            names = [str(f) for f in features]
            if not names:
                raise TrajectoryError("features must name at least one column")
            duplicated = sorted({f for f in names if names.count(f) > 1})
            if duplicated:
                raise TrajectoryError(f"feature(s) {duplicated} requested more than once")
            missing = [f for f in names if f not in self._frame.columns]
            if missing:
                raise TrajectoryError(
                    f"feature column(s) {missing} not found; columns present: {list(self._frame.columns)}"
                )
            reserved = [f for f in names if f in IDENTIFIER_COLUMNS]
            if reserved:
                raise TrajectoryError(f"column(s) {reserved} identify checkpoints and cannot be features")
        for name in names:
            column = self._frame[name]
            if not _is_numeric(column):
                bad = pd.to_numeric(column, errors="coerce").isna() & column.notna()
                example = column[bad].iloc[0] if bad.any() else column.iloc[0]
                raise TrajectoryError(
                    f"feature column '{name}' is not numeric (dtype {column.dtype}, "
                    f"e.g. value {example!r}); expected numbers"
                )
        return names

    # -- arrays --------------------------------------------------------------------
    def feature_matrix(self, features: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw feature values of all runs.

        Returns
        -------
        X : numpy.ndarray, shape (n, d)
            float64, runs concatenated in :attr:`run_ids` order.
        lengths : numpy.ndarray, shape (N,)
        """
        names = self.resolve_features(features)
        return self._frame[names].to_numpy(dtype=np.float64), self.lengths

    def steps(self) -> np.ndarray:
        """Training step of every checkpoint, shape (n,), int64."""
        return self._frame[STEP_COLUMN].to_numpy(dtype=np.int64)

    def outcome(self, name: str) -> np.ndarray:
        """Values of an outcome column, shape (n,), float64 (NaN where missing)."""
        if name not in self._frame.columns:
            raise TrajectoryError(
                f"outcome column '{name}' not found; available outcome columns: {self.outcome_columns}"
            )
        return pd.to_numeric(self._frame[name], errors="coerce").to_numpy(dtype=np.float64)

    def run_index(self) -> np.ndarray:
        """Index into :attr:`run_ids` of every checkpoint, shape (n,)."""
        return np.repeat(np.arange(self.n_runs), self._lengths)


def _integer_column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]`` as int64, accepting integral floats (CSV round trips)."""
    column = frame[name]
    if pd.api.types.is_integer_dtype(column) and not column.isna().any():
        return column.astype(np.int64)
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if not bad.any():
        as_float = values.to_numpy(dtype=np.float64)
        fractional = as_float != np.round(as_float)
        if not fractional.any():
            return pd.Series(as_float.astype(np.int64), index=column.index)
        bad = pd.Series(fractional, index=column.index)
    example = column[bad].iloc[0]
    run = frame.loc[bad, RUN_COLUMN].iloc[0] if RUN_COLUMN in frame.columns else "?"
    raise TrajectoryError(f"column '{name}' must hold integers; found {example!r} in run '{run}'")


