"""Monitoring one run while it trains: normalise, filter, alert and forecast per checkpoint.

:class:`RunMonitor` feeds each new checkpoint through the chosen online
normalisation (:mod:`bayes_trainmap.monitor.normalize`) and the streaming filter
(:mod:`bayes_trainmap.monitor.streaming`), and reports the most probable current
state, whether it is a detour state, whether the last change of state is an edge
the map has never seen, and the convergence forecast
(:mod:`bayes_trainmap.monitor.forecast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.monitor.duration import DurationFilter, forecast_with_durations
from bayes_trainmap.monitor.forecast import Forecast, forecast_convergence
from bayes_trainmap.monitor.model import MapModel
from bayes_trainmap.monitor.normalize import make_normalizer
from bayes_trainmap.monitor.streaming import StreamingFilter

__all__ = ["FORECASTS", "RunMonitor", "RunStatus"]

#: Convergence forecasts: the explicit-duration chain (:mod:`~bayes_trainmap.monitor.duration`)
#: or the memoryless one (:func:`~bayes_trainmap.monitor.forecast.forecast_convergence`).
FORECASTS = ("duration", "chain")


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands after its latest checkpoint.

    Attributes
    ----------
    step : int
        Step of the latest checkpoint.
    n_checkpoints : int
    filtered : numpy.ndarray, shape (K,)
        ``p(s_t | z_1:t)``.
    state : int
        ``argmax`` of ``filtered``.
    in_detour : bool
    new_edge : tuple of int or None
        ``(j, k)`` when the state just changed along an edge absent from the map.
    converged_step : int or None
        Step at which the outcome crossed the threshold (then no forecast).
    forecast : Forecast or None
        Checkpoints to convergence (None without a convergence model or once converged).
    interval : float
        Steps per checkpoint used to convert the forecast into steps.
    """

    step: int
    n_checkpoints: int
    filtered: np.ndarray
    state: int
    in_detour: bool
    new_edge: tuple[int, int] | None
    converged_step: int | None
    forecast: Forecast | None
    interval: float

    def predicted_step(self, given_converge: bool = False) -> float | None:
        """Median forecast convergence step (None beyond the budget or without a forecast).

        ``given_converge``: the median given that the run converges within the budget.
        """
        if self.forecast is None:
            return None
        r = self.forecast.quantile_given_converge(0.5) if given_converge else self.forecast.median
        return None if r is None else self.step + r * self.interval

    def predicted_interval(self, given_converge: bool = False) -> tuple[float | None, float | None]:
        """The forecast's interval in steps (an end beyond the budget is None)."""
        if self.forecast is None:
            return None, None
        ends = self.forecast.interval_given_converge() if given_converge else self.forecast.interval
        return tuple(None if r is None else self.step + r * self.interval for r in ends)


class RunMonitor:
    """Per-checkpoint monitoring of one run against a fitted map.

    Parameters
    ----------
    model : MapModel
    normalization : {"blend", "prefix", "reference"}
        Online normalisation (see :mod:`bayes_trainmap.monitor.normalize`).
    level : float
        Level of the forecast interval.
    forecast : {"duration", "chain"}
        ``"duration"`` (default): the explicit-duration chain, filtered over (state,
        time in state) given every earlier non-crossing; ``"chain"``: the memoryless
        absorbing chain from the HMM's filtered state.
    """

    def __init__(self, model: MapModel, normalization: str = "blend", *, level: float = 0.9,
                 forecast: str = "duration"):
        if forecast not in FORECASTS:
            raise BayesTrainmapError(f"forecast must be one of {', '.join(FORECASTS)}, got {forecast!r}")
        self.model = model
        self.normalize = make_normalizer(normalization, model.reference)
        self.filter = StreamingFilter(model.params)
        self.forecast_kind = forecast
        self.durations = DurationFilter(model.durations) if model.durations is not None else None
        self.level = float(level)
        self.status: RunStatus | None = None
        self.converged_step: int | None = None
        self.alerts: list[str] = []

    def update(self, features: np.ndarray, step: int, outcome: float | None = None) -> RunStatus:
        """Add one checkpoint: raw ``features`` (d,) in ``model.features`` order, its step and outcome."""
        model = self.model
        log_b = self.filter.log_emission(self.normalize(features))
        filtered = self.filter.update_log_emission(log_b)
        state = int(np.argmax(filtered))
        previous = None if self.status is None else self.status.state
        new_edge = None
        if previous is not None and previous != state and (previous, state) not in model.seen_edges:
            new_edge = (previous, state)
            self.alerts.append(f"step {step}: new edge {previous}->{state}")
        if state in model.detour_states and previous != state:
            self.alerts.append(f"step {step}: entered detour state {state}")
        known = self.converged_step is None and outcome is not None and model.outcome is not None
        if known and np.isfinite(outcome) and ((outcome >= model.threshold) if model.higher_is_better
                                               else (outcome <= model.threshold)):
            self.converged_step = int(step)
        forecast = None
        if self.durations is not None and self.converged_step is None:
            self.durations.update(log_b, survived=bool(known and np.isfinite(outcome)))
        if model.hazards is not None and self.converged_step is None:
            horizon = max(model.budget - self.filter.n_updates, 0)
            if self.forecast_kind == "duration":
                forecast = forecast_with_durations(self.durations.joint, model.durations, horizon, level=self.level)
            else:
                forecast = forecast_convergence(filtered, model.trans_for_forecast, model.hazards.hazard, horizon,
                                                model.stuck, level=self.level)
        self.status = RunStatus(
            step=int(step),
            n_checkpoints=self.filter.n_updates,
            filtered=filtered,
            state=state,
            in_detour=state in model.detour_states,
            new_edge=new_edge,
            converged_step=self.converged_step,
            forecast=forecast,
            interval=model.interval,
        )
        return self.status
