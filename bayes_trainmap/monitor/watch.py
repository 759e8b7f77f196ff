"""Following a folder of runs as they train, and rendering their status.

:class:`RunWatcher` rereads the run files of a folder (finished ``run-*.parquet``
and in-progress ``run-*.jsonl`` logs, see :mod:`bayes_trainmap.core.runlog`) on every
:meth:`~RunWatcher.poll`, feeds the checkpoints it has not seen yet to one
:class:`~bayes_trainmap.monitor.online.RunMonitor` per run, and
:func:`status_table` renders one line per run in at most 80 columns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import BayesTrainmapError, TrajectoryError
from bayes_trainmap.core.runlog import RUN_LOG_SUFFIX, read_run_log
from bayes_trainmap.core.schema import RUN_COLUMN, STEP_COLUMN
from bayes_trainmap.monitor.model import MapModel
from bayes_trainmap.monitor.online import RunMonitor, RunStatus

__all__ = ["RunWatcher", "run_files", "status_table"]

logger = logging.getLogger(__name__)


def run_files(directory: str | os.PathLike) -> dict[str, Path]:
    """The newest file of every run in ``directory``: ``{file stem: path}``.

    A run has a ``.parquet`` file once finished and a ``.jsonl`` log while training;
    when both exist the newer one wins (a re-run in progress).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TrajectoryError(f"run directory '{directory}' does not exist")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix not in (".parquet", RUN_LOG_SUFFIX):
            continue
        other = found.get(path.stem)
        if other is None or path.stat().st_mtime > other.stat().st_mtime:
            found[path.stem] = path
    return found


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == RUN_LOG_SUFFIX:
        return read_run_log(path)[0]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


class RunWatcher:
    """Incremental monitoring of every run in a folder.

    Parameters
    ----------
    directory : path-like
    model : MapModel
    normalization : {"blend", "prefix", "reference"}
    """

    def __init__(self, directory: str | os.PathLike, model: MapModel, normalization: str = "blend"):
        self.directory = Path(directory)
        self.model = model
        self.normalization = normalization
        self.monitors: dict[str, RunMonitor] = {}
        self.seen: dict[str, int] = {}
        self.complete: dict[str, bool] = {}
        self.problems: dict[str, str] = {}

    def poll(self) -> dict[str, RunStatus]:
        """Read new checkpoints of every run; return the latest status per run."""
        for stem, path in run_files(self.directory).items():
            try:
                frame = _read(path)
            except (OSError, BayesTrainmapError, ValueError) as exc:
                self.problems[stem] = " ".join(str(exc).split())
                continue
            missing = [f for f in self.model.features if f not in frame.columns]
            if len(frame) and missing:
                self.problems[stem] = f"missing feature column(s) {missing}"
                continue
            run = str(frame[RUN_COLUMN].iloc[0]) if len(frame) and RUN_COLUMN in frame.columns else stem
            done = self.seen.get(run, 0)
            if len(frame) < done:  # the run was restarted from scratch
                self.monitors.pop(run, None)
                done = 0
            monitor = self.monitors.setdefault(run, RunMonitor(self.model, self.normalization))
            outcome = self.model.outcome
            X = frame[self.model.features].to_numpy(dtype=float)
            steps = frame[STEP_COLUMN].to_numpy(dtype=np.int64)
            values = frame[outcome].to_numpy(dtype=float) if outcome in frame.columns else None
            for t in range(done, len(frame)):
                if not np.all(np.isfinite(X[t])):
                    self.problems[run] = f"non-finite feature value at step {steps[t]}"
                    break
                monitor.update(X[t], int(steps[t]), None if values is None else float(values[t]))
                done = t + 1
            self.seen[run] = done
            self.complete[run] = path.suffix == ".parquet"
            self.problems.pop(stem, None)
        return {run: m.status for run, m in self.monitors.items() if m.status is not None}


def _steps(value: float | None) -> str:
    return ">budget" if value is None else f"{value:,.0f}"


def status_table(watcher: RunWatcher, width: int = 80):
    """A ``rich`` table of the runs' status that fits ``width`` columns."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{watcher.directory} vs {watcher.model.path}", width=width, title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for name, justify in (("run", "left"), ("step", "right"), ("state", "right"), ("alert", "left"),
                          ("conv. step [90%]", "right"), ("P(conv)", "right"), ("P(stuck)", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for run in sorted(watcher.monitors):
        monitor = watcher.monitors[run]
        status = monitor.status
        if status is None:
            continue
        alert = "detour" if status.in_detour else ""
        if status.new_edge is not None:
            alert = f"new {status.new_edge[0]}->{status.new_edge[1]}"
        if status.converged_step is not None:
            forecast, p_conv, p_stuck = f"done {status.converged_step:,}", "1.00", "0.00"
        elif status.forecast is None:
            forecast, p_conv, p_stuck = "-", "-", "-"
        else:
            lo, hi = status.predicted_interval(given_converge=True)
            forecast = f"{_steps(status.predicted_step(given_converge=True))} [{_steps(lo)}, {_steps(hi)}]"
            p_conv, p_stuck = f"{status.forecast.p_converge:.2f}", f"{status.forecast.p_stuck:.2f}"
        mark = "" if watcher.complete.get(run) else "*"
        table.add_row(f"{run}{mark}", f"{status.step:,}", f"{status.state} ({status.filtered[status.state]:.2f})",
                      alert, forecast, p_conv, p_stuck)
    table.caption = ("conv. step: median and 90% interval if it converges within the budget; P(conv): that it "
                     "does; P(stuck): not converged at the budget's end, in a state no converged run ends in; "
                     "* still training (or crashed)") + "".join(
        f"; {run}: {why}" for run, why in sorted(watcher.problems.items()))
    return table
