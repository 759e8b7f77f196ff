"""Trajectory data model: load, save, validate, z-score and split training runs.

A *trajectory set* is long-format data with one row per checkpoint: ``run`` (str),
``seed`` (int), ``step`` (int, strictly increasing within a run), optionally
``epoch``, the weight statistics of appendix B (:data:`schema.STATISTIC_NAMES`)
and outcome columns (``eval_accuracy``, losses, ...). On disk it is a directory
of per-run Parquet files (our format, written by :func:`save_trajectories` and by
``tasks``), a single Parquet or CSV file, or a directory of the paper authors'
per-run CSVs (:func:`import_paper_csvs`). Runs may have different lengths.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayes_trainmap.errors import TrajectoryError
from bayes_trainmap.runlog import apply_umask
from bayes_trainmap.schema import (
    EPOCH_COLUMN,
    PARQUET_METADATA_KEY,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)

__all__ = [
    "IDENTIFIER_COLUMNS",
    "DEMO_DATA_DIR",
    "TrajectorySet",
    "ZScoreInfo",
    "available_demos",
    "demo_trajectories",
    "import_paper_csvs",
    "load_trajectories",
    "save_trajectories",
    "split_runs",
    "validate",
    "zscore_per_run",
]

logger = logging.getLogger(__name__)

#: Columns that identify a checkpoint rather than describe it.
IDENTIFIER_COLUMNS: tuple[str, ...] = (RUN_COLUMN, SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN)

#: Where the shipped demo trajectory sets live (one sub-directory per set).
DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo_data"

#: Demo sets tried, in order, for ``demo_trajectories("default")``.
DEFAULT_DEMOS: tuple[str, ...] = ("sparse_parities", "digits")

#: A feature is constant within a run when its standard deviation over the
#: z-scoring window is at most this fraction of its absolute mean (or exactly 0):
#: the mean of identical floats can be off by an ulp, so "== 0" alone is fragile.
CONSTANT_RTOL = 1e-10


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
# reading
# ----------------------------------------------------------------------------------
def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    if path.stat().st_size == 0:
        raise TrajectoryError(f"file '{path}' is empty; expected a Parquet file of checkpoints")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TrajectoryError(f"cannot read Parquet file '{path}': {exc}") from exc
    metadata: dict[str, Any] = {}
    raw = (table.schema.metadata or {}).get(PARQUET_METADATA_KEY)
    if raw is not None:
        try:
            loaded = json.loads(raw)
            metadata = loaded if isinstance(loaded, dict) else {"value": loaded}
        except ValueError:
            logger.warning("ignoring unreadable %s metadata in '%s'", PARQUET_METADATA_KEY.decode(), path)
    return table.to_pandas(), metadata


def _read_csv(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise TrajectoryError(f"file '{path}' is empty; expected a CSV header and one row per checkpoint")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrajectoryError(f"cannot read CSV file '{path}': {exc}") from exc
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:")]  # a saved pandas index
    return frame.drop(columns=unnamed)


def _ensure_rows(frame: pd.DataFrame, path: Path) -> None:
    if len(frame) == 0:
        raise TrajectoryError(f"file '{path}' contains no checkpoints (no data rows)")


def _with_step_column(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Use ``epoch`` as the step when a file has no ``step`` column (paper layout)."""
    if STEP_COLUMN in frame.columns:
        return frame
    if EPOCH_COLUMN in frame.columns:
        frame = frame.copy()
        frame[STEP_COLUMN] = frame[EPOCH_COLUMN]
        return frame
    raise TrajectoryError(
        f"file '{path}' has neither a '{STEP_COLUMN}' nor an '{EPOCH_COLUMN}' column; "
        f"columns present: {list(frame.columns)}"
    )


def _seed_from_name(name: str, fallback: int) -> int:
    digits = re.findall(r"\d+", name)
    return int(digits[-1]) if digits else fallback


def _single_run_frame(frame: pd.DataFrame, run_id: str, seed: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, RUN_COLUMN, run_id)
    if SEED_COLUMN not in frame.columns:
        frame.insert(1, SEED_COLUMN, seed)
    return frame


