"""The shared training loop: per-seed determinism, checkpoints, outcomes, divergence.

A run of seed ``s`` is a deterministic function of the task configuration and ``s``:

- the model is initialised under a global RNG seeded with ``derive_seed(s, "init")``;
- the data (when it depends on the seed) comes from ``task.build_data(s)``;
- minibatches are consecutive slices of a stream of random permutations of the
  training set drawn from a ``torch.Generator`` seeded with ``derive_seed(s, "order")``
  (so batches may straddle epoch boundaries and every example is seen once per epoch);
- batch transforms (augmentation, masking) draw from a generator seeded with
  ``derive_seed(s, "transform")``.

At step 0 (the initialisation), every ``eval_every`` optimiser steps, and at the last
step, the loop records the 14 weight statistics and the outcomes ``eval_accuracy``,
``train_accuracy``, ``eval_loss``, ``train_loss`` (training metrics on the first
``train_eval_examples`` training examples, all by default, in evaluation mode).
A run whose weights or recorded values stop being finite is *diverged*: its rows up to
the last finite checkpoint are kept, ``RunResult.diverged_step`` says where it broke,
and its recording stops (a sequential run stops training; an ensemble member keeps
being stepped with the others, which its NaNs cannot reach, until all have finished).

The same driver (:func:`drive`) runs one seed with an ``nn.Module`` and
``torch.optim`` (:class:`ModuleTrainer`, here) or many seeds at once with
``torch.func`` (:class:`tasks.ensemble.EnsembleTrainer`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    OUTCOME_COLUMNS,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)

from .base import Task, TaskData
from .stats import statistics_tensor
from .trajectory_io import run_frame

logger = logging.getLogger(__name__)

_PURPOSES = {"init": 1, "order": 2, "transform": 3, "data": 4}


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (``init``, ``order``, ``transform``, ``data``)."""
    if purpose not in _PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; expected one of {', '.join(_PURPOSES)}")
    state = np.random.SeedSequence([int(seed), _PURPOSES[purpose]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA -> ``TaskError``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise TaskError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TaskError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def run_id(seed: int) -> str:
    """The ``run`` column value of seed ``seed`` (zero-padded so runs sort by seed)."""
    return f"seed-{int(seed):03d}"


def init_model(task: Task, seed: int) -> nn.Module:
    """``task.build_model()`` under a CPU RNG seeded for ``seed`` (global RNG state restored)."""
    with torch.random.fork_rng(devices=[]):
        # the model is built on the CPU, whose generator is the one it draws from;
        # torch.manual_seed would also queue lazy seeding of every accelerator backend,
        # each with a captured stack trace (~2 ms a call, noticeable over an ensemble)
        torch.default_generator.manual_seed(derive_seed(seed, "init"))
        return task.build_model()


def checkpoint_steps(steps: int, eval_every: int) -> list[int]:
    """``0, eval_every, 2 eval_every, ...`` and always the final step ``steps``."""
    marks = list(range(0, steps + 1, eval_every))
    if marks[-1] != steps:
        marks.append(steps)
    return marks


class BatchOrder:
    """Per-seed stream of minibatch indices: consecutive slices of random permutations.

    Parameters
    ----------
    n_examples, batch_size : int
    seed : int
        The run seed; the generator is seeded with ``derive_seed(seed, "order")``.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int):
        self.n_examples = n_examples
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "order"))
        self._buffer = torch.empty(0, dtype=torch.long)

    def take(self, n_steps: int) -> torch.Tensor:
        """Indices of the next ``n_steps`` batches, shape (n_steps, batch_size)."""
        need = n_steps * self.batch_size
        parts = [self._buffer]
        have = len(self._buffer)
        while have < need:
            parts.append(torch.randperm(self.n_examples, generator=self.generator))
            have += self.n_examples
        stream = torch.cat(parts)
        self._buffer = stream[need:]
        return stream[:need].reshape(n_steps, self.batch_size)


@dataclasses.dataclass
class RunResult:
    """One finished (or diverged) run.

    Attributes
    ----------
    seed : int
    frame : DataFrame
        Long-format rows, one per recorded checkpoint.
    diverged_step : int or None
        First checkpoint step with non-finite weights or values; None if the run did not diverge.
    trainer : str
        ``"ensemble"`` or ``"sequential"``.
    timings : dict
        Seconds spent in ``train``, ``statistics`` and ``evaluation`` (shared by an ensemble's runs).
    """

    seed: int
    frame: pd.DataFrame
    diverged_step: int | None
    trainer: str
    timings: dict[str, float]

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None


class Trainer(Protocol):
    """What :func:`drive` needs from a trainer of ``n_members`` seeds."""

    n_members: int

    def step(self, indices: torch.Tensor) -> None:
        """One optimiser step; ``indices`` of shape (n_members, batch_size) on CPU."""

    def statistics(self) -> torch.Tensor:
        """(n_members, 14) float64 statistics."""

    def evaluate(self) -> dict[str, torch.Tensor]:
        """Outcomes, each of shape (n_members,)."""

    def finite(self) -> torch.Tensor:
        """(n_members,) bool: all weights finite."""


def task_transforms_batches(task: Task) -> bool:
    """Whether the task overrides :meth:`Task.transform_batch`."""
    return type(task).transform_batch is not Task.transform_batch


def evaluation_sets(task: Task, data: TaskData) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"eval": (x, y), "train": (x[:m], y[:m])}`` with m = ``train_eval_examples`` (all if absent)."""
    m = task.config.get("train_eval_examples")
    m = data.n_train if m is None else min(int(m), data.n_train)
    return {
        "eval": (data.eval_inputs, data.eval_targets),
        "train": (data.train_inputs[:m], data.train_targets[:m]),
    }


def drive(
    trainer: Trainer,
    task: Task,
    seeds: Sequence[int],
    n_train: int,
    *,
    trainer_name: str,
    progress: bool = False,
    description: str | None = None,
) -> list[RunResult]:
    """Train ``trainer`` for ``task.config["steps"]`` steps, recording every checkpoint."""
    config = task.config
    steps, eval_every, batch_size = config["steps"], config["eval_every"], config["batch_size"]
    orders = [BatchOrder(n_train, batch_size, s) for s in seeds]
    rows: list[list[dict[str, Any]]] = [[] for _ in seeds]
    diverged: list[int | None] = [None] * len(seeds)
    timings = {"train": 0.0, "statistics": 0.0, "evaluation": 0.0}
    bar = _progress_bar(steps, progress, description or f"{task.name} seeds {_seed_label(seeds)}")
    done = 0
    try:
        for mark in checkpoint_steps(steps, eval_every):
            if mark > done:
                started = time.perf_counter()
                indices = torch.stack([o.take(mark - done) for o in orders], dim=1)  # (n, S, B)
                for batch in indices:
                    trainer.step(batch)
                timings["train"] += time.perf_counter() - started
                if bar is not None:
                    bar.update(mark - done)
                done = mark
            started = time.perf_counter()
            stats = trainer.statistics().cpu().numpy()
            finite = trainer.finite().cpu().numpy()
            timings["statistics"] += time.perf_counter() - started
            started = time.perf_counter()
            outcomes = {k: v.double().cpu().numpy() for k, v in trainer.evaluate().items()}
            timings["evaluation"] += time.perf_counter() - started
            epoch = mark * batch_size // n_train
            for i, seed in enumerate(seeds):
                if diverged[i] is not None:
                    continue
                row_outcomes = {k: float(v[i]) for k, v in outcomes.items()}
                if not (finite[i] and np.isfinite(stats[i]).all() and np.isfinite(list(row_outcomes.values())).all()):
                    if mark == 0:
                        raise TaskError(f"task {task.name!r}, seed {seed}: the initial model has non-finite values")
                    diverged[i] = mark
                    logger.warning("task %s seed %d diverged at step %d (non-finite weights or values)",
                                   task.name, seed, mark)
                    continue
                row = {RUN_COLUMN: run_id(seed), SEED_COLUMN: int(seed), STEP_COLUMN: mark, EPOCH_COLUMN: epoch}
                row.update(zip(STATISTIC_NAMES, stats[i].tolist()))
                row.update(row_outcomes)
                rows[i].append(row)
            if all(d is not None for d in diverged):
                break
    finally:
        if bar is not None:
            bar.close()
    return [
        RunResult(seed=int(s), frame=f, diverged_step=d, trainer=trainer_name, timings=dict(timings))
        for s, f, d in zip(seeds, _run_frames(rows), diverged)
    ]


def _run_frames(rows: list[list[dict[str, Any]]]) -> list[pd.DataFrame]:
    """:func:`run_frame` of each run's rows, built as one frame and cut into runs.

    pandas' fixed cost per frame (~1.5 ms) would otherwise dominate for an ensemble's
    many short runs.
    """
    if not all(rows):
        return [run_frame(r) for r in rows]
    frame = run_frame([row for run_rows in rows for row in run_rows])
    bounds = np.cumsum([0, *map(len, rows)])
    return [frame.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:])]


class ModuleTrainer:
    """One seed trained as a plain ``nn.Module`` with ``torch.optim`` (the reference path)."""

    n_members = 1

    def __init__(self, task: Task, seed: int, data: TaskData, device: torch.device):
        self.task = task
        self.device = device
        self.model = init_model(task, seed).to(device)
        self.data = data.to(device)
        self.selection = task.parameter_selection(self.model)
        self.optimizer = task.optimizer().build(self.model.parameters())
        self.transforms = task_transforms_batches(task)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "transform"))
        self.eval_sets = evaluation_sets(task, self.data)
        self.eval_batch = int(task.config.get("eval_batch_size", 4096))
        self.model.train()

    def step(self, indices: torch.Tensor) -> None:
        idx = indices[0].to(self.device)
        x, y = self.data.train_inputs[idx], self.data.train_targets[idx]
        if self.transforms:
            x, y = self.task.transform_batch(x, y, self.generator)
        loss_sum, _, count = self.task.metrics(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum / count).backward()
        self.optimizer.step()

    @torch.no_grad()
    def statistics(self) -> torch.Tensor:
        state = self.model.state_dict()
        stacked = {name: state[name].unsqueeze(0) for name in self.selection.names}
        return statistics_tensor(stacked, self.selection)

    @torch.no_grad()
    def finite(self) -> torch.Tensor:
        ok = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        return torch.tensor([ok])

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        self.model.eval()
        out: dict[str, torch.Tensor] = {}
        for split, (inputs, targets) in self.eval_sets.items():
            loss = correct = count = 0.0
            for start in range(0, len(inputs), self.eval_batch):
                x, y = inputs[start : start + self.eval_batch], targets[start : start + self.eval_batch]
                if self.transforms:
                    x, y = self.task.transform_batch(x, y, None)
                batch_loss, batch_correct, batch_count = self.task.metrics(self.model(x), y)
                loss = loss + batch_loss.double()
                correct, count = correct + batch_correct.double(), count + batch_count.double()
            out[f"{split}_loss"] = (loss / count).reshape(1)
            out[f"{split}_accuracy"] = (correct / count).reshape(1)
        self.model.train()
        return {k: out[k] for k in OUTCOME_COLUMNS}


def train_sequential(
    task: Task,
    seed: int,
    *,
    device: str | torch.device = "auto",
    data: TaskData | None = None,
    progress: bool = False,
) -> RunResult:
    """Train one seed with the reference ``nn.Module`` + ``torch.optim`` path.

    Parameters
    ----------
    task : Task
        A configured task.
    seed : int
    device : {"auto", "cpu", "cuda"} or torch.device
    data : TaskData, optional
        Pre-built data (must equal ``task.build_data(seed)``, or ``build_data(0)`` for
        tasks whose data does not depend on the seed); built when omitted.
    progress : bool
        Show a tqdm bar over steps.
    """
    device = resolve_device(device)
    if data is None:
        data = task.build_data(seed if task.data_depends_on_seed else 0)
    trainer = ModuleTrainer(task, seed, data, device)
    return drive(trainer, task, [seed], data.n_train, trainer_name="sequential", progress=progress,
                 description=f"{task.name} seed {seed}")[0]


def _seed_label(seeds: Sequence[int]) -> str:
    return f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"


def _progress_bar(total: int, enabled: bool, description: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="step", leave=False)
