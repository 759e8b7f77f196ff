"""Recording trajectories from any training loop, or from saved checkpoints.

Inside your own loop::

    with TrajectoryRecorder(model, "trajectories/", run="seed-0", seed=0, every=100,
                            metadata={"task": "my_task", "lr": 1e-3}) as rec:
        for step in range(n_steps + 1):
            ...                                  # train
            if rec.due(step):                    # skip costly evaluation off-checkpoint
                rec.log(step, eval_accuracy=acc, train_loss=loss)

writes ``trajectories/run-seed-0.parquet`` atomically when the block exits normally
(nothing is written if it raises). From a directory of saved state dicts::

    frame = trajectory_from_checkpoints("ckpts/", model_fn=MyNet, run="seed-0")
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)
from bayes_trainmap.core.version import __version__

from .stats import ParameterSelection, Selector, resolve_selection, statistics_tensor
from .trajectory_io import run_frame, write_run

logger = logging.getLogger(__name__)

_RESERVED = {RUN_COLUMN, SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN, *STATISTIC_NAMES}


def _package_version() -> str:
    return __version__


def _run_path(out: str | os.PathLike, run: str) -> Path:
    out = Path(out)
    if out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / f"run-{run}.parquet"


def _stats_row(state: Mapping[str, torch.Tensor], selection: ParameterSelection) -> dict[str, float]:
    stacked = {n: state[n].detach().unsqueeze(0) for n in selection.names}
    values = statistics_tensor(stacked, selection)[0].tolist()
    return dict(zip(STATISTIC_NAMES, values))


class TrajectoryRecorder:
    """Record the 14 weight statistics and outcomes of one run every ``every`` steps.

    Parameters
    ----------
    model : nn.Module
        The model being trained (read at each recorded step, never modified).
    out : path-like
        A directory (the run goes to ``out/run-<run>.parquet``) or a ``.parquet`` file.
    run : str, optional
        Run id (the ``run`` column); defaults to ``seed-<seed>``.
    seed : int
        The run's seed (the ``seed`` column).
    every : int
        Record only steps that are multiples of ``every`` (and steps logged with ``force=True``).
    metadata : dict, optional
        JSON-serialisable run metadata (task name, hyperparameters), stored in the file.
    selection : ParameterSelection or callable, optional
        Which parameters are weight matrices and biases; default rule otherwise.

    Notes
    -----
    Once the model's weights or a logged value stop being finite, the run is marked
    diverged (``metadata["diverged"] = True``, ``metadata["diverged_step"]``) and
    later steps are ignored; the rows before remain.
    """

    def __init__(
        self,
        model: nn.Module,
        out: str | os.PathLike,
        *,
        run: str | None = None,
        seed: int = 0,
        every: int = 1,
        metadata: Mapping[str, Any] | None = None,
        selection: Selector | None = None,
    ):
        if not isinstance(every, int) or every < 1:
            raise TaskError(f"every must be a positive integer, got {every!r}")
        self.model = model
        self.seed = int(seed)
        self.run = str(run) if run is not None else f"seed-{self.seed}"
        self.every = every
        self.path = _run_path(out, self.run)
        self.metadata = dict(metadata or {})
        _, self.selection = resolve_selection(model, selection)
        self.rows: list[dict[str, Any]] = []
        self.diverged_step: int | None = None
        self.closed = False

    def due(self, step: int) -> bool:
        """Whether :meth:`log` would record ``step``."""
        return step % self.every == 0 and self.diverged_step is None

    def log(self, step: int, *, epoch: int | None = None, force: bool = False, **outcomes: float) -> bool:
        """Record ``step`` if it is due (or ``force``); returns whether a row was written.

        Parameters
        ----------
        step : int
            Strictly increasing across recorded calls.
        epoch : int, optional
        force : bool
            Record even if ``step`` is not a multiple of ``every`` (e.g. the last step).
        **outcomes : float
            Outcome columns, e.g. ``eval_accuracy=0.93, train_loss=0.2``.
        """
        if self.closed:
            raise TaskError("this recorder is closed")
        if not (force or step % self.every == 0) or self.diverged_step is not None:
            return False
        clash = _RESERVED.intersection(outcomes)
        if clash:
            raise TaskError(f"outcome names clash with reserved columns: {', '.join(sorted(clash))}")
        if self.rows and step <= self.rows[-1][STEP_COLUMN]:
            raise TaskError(f"steps must increase: got {step} after {self.rows[-1][STEP_COLUMN]}")
        values = {k: float(v) for k, v in outcomes.items()}
        params_finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        stats = _stats_row(self.model.state_dict(), self.selection) if params_finite else {}
        if not params_finite or not all(math.isfinite(v) for v in [*stats.values(), *values.values()]):
            self.diverged_step = int(step)
            logger.warning("run %s diverged at step %d (non-finite weights or outcomes)", self.run, step)
            return False
        row: dict[str, Any] = {RUN_COLUMN: self.run, SEED_COLUMN: self.seed, STEP_COLUMN: int(step)}
        if epoch is not None:
            row[EPOCH_COLUMN] = int(epoch)
        row.update(stats)
        row.update(values)
        self.rows.append(row)
        return True

    @property
    def frame(self) -> pd.DataFrame:
        """The rows recorded so far."""
        return run_frame(self.rows) if self.rows else pd.DataFrame()

    def close(self) -> Path:
        """Write the run atomically and return its path (idempotent)."""
        if not self.closed:
            if not self.rows:
                raise TaskError(f"run {self.run}: nothing was recorded, refusing to write an empty run")
            metadata = {
                **self.metadata,
                "run": self.run,
                "seed": self.seed,
                "diverged": self.diverged_step is not None,
                "diverged_step": self.diverged_step,
                "record_every": self.every,
                "package_version": _package_version(),
            }
            write_run(self.frame, self.path, metadata)
            self.closed = True
        return self.path

    def __enter__(self) -> "TrajectoryRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.closed = True
            logger.warning("run %s not written: the training loop raised %s", self.run, exc_type.__name__)


_STATE_KEYS = ("state_dict", "model_state_dict", "model")


def _extract_state(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's state dict and its scalar entries (e.g. ``step``, ``eval_accuracy``)."""
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                scalars = {k: v for k, v in obj.items() if k not in _STATE_KEYS and _is_scalar(v)}
                return dict(obj[key]), scalars
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), {}
    raise TaskError(
        f"{path}: expected a state dict (or a dict holding one under {', '.join(_STATE_KEYS)}), "
        f"got {type(obj).__name__}"
    )


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _step_from_name(path: Path) -> int | None:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def trajectory_from_checkpoints(
    directory: str | os.PathLike,
    model_fn: Callable[[], nn.Module] | None = None,
    *,
    selection: ParameterSelection | None = None,
    pattern: str = "*.pt",
    run: str = "seed-0",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    metadata: Mapping[str, Any] | None = None,
    map_location: str = "cpu",
) -> pd.DataFrame:
    """The trajectory of one run from a directory of saved checkpoints, in step order.

    Every file matching ``pattern`` is loaded with ``torch.load(..., weights_only=True)``
    (no code can run). A file holds a state dict, or a dict with the state dict under
    ``state_dict`` / ``model_state_dict`` / ``model`` plus scalar entries; a scalar
    ``step`` entry gives the step, otherwise the last integer in the file name does;
    other scalar entries (e.g. ``eval_accuracy``) become outcome columns.

    Parameters
    ----------
    directory : path-like
    model_fn : callable returning nn.Module, optional
        Builds the architecture, so the selection can use module types (recommended);
        without it the name-based rule :func:`tasks.stats.selection_from_state_dict` applies.
    selection : ParameterSelection, optional
        Overrides both.
    pattern : str
        Glob for checkpoint files.
    run, seed : identify the run in the output.
    out : path-like, optional
        Also write the run there (directory or ``.parquet`` file), atomically.
    metadata : dict, optional
        Stored with the run when ``out`` is given.
    map_location : str

    Returns
    -------
    DataFrame
        One row per checkpoint: ``run``, ``seed``, ``step``, the 14 statistics, outcomes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    files = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not files:
        raise TaskError(f"no checkpoint files matching {pattern!r} in {directory}")
    if selection is None and model_fn is not None:
        selection = resolve_selection(model_fn(), None)[1]
    rows = []
    for path in files:
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise TaskError(
                f"{path}: refusing to load a checkpoint that holds objects other than tensors and plain "
                f"containers (loaded with weights_only=True): {str(exc).splitlines()[0]}"
            ) from exc
        state, scalars = _extract_state(obj, path)
        scalars = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in scalars.items()}
        step = scalars.pop(STEP_COLUMN, None)
        step = _step_from_name(path) if step is None else int(step)
        if step is None:
            raise TaskError(f"{path}: no step in the checkpoint nor a number in the file name")
        state, sel = resolve_selection(state, selection)
        row = {RUN_COLUMN: str(run), SEED_COLUMN: int(seed), STEP_COLUMN: step}
        if EPOCH_COLUMN in scalars:
            row[EPOCH_COLUMN] = int(scalars.pop(EPOCH_COLUMN))
        row.update(_stats_row(state, sel))
        row.update({k: float(v) for k, v in scalars.items() if k not in _RESERVED})
        rows.append(row)
    rows.sort(key=lambda r: r[STEP_COLUMN])
    steps = [r[STEP_COLUMN] for r in rows]
    if len(set(steps)) != len(steps):
        raise TaskError(f"checkpoints in {directory} repeat a step: {sorted(steps)}")
    frame = run_frame(rows)
    if out is not None:
        meta = {**dict(metadata or {}), "run": str(run), "seed": int(seed), "diverged": False,
                "source": "checkpoints", "package_version": _package_version()}
        write_run(frame, _run_path(out, str(run)), meta)
    return frame
