"""Hugging Face ``Trainer`` callback: record the 14 statistics every N steps, optionally monitor.

Usage::

    from bayes_trainmap.integrations.huggingface import TrainMapCallback

    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds,
                                   callbacks=[TrainMapCallback("trajectories/", every=100, seed=0)])

Step ``s`` is ``state.global_step``. The weights are read in ``on_step_end`` of
every step with ``global_step % every == 0`` (and before the first step); the
outcomes are what the ``Trainer`` reports for that same step through ``on_log``
(``loss`` is recorded as ``train_loss``, the rest under their own names, e.g.
``learning_rate``, ``grad_norm``) and ``on_evaluate`` (``eval_*``), which the
``Trainer`` calls *after* ``on_step_end``; the row is written when the next
step ends (or at the end of training). Set ``logging_steps`` (and ``eval_steps``)
to ``every`` so that every row has its outcomes. A crash loses at most that one
pending row; the rows before stay in the run log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover
    raise ImportError('the Hugging Face callback needs transformers: pip install "bayes_trainmap[transformers]"') from exc

from bayes_trainmap.integrations._monitoring import recording_setup, scalar_outcomes
from bayes_trainmap.tasks.recorder import TrajectoryRecorder

__all__ = ["TrainMapCallback"]

#: Trainer log keys that are bookkeeping, not outcomes.
_SKIP = {"epoch", "total_flos", "step"}
#: Keys of the Trainer's end-of-training summary log (averages over the whole run).
_SUMMARY = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}
_RENAME = {"loss": "train_loss"}


class TrainMapCallback(TrainerCallback):
    """Record a ``transformers.Trainer`` run's trajectory (and monitor it against a map).

    Parameters
    ----------
    out, every, run, seed, metadata, outcomes, selection, monitor, normalization, stop_if_stuck
        As for :class:`bayes_trainmap.integrations.lightning.TrainMapCallback`;
        ``stop_if_stuck`` sets ``control.should_training_stop``.
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
            self, "transformers", out, every, run, seed, metadata, outcomes, selection, monitor, normalization, stop_if_stuck
        )
        self._pending: tuple[int, Any, dict[str, float]] | None = None

    @property
    def status(self):
        """The latest :class:`~bayes_trainmap.monitor.online.RunStatus` (None unless monitoring)."""
        return self.monitoring.status

    def _measure(self, step: int) -> None:
        self._pending = (step, self.recorder.measure(), {})

    def _commit(self, control) -> None:
        if self._pending is None:
            return
        step, stats, values = self._pending
        self._pending = None
        if self.recorder.log_measured(step, stats, **values):
            self.monitoring.update(self.recorder.rows[-1])
            if self.monitoring.should_stop:
                control.should_training_stop = True

    def _outcomes(self, state, metrics: Mapping[str, Any] | None) -> None:
        if self._pending is None or not metrics or self._pending[0] != state.global_step:
            return
        if _SUMMARY.intersection(metrics):
            return
        values = scalar_outcomes({k: v for k, v in metrics.items() if k not in _SKIP}, self.outcomes, _RENAME)
        self._pending[2].update(values)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.recorder = TrajectoryRecorder(model, self.out, run=self.run, seed=self.seed, every=self.every,
                                           metadata=self.metadata, selection=self.selection)
        self._measure(int(state.global_step))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._commit(control)
            self._measure(int(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._outcomes(state, logs)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._outcomes(state, metrics)

    def on_train_end(self, args, state, control, **kwargs):
        if self.recorder is None:
            return
        last = self.recorder.rows[-1]["step"] if self.recorder.rows else -1
        pending = self._pending[0] if self._pending is not None else last
        self._commit(control)
        if max(last, pending) < state.global_step:  # the final step was not due
            self._measure(int(state.global_step))
            self._commit(control)
        if self.recorder.rows:
            self.recorder.close()
