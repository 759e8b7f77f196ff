"""Append-only logs of runs that are still training (or that crashed).

A recorder (``bayes_trainmap.tasks.recorder.TrajectoryRecorder``) appends one JSON line per
recorded checkpoint to ``run-<id>.jsonl`` while the run trains, and at a normal
``close()`` writes ``run-<id>.parquet`` atomically and removes the log. A run
that crashes keeps its log: every line written before the crash can be read, and
:func:`read_run_log` marks it ``incomplete``.

Why a JSON-lines sidecar rather than Parquet parts: a Parquet file cannot be
appended to, so recording as you go would mean one small file per flush (many
files per run, a compaction step, and a reader racing a half-written part).
Appending one line is a single ``write`` of a few hundred bytes, a reader only has
to drop a last line that is not yet complete, and Python's ``repr`` of a float
round-trips exactly, so the final Parquet file holds the same numbers the log did.

Format: the first line is ``{"header": {...run metadata...}}``; every other line
is either a row ``{"row": {column: value}}`` or a status
``{"status": {"state": "failed", "error": "..."}}`` written when the training
loop raised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bayes_trainmap.core.errors import TrajectoryError
from bayes_trainmap.core.schema import RUN_COLUMN
from bayes_trainmap.core.storage import to_jsonable

__all__ = [
    "RUN_LOG_SUFFIX",
    "RunLogWriter",
    "check_run_id",
    "read_run_log",
]

#: File suffix of an in-progress run log.
RUN_LOG_SUFFIX = ".jsonl"


def check_run_id(run: str) -> str:
    """Return ``run`` if it is safe as a file-name component, else raise.

    A run id becomes the file name ``run-<id>.parquet`` inside the output folder,
    so it must not contain a path separator, be ``.``/``..``, be empty, or hold a
    NUL or other control character (``"x/../../escaped"``, ``"/abs"``, ``"a/b"``
    are refused).

    Raises
    ------
    TrajectoryError
        Naming the id and why it is refused.
    """
    text = str(run)
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if not text or text.strip() != text or text in (".", ".."):
        raise TrajectoryError(f"run id {text!r} is not a usable file name (empty, blank-padded, '.' or '..')")
    if any(s in text for s in separators):
        raise TrajectoryError(
            f"run id {text!r} contains a path separator; a run id names one file inside the output folder"
        )
    if any(ord(c) < 32 for c in text):
        raise TrajectoryError(f"run id {text!r} contains a control character")
    return text




class RunLogWriter:
    """Append rows of one run to a JSON-lines log, flushed after every row.

    Parameters
    ----------
    path : path-like
        The log file (``run-<id>.jsonl``); created (truncated) on construction.
    metadata : dict
        Run metadata for the header line.

    Notes
    -----
    Every :meth:`append` is followed by ``flush()``, so a killed process loses at
    most the row being written; :meth:`close` also ``fsync``s.
    """

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, Any]):
        self.path = Path(path)
        self._handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - kept open while the run trains
        self._write({"header": dict(metadata)})

    def _write(self, obj: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps(obj, allow_nan=True, default=str) + "\n")
        self._handle.flush()

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row (column -> scalar)."""
        self._write({"row": {k: to_jsonable(v) for k, v in row.items()}})

    def mark_failed(self, error: str) -> None:
        """Record that the training loop raised (the rows stay readable)."""
        self._write({"status": {"state": "failed", "error": str(error)}})

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


def read_run_log(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read an in-progress or crashed run log: ``(frame, metadata)``.

    A last line without its newline (the process was killed while writing it) is
    ignored. The metadata are the header's, with ``incomplete=True`` (the run has
    no final Parquet file), ``n_rows`` and, if the loop raised, ``failed=True`` and
    ``error``.

    Raises
    ------
    TrajectoryError
        If the file is empty, has no header, or a complete line is not JSON.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is still being written
    if not complete:
        raise TrajectoryError(f"run log '{path}' has no complete line yet (no header)")
    metadata: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrajectoryError(f"run log '{path}' line {number} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise TrajectoryError(f"run log '{path}' line {number} is not a JSON object")
        if number == 1:
            if not isinstance(record.get("header"), dict):
                raise TrajectoryError(f"run log '{path}' does not start with a header line")
            metadata = dict(record["header"])
        elif isinstance(record.get("row"), dict):
            rows.append(record["row"])
        elif isinstance(record.get("status"), dict) and record["status"].get("state") == "failed":
            metadata["failed"] = True
            metadata["error"] = record["status"].get("error")
    metadata["incomplete"] = True
    metadata["n_rows"] = len(rows)
    frame = pd.DataFrame(rows)
    if RUN_COLUMN in frame.columns:
        frame[RUN_COLUMN] = frame[RUN_COLUMN].astype(str)
    return frame, metadata
