"""Atomic per-run Parquet files in the trajectory format (see ``bayes_trainmap.core.schema``).

One file holds one run in long format (one row per checkpoint: ``run``, ``seed``,
``step``, ``epoch``, the 14 statistics, the outcomes). Run-level metadata (task,
variant, configuration, divergence) travels as JSON in the Parquet schema metadata
under ``schema.PARQUET_METADATA_KEY``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core import storage
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    OUTCOME_COLUMNS,
    PARQUET_METADATA_KEY,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)

#: Column order of a run written by this package (outcomes beyond these follow).
BASE_COLUMNS: tuple[str, ...] = (RUN_COLUMN, SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN, *STATISTIC_NAMES, *OUTCOME_COLUMNS)

#: Prefix of the temporary files that become run files on ``os.replace``.
TEMP_PREFIX = ".tmp-"


def run_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A run's rows as a DataFrame with the standard column order and dtypes."""
    present = list(dict.fromkeys(key for row in rows for key in row))  # pandas' own column order
    if not present:
        present = [c for c in BASE_COLUMNS if c != EPOCH_COLUMN]
    ordered = [c for c in BASE_COLUMNS if c in present]
    frame = pd.DataFrame(rows, columns=ordered + [c for c in present if c not in ordered])
    integer = (SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN)
    # cast only the columns that need it, one by one: a whole-frame astype costs ~10 ms
    # per run (per-column dtype resolution and a concatenation), which adds up over an
    # ensemble's runs
    for column, dtype in frame.dtypes.items():
        wanted = str if column == RUN_COLUMN else np.dtype("int64" if column in integer else "float64")
        if column == RUN_COLUMN or dtype != wanted:
            frame[column] = frame[column].astype(wanted)
    return frame


def write_run(frame: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any]) -> Path | str:
    """Write one run atomically: a temporary file in the same directory, then ``os.replace``.

    ``path`` may also be an object-store URI (``s3://bucket/prefix/run-0.parquet``):
    the object is then written in place, which is atomic there (see
    :mod:`bayes_trainmap.core.storage`), and the URI is returned.

    Parameters
    ----------
    frame : DataFrame
        Long-format rows of one run (see :func:`run_frame`).
    path : path-like
        Destination ``.parquet`` file; its directory must exist.
    metadata : dict
        JSON-serialisable run metadata, stored under ``PARQUET_METADATA_KEY``.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    existing = dict(table.schema.metadata or {})
    existing[PARQUET_METADATA_KEY] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(existing)
    if not storage.is_local(path):
        storage.write_parquet_atomic(path, table)
        return os.fspath(path)
    path = Path(storage.local_path(path)) if "://" in os.fspath(path) else Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_run(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a run file written by :func:`write_run`: ``(frame, metadata)``."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise TaskError(f"cannot read run file {path}: {exc}") from exc
    raw = (table.schema.metadata or {}).get(PARQUET_METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    return table.to_pandas(), metadata
