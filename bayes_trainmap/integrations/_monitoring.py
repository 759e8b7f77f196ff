"""What both callbacks share: run-id checks, outcome filtering and optional monitoring."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from bayes_trainmap.core.errors import BayesTrainmapError, TaskError, TrajectoryError
from bayes_trainmap.core.runlog import check_run_id
from bayes_trainmap.core.schema import (
    EPOCH_COLUMN,
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)
from bayes_trainmap.monitor.model import MapModel, load_map_model
from bayes_trainmap.monitor.online import RunMonitor

__all__ = ["Monitoring", "scalar_outcomes"]

logger = logging.getLogger("bayes_trainmap.integrations")

_RESERVED = {RUN_COLUMN, SEED_COLUMN, STEP_COLUMN, EPOCH_COLUMN, *STATISTIC_NAMES}


def scalar_outcomes(metrics: Mapping[str, Any], names=None, rename: Mapping[str, str] | None = None) -> dict[str, float]:
    """Finite scalar metrics as floats (tensors with one element included).

    Parameters
    ----------
    metrics : mapping
        The loop's logged values.
    names : collection of str, optional
        Keep only these (after renaming); default: every scalar that is not a
        reserved column name.
    rename : mapping, optional
        Loop name -> column name (e.g. Hugging Face's ``loss`` -> ``train_loss``).
    """
    out = {}
    for key, value in metrics.items():
        name = (rename or {}).get(key, str(key))
        if name in _RESERVED or (names is not None and name not in names):
            continue
        if hasattr(value, "numel"):
            if value.numel() != 1:
                continue
            value = value.detach().cpu().item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[name] = float(value)
    return out


def recording_setup(
    callback, loop: str, out, every, run, seed, metadata, outcomes, selection, monitor, normalization, stop_if_stuck
) -> "Monitoring":
    """Check and store a callback's recording options (shared by the Lightning and HF callbacks).

    Sets ``run, out, every, seed, metadata, outcomes, selection, recorder`` on ``callback``
    and returns its :class:`Monitoring`.
    """
    if not isinstance(every, int) or every < 1:
        raise TaskError(f"every must be a positive integer, got {every!r}")
    callback.run = str(run) if run is not None else f"seed-{int(seed)}"
    try:
        check_run_id(callback.run)
    except TrajectoryError as exc:
        raise TaskError(str(exc)) from None
    callback.out, callback.every, callback.seed = out, every, int(seed)
    callback.metadata = {"loop": loop, **dict(metadata or {})}
    callback.outcomes = None if outcomes is None else set(outcomes)
    callback.selection = selection
    callback.recorder = None
    return Monitoring(monitor, normalization, stop_if_stuck)


class Monitoring:
    """Optional monitoring of the recorded rows against a fitted map.

    Parameters
    ----------
    model : path, FitDirectory, MapModel or None
    normalization : {"blend", "prefix", "reference"}
    stop_if_stuck : float or None
        Ask the loop to stop once ``P(stuck)`` reaches this probability.
    """

    def __init__(self, model, normalization: str = "blend", stop_if_stuck: float | None = None):
        self.monitor = None
        self.status = None
        if stop_if_stuck is not None and not 0.0 < float(stop_if_stuck) <= 1.0:
            raise BayesTrainmapError(f"stop_if_stuck must be a probability in (0, 1], got {stop_if_stuck}")
        self.stop_if_stuck = stop_if_stuck
        if model is not None:
            map_model = model if isinstance(model, MapModel) else load_map_model(model)
            self.monitor = RunMonitor(map_model, normalization)

    def update(self, row: Mapping[str, Any]) -> dict[str, float]:
        """Feed the last recorded row; return the values to log (empty without a model)."""
        if self.monitor is None:
            return {}
        model = self.monitor.model
        n_alerts = len(self.monitor.alerts)
        features = [row[f] for f in model.features]
        outcome = row.get(model.outcome) if model.outcome else None
        self.status = status = self.monitor.update(features, int(row[STEP_COLUMN]), outcome)
        for alert in self.monitor.alerts[n_alerts:]:
            logger.warning("trainmap: %s", alert)
        values = {"trainmap/state": float(status.state), "trainmap/state_prob": float(status.filtered[status.state]),
                  "trainmap/in_detour": float(status.in_detour)}
        if status.forecast is not None:
            values["trainmap/p_converge"] = status.forecast.p_converge
            values["trainmap/p_stuck"] = status.forecast.p_stuck
            if status.predicted_step() is not None:
                values["trainmap/predicted_convergence_step"] = float(status.predicted_step())
        return values

    @property
    def should_stop(self) -> bool:
        status = self.status
        return bool(self.stop_if_stuck is not None and status is not None and status.forecast is not None
                    and status.forecast.p_stuck >= self.stop_if_stuck)
