"""Reading and writing trajectory sets.

On disk a trajectory set is a directory of per-run Parquet files (our format, written
by :func:`save_trajectories` and by :mod:`bayes_trainmap.tasks`), a single Parquet or CSV
file, or a directory of the paper authors' per-run CSVs (:func:`import_paper_csvs`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayes_trainmap.core import storage
from bayes_trainmap.core.errors import TrajectoryError
from bayes_trainmap.core.runlog import RUN_LOG_SUFFIX, read_run_log
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    PARQUET_METADATA_KEY,
    RUN_COLUMN,
    SEED_COLUMN,
    STEP_COLUMN,
)
from bayes_trainmap.data.fitdir import CONFIG_FILE, DECODED_FILE
from bayes_trainmap.data.trajectories import (
    TrajectorySet,
    _natural_key,
)

logger = logging.getLogger(__name__)

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


def _csv_header(path: Path) -> list[str]:
    """The header row of a CSV file, read as written (pandas renames duplicates to ``x.1``)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _read_csv(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise TrajectoryError(f"file '{path}' is empty; expected a CSV header and one row per checkpoint")
    header = _csv_header(path)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise TrajectoryError(f"CSV file '{path}' repeats the column(s) {duplicated} in its header; keep one of each")
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in header[0])
        raise TrajectoryError(f"CSV file '{path}' looks {sep!r}-separated; expected comma-separated values")
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
    finished = {p.stem: p for p in parquet_files}
    logs = []
    for log in _visible_files(directory, RUN_LOG_SUFFIX):
        done = finished.get(log.stem)
        if done is None or log.stat().st_mtime > done.stat().st_mtime:
            logs.append(log)
    return logs


def _refuse_non_trajectory_dir(path: Path) -> None:
    """A fit directory, or a directory mixing Parquet and CSV runs, is not a trajectory set."""
    if (path / CONFIG_FILE).is_file() and (path / DECODED_FILE).is_file():  # manifest or not (0.1 fits too)
        raise TrajectoryError(
            f"'{path}' is a fit directory written by fit, not trajectories; pass --data the runs it was fitted "
            "on, or re-render it with 'python -m bayes_trainmap report'"
        )
    n_parquet, n_csv = len(_visible_files(path, ".parquet")), len(_visible_files(path, ".csv"))
    if n_parquet and n_csv:
        raise TrajectoryError(
            f"directory '{path}' mixes Parquet ({n_parquet}) and CSV ({n_csv}) run files; "
            "keep one format per directory"
        )


def _check_one_file_per_run(frames: list[pd.DataFrame], files: list[Path]) -> None:
    """Two files holding the same run id are an error, not one merged run."""
    owner: dict[str, Path] = {}
    for frame, file in zip(frames, files):
        for run in frame[RUN_COLUMN].astype(str).unique():
            if run in owner and owner[run].resolve() != file.resolve():
                raise TrajectoryError(
                    f"run '{run}' is in two files, '{owner[run].name}' and '{file.name}'; "
                    "each run must be in one file (a copy or a link of a run file?)"
                )
            if run in owner:
                raise TrajectoryError(f"run '{run}' is read twice from '{file}' (a link to the same file?)")
            owner[run] = file


def load_trajectories(path: str | os.PathLike) -> TrajectorySet:
    """Load a trajectory set from disk.

    Runs still being recorded (or whose training crashed) are read from their
    append-only logs ``run-<id>.jsonl`` (see :mod:`bayes_trainmap.core.runlog`); their
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
        _refuse_non_trajectory_dir(path)
        parquet_files = _visible_files(path, ".parquet")
        log_files = _in_progress_logs(path, parquet_files)
        if parquet_files or log_files:
            frames, metas = [], []
            stale = {p.stem for p in log_files}
            for file in [p for p in parquet_files if p.stem not in stale] + log_files:
                frame, meta = read_run_log(file) if file.suffix == RUN_LOG_SUFFIX else _read_parquet(file)
                if file.suffix == RUN_LOG_SUFFIX and len(frame) == 0:
                    logger.warning("skipping run log '%s': no checkpoint recorded yet", file)
                    continue
                _ensure_rows(frame, file)
                if RUN_COLUMN not in frame.columns:
                    frame = _single_run_frame(frame, file.stem, _seed_from_name(file.stem, len(frames)))
                frames.append(_with_step_column(frame, file))
                metas.append(meta)
            if not frames:
                raise TrajectoryError(f"directory '{path}' holds only run logs with no checkpoint yet")
            _check_one_file_per_run(frames, [p for p in parquet_files if p.stem not in stale] + log_files)
            metadata = {**_merge_run_metadata(frames, metas), "source_path": str(path)}
            return TrajectorySet(_fill_seeds(pd.concat(frames, ignore_index=True)), metadata)
        if _visible_files(path, ".csv"):
            return import_paper_csvs(path)
        raise TrajectoryError(f"directory '{path}' contains no .parquet or .csv trajectory files")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame, metadata = _read_parquet(path)
    elif suffix == RUN_LOG_SUFFIX:
        frame, metadata = read_run_log(path)
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
    _check_one_file_per_run(frames, files)
    combined = _fill_seeds(pd.concat(frames, ignore_index=True))
    return TrajectorySet(combined, {"source": "csv", "source_path": str(path)})


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def _safe_filename(run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).lstrip(".")
    return safe or "run"



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
            storage.write_parquet_atomic(path, table)
        else:
            storage.write_text_atomic(path, ts.frame.to_csv(index=False))
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
        storage.write_parquet_atomic(target, table)
        written.append(target)
    return written