def _visible_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(
        (p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == suffix and not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )


def _fill_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every run a seed when the data has none: the index of the run."""
    if SEED_COLUMN in frame.columns:
        return frame
    runs = sorted(frame[RUN_COLUMN].astype(str).unique(), key=_natural_key)
    frame = frame.copy()
    frame.insert(1, SEED_COLUMN, frame[RUN_COLUMN].astype(str).map({r: i for i, r in enumerate(runs)}))
    return frame


def _merge_run_metadata(frames: list[pd.DataFrame], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Metadata shared by all files at the top level; keys whose values differ
    between files (e.g. a per-run ``diverged`` flag) under ``run_metadata[run]``."""
    keys = set().union(*metas) if metas else set()
    shared = {k: metas[0][k] for k in keys if all(k in m and m[k] == metas[0][k] for m in metas)}
    varying = keys - set(shared)
    merged = dict(sorted(shared.items()))
    if varying:
        merged["run_metadata"] = {
            str(frame[RUN_COLUMN].iloc[0]): {k: meta[k] for k in sorted(varying) if k in meta}
            for frame, meta in zip(frames, metas)
        }
    return merged


def _in_progress_logs(directory: Path, parquet_files: list[Path]) -> list[Path]:
    """Run logs (``run-<id>.jsonl``) of runs still training or crashed: those without a
    Parquet file of the same name, or whose log is newer than it (a re-run in progress)."""
    from bayes_trainmap.runlog import RUN_LOG_SUFFIX

    finished = {p.stem: p for p in parquet_files}
    logs = []
    for log in _visible_files(directory, RUN_LOG_SUFFIX):
        done = finished.get(log.stem)
        if done is None or log.stat().st_mtime > done.stat().st_mtime:
            logs.append(log)
    return logs


def _read_log(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    from bayes_trainmap.runlog import read_run_log

    return read_run_log(path)


def load_trajectories(path: str | os.PathLike) -> TrajectorySet:
    """Load a trajectory set from disk.

    Runs still being recorded (or whose training crashed) are read from their
    append-only logs ``run-<id>.jsonl`` (see :mod:`bayes_trainmap.runlog`); their
    metadata say ``incomplete: true`` (under ``run_metadata`` when other runs are complete).

    Parameters
    ----------
    path : path-like
        A directory of per-run Parquet files (and/or in-progress ``.jsonl`` run logs);
        a ``.jsonl`` run log; a directory of CSV files (one per run:
        ours with a ``run`` column, or the paper authors' layout without one, where
        the run id is the file name); or a single ``.parquet`` / ``.csv`` file
        (a file without a ``run`` column is one run named after the file).

    Returns
    -------
    TrajectorySet
        Not yet validated for modelling: call :func:`validate`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TrajectoryError
        For empty or unreadable files and missing required columns.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trajectory data not found: '{path}' does not exist")
    if path.is_dir():
        parquet_files = _visible_files(path, ".parquet")
        log_files = _in_progress_logs(path, parquet_files)
        if parquet_files or log_files:
            frames, metas = [], []
            stale = {p.stem for p in log_files}
            for file in [p for p in parquet_files if p.stem not in stale] + log_files:
                frame, meta = _read_log(file) if file.suffix == ".jsonl" else _read_parquet(file)
                if file.suffix == ".jsonl" and len(frame) == 0:
                    logger.warning("skipping run log '%s': no checkpoint recorded yet", file)
                    continue
                _ensure_rows(frame, file)
                if RUN_COLUMN not in frame.columns:
                    frame = _single_run_frame(frame, file.stem, _seed_from_name(file.stem, len(frames)))
                frames.append(_with_step_column(frame, file))
                metas.append(meta)
            if not frames:
                raise TrajectoryError(f"directory '{path}' holds only run logs with no checkpoint yet")
            metadata = {**_merge_run_metadata(frames, metas), "source_path": str(path)}
            return TrajectorySet(_fill_seeds(pd.concat(frames, ignore_index=True)), metadata)
        if _visible_files(path, ".csv"):
            return import_paper_csvs(path)
        raise TrajectoryError(f"directory '{path}' contains no .parquet or .csv trajectory files")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame, metadata = _read_parquet(path)
    elif suffix == ".jsonl":
        frame, metadata = _read_log(path)
    elif suffix == ".csv":
        frame, metadata = _read_csv(path), {}
    else:
        raise TrajectoryError(f"unsupported trajectory file '{path}': expected a .parquet, .csv or .jsonl file, or a directory")
    _ensure_rows(frame, path)
    frame = _with_step_column(frame, path)
    if RUN_COLUMN not in frame.columns:
        frame = _single_run_frame(frame, path.stem, _seed_from_name(path.stem, 0))
    return TrajectorySet(_fill_seeds(frame), {**metadata, "source_path": str(path)})


def import_paper_csvs(path: str | os.PathLike) -> TrajectorySet:
    """Import CSVs in the paper authors' layout: one file per run.

    Each file holds the statistic columns (``l1, l2, trace, spectral, ...``) and a
    ``step`` or ``epoch`` column; the run id is the file name without ``.csv`` and
    the seed is the last number in it (else the file's index). Files that carry a
    ``run`` column (our own CSV layout) keep their run ids.

    Parameters
    ----------
    path : path-like
        A directory of ``.csv`` files, or one ``.csv`` file.

    Returns
    -------
    TrajectorySet
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trajectory data not found: '{path}' does not exist")
    files = [path] if path.is_file() else _visible_files(path, ".csv")
    if not files:
        raise TrajectoryError(f"directory '{path}' contains no .csv files")
    frames = []
    for index, file in enumerate(files):
        frame = _read_csv(file)
        _ensure_rows(frame, file)
        frame = _with_step_column(frame, file)
        if RUN_COLUMN not in frame.columns:
            frame = _single_run_frame(frame, file.stem, _seed_from_name(file.stem, index))
        frames.append(frame)
    combined = _fill_seeds(pd.concat(frames, ignore_index=True))
    return TrajectorySet(combined, {"source": "csv", "source_path": str(path)})


#: Name of the generated demo: simulated runs with planted states, always available.
SIMULATED_DEMO = "simulated"


def available_demos() -> list[str]:
    """Names of the demo trajectory sets: those shipped, then ``"simulated"``."""
    shipped = []
    if DEMO_DATA_DIR.is_dir():
        shipped = sorted(p.name for p in DEMO_DATA_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    return shipped + [SIMULATED_DEMO]


def demo_trajectories(name: str = "default") -> TrajectorySet:
    """A demo trajectory set.

    Parameters
    ----------
    name : str
        A set shipped in ``bayes_trainmap/demo_data/<name>/`` (recorded runs of a
        built-in task), ``"simulated"`` (40 runs generated by
        :func:`bayes_trainmap.simulate.simulate_training_runs` with a planted
        path, fork and detour state), or ``"default"``: the first shipped set of
        :data:`DEFAULT_DEMOS`, else any shipped set, else ``"simulated"``.
    """
    available = available_demos()
    shipped = available[:-1]
    if name == "default":
        preferred = [n for n in DEFAULT_DEMOS if n in shipped] or shipped
        if not preferred:
            logger.warning("no recorded demo trajectories are shipped; using simulated runs with planted states")
        name = preferred[0] if preferred else SIMULATED_DEMO
    if name not in available:
        raise TrajectoryError(f"unknown demo data set {name!r}; available: {', '.join(available)}")
    if name == SIMULATED_DEMO:
        from bayes_trainmap.simulate import simulate_training_runs

        simulated = simulate_training_runs(random_state=0)
        ts = TrajectorySet(simulated.frame, {**simulated.planted["metadata"], "source": "simulated"})
    else:
        ts = load_trajectories(DEMO_DATA_DIR / name)
    ts.metadata.setdefault("demo", name)
    return ts


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def _safe_filename(run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).lstrip(".")
    return safe or "run"


def _atomic_write(target: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp_name))
        apply_umask(tmp_name)  # mkstemp makes 0600; the file gets the user's usual permissions
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _table_with_metadata(frame: pd.DataFrame, metadata: dict[str, Any]) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    encoded = json.dumps(metadata, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_METADATA_KEY: encoded})


def save_trajectories(ts: TrajectorySet, path: str | os.PathLike) -> list[Path]:
    """Write a trajectory set; every file is written atomically (temp file, then rename).

    Parameters
    ----------
    ts : TrajectorySet
    path : path-like
        A directory (created if needed) receiving one ``<run>.parquet`` per run,
        with ``ts.metadata`` as JSON in the Parquet metadata under
        :data:`schema.PARQUET_METADATA_KEY`; or a single ``.parquet`` file (same
        metadata) or ``.csv`` file (no metadata).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    path = Path(path)
    metadata = {k: v for k, v in ts.metadata.items() if k != "source_path"}
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            table = _table_with_metadata(ts.frame, metadata)
            _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        else:
            _atomic_write(path, lambda tmp: ts.frame.to_csv(tmp, index=False))
        return [path]
    if path.exists() and not path.is_dir():
        raise TrajectoryError(f"cannot write trajectories to '{path}': it exists and is not a directory")
    names = [_safe_filename(r) + ".parquet" for r in ts.run_ids]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TrajectoryError(f"run ids map to the same file name(s) {clashes}; rename the runs")
    path.mkdir(parents=True, exist_ok=True)
    written = []
    frame = ts.frame
    offsets = np.concatenate([[0], np.cumsum(ts.lengths)])
    for i, name in enumerate(names):
        table = _table_with_metadata(frame.iloc[offsets[i] : offsets[i + 1]], metadata)
        target = path / name
        _atomic_write(target, lambda tmp, table=table: pq.write_table(table, tmp))
        written.append(target)
    return written


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
        mean = head.mean(axis=0)
        std = head.std(axis=0)
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
