"""PyTorch Lightning callback: record the 14 statistics every N steps, optionally monitor.

Usage::

    from bayes_trainmap.integrations.lightning import TrainMapCallback

    trainer = lightning.Trainer(callbacks=[TrainMapCallback("trajectories/", every=100, seed=0)])
    trainer.fit(module, datamodule)

Step ``s`` is ``trainer.global_step`` (optimiser steps taken): the weights are read
at the end of the training batch after which ``global_step % every == 0``, and at
the start of training (step 0). Outcomes are the scalars in
``trainer.callback_metrics`` at that moment (what the module logged with
``self.log``; validation metrics keep their last value until the next
validation), or only those named in ``outcomes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            'the Lightning callback needs PyTorch Lightning: pip install "bayes_trainmap[lightning]"'
        ) from exc

from bayes_trainmap.integrations._monitoring import recording_setup, scalar_outcomes
from bayes_trainmap.tasks.recorder import TrajectoryRecorder

__all__ = ["TrainMapCallback"]


class TrainMapCallback(Callback):
    """Record a Lightning run's trajectory (and monitor it against a map).

    Parameters
    ----------
    out : path-like
        Folder (``out/run-<run>.parquet``, written as it goes) or ``.parquet`` file.
    every : int
        Record every ``every`` optimiser steps (and at the first and last step).
    run : str, optional
        Run id (default ``seed-<seed>``); refused here if it is not a plain file name.
    seed : int
    metadata : dict, optional
        Stored with the run.
    outcomes : sequence of str, optional
        Metrics of ``trainer.callback_metrics`` to record (default: every scalar).
    selection : ParameterSelection or callable, optional
        Which parameters are weights/biases (see :class:`bayes_trainmap.tasks.recorder.TrajectoryRecorder`).
    monitor : path, FitDirectory or MapModel, optional
        Fitted map to monitor against; the state, its probability, the detour flag
        and the forecast are logged as ``trainmap/...`` metrics and kept in
        :attr:`status`.
    normalization : {"blend", "prefix", "reference"}
        Online normalisation when monitoring.
    stop_if_stuck : float, optional
        Set ``trainer.should_stop`` once ``P(stuck)`` reaches this value.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        every: int = 100,
        run: str | None = None,
        seed: int = 0,
        metadata: Mapping[str, Any] | None = None,
        outcomes: Sequence[str] | None = None,
        selection=None,
        monitor=None,
        normalization: str = "blend",
        stop_if_stuck: float | None = None,
    ):
        self.monitoring = recording_setup(
            self, "lightning", out, every, run, seed, metadata, outcomes, selection, monitor, normalization, stop_if_stuck
        )

    @property
    def status(self):
        """The latest :class:`~bayes_trainmap.monitor.online.RunStatus` (None unless monitoring)."""
        return self.monitoring.status

    def _record(self, trainer, pl_module, step: int, *, log: bool = False) -> None:
        rec = self.recorder
        if rec is None or rec.closed or (rec.rows and rec.rows[-1]["step"] >= step):
            return
        values = scalar_outcomes(trainer.callback_metrics, self.outcomes)
        if rec.log(step, force=True, **values):
            logged = self.monitoring.update(rec.rows[-1])
            if logged and log:  # Lightning accepts step-level logging only inside batch hooks
                pl_module.log_dict(logged, on_step=True, on_epoch=False)
            if self.monitoring.should_stop:
                trainer.should_stop = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self.recorder = TrajectoryRecorder(pl_module, self.out, run=self.run, seed=self.seed, every=self.every,
                                           metadata=self.metadata, selection=self.selection)

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module, int(trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._record(trainer, pl_module, int(trainer.global_step), log=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module, int(trainer.global_step))
        if self.recorder is not None and self.recorder.rows:
            self.recorder.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.abort(f"{type(exception).__name__}: {exception}")
