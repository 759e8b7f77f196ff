"""Everything the monitoring tools need from a fit directory, loaded once.

:class:`MapModel` gathers the fitted HMM, the normalisation reference, the edges
of the training map (transitions some fitted run's Viterbi path makes), the detour
states, and the convergence model of :mod:`bayes_trainmap.monitor.forecast`
(per-state hazards and stuck states estimated on the fitted runs, the checkpoint
interval and the training budget), plus posterior draws of the transition matrix
when the fit directory has them (``posterior.nc``, ``--mode svi``).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayes_trainmap.data.fitdir import POSTERIOR_FILE, FitDirectory
from bayes_trainmap.monitor.duration import DurationModel, estimate_duration_model
from bayes_trainmap.monitor.forecast import (
    Hazards,
    estimate_hazards,
    first_crossing_index,
    stuck_states,
)
from bayes_trainmap.monitor.normalize import Reference, reference_from_fit

__all__ = ["MapModel", "load_map_model"]

logger = logging.getLogger(__name__)



@dataclass
class MapModel:
    """A fitted map, ready to decode, filter and forecast new runs.

    Attributes
    ----------
    params : inference.params.HMMParams
    reference : Reference
    seen_edges : set of (int, int)
        Transitions ``j -> k`` (j != k) used by some fitted run's Viterbi path.
    detour_states : list of int
    outcome : str or None
        Outcome column that defines convergence (None: no forecast).
    threshold : float
    higher_is_better : bool
    hazards : Hazards or None
        Duration-free hazards (the memoryless chain, ``forecast="chain"``).
    durations : DurationModel or None
        The explicit-duration chain (``forecast="duration"``, the default of
        :class:`~bayes_trainmap.monitor.online.RunMonitor`).
    stuck : list of int
        States in which no converged fitted run ends.
    interval : float
        Median steps between checkpoints in the fitted runs.
    budget : int
        Checkpoints of the longest fitted run (the forecast horizon ends there).
    trans_draws : numpy.ndarray, shape (S, K, K), or None
        Posterior draws of the transition matrix (Bayesian fits with draws).
    train_convergence_steps : numpy.ndarray
        Convergence steps of the fitted runs that converged (for baselines).
    """

    params: object
    reference: Reference
    seen_edges: set = field(default_factory=set)
    detour_states: list = field(default_factory=list)
    outcome: str | None = None
    threshold: float = float("nan")
    higher_is_better: bool = True
    hazards: Hazards | None = None
    durations: DurationModel | None = None
    stuck: list = field(default_factory=list)
    interval: float = 1.0
    budget: int = 0
    trans_draws: np.ndarray | None = None
    train_convergence_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    path: Path | None = None

    @property
    def n_states(self) -> int:
        return int(self.params.n_states)

    @property
    def features(self) -> list[str]:
        return list(self.reference.features)

    @property
    def trans_for_forecast(self) -> np.ndarray:
        """``(S, K, K)`` draws if available, else the point estimate ``(K, K)``."""
        return self.trans_draws if self.trans_draws is not None else np.asarray(self.params.trans_mat)


def _seen_edges(paths: np.ndarray, lengths: np.ndarray) -> set:
    run_of = np.repeat(np.arange(lengths.size), lengths)
    change = np.flatnonzero((paths[1:] != paths[:-1]) & (run_of[1:] == run_of[:-1])) + 1
    return {(int(a), int(b)) for a, b in zip(paths[change - 1], paths[change])}


def _trans_draws(path: Path, n_states: int) -> np.ndarray | None:
    nc = path / POSTERIOR_FILE
    if not nc.is_file():
        return None
    try:
        import arviz as az

        draws = np.asarray(az.from_netcdf(str(nc)).posterior["trans_mat"].values, dtype=float)
    except Exception as exc:  # noqa: BLE001 - a damaged posterior falls back to the point estimate
        logger.warning("ignoring %s (%s); forecasting with the point estimate", nc, exc)
        return None
    draws = draws.reshape(-1, n_states, n_states)
    return draws / draws.sum(axis=2, keepdims=True)


def load_map_model(fit_dir, *, hazard: str = "state") -> MapModel:
    """A :class:`MapModel` from a fit directory (path or :class:`~bayes_trainmap.data.fitdir.FitDirectory`).

    The convergence outcome and threshold are those of the fit's analysis
    (``analysis.json``), else of ``config.json``; without an outcome column there
    is no forecast (``hazards`` is None). ``hazard`` selects per-``"state"`` or
    per-``"edge"`` hazards (:func:`bayes_trainmap.monitor.forecast.estimate_hazards`).
    """
    fd = fit_dir if isinstance(fit_dir, FitDirectory) else FitDirectory(fit_dir)
    params = fd.params
    reference = reference_from_fit(fd)
    runs = fd.fitted_runs()
    lengths, paths = runs.lengths, runs.paths
    K = int(params.n_states)
    model = MapModel(params=params, reference=reference, seen_edges=_seen_edges(paths, lengths), path=fd.path)
    analysis = fd.analysis or {}
    model.detour_states = [int(s) for s in analysis.get("detour_states") or []]
    conv = analysis.get("convergence") or {}
    outcome = conv.get("outcome", fd.resolved.get("outcome"))
    threshold = conv.get("threshold", fd.resolved.get("threshold"))
    frame = fd.zscored
    steps = frame["step"].to_numpy(dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    gaps = np.concatenate([np.diff(steps[a:b]) for a, b in itertools.pairwise(starts) if b - a > 1] or [[1]])
    model.interval = float(np.median(gaps))
    model.budget = int(lengths.max())
    model.trans_draws = _trans_draws(fd.path, K)
    if outcome is not None and threshold is not None and outcome in frame.columns:
        model.outcome = str(outcome)
        model.threshold = float(threshold)
        model.higher_is_better = bool(conv.get("higher_is_better", "loss" not in model.outcome.lower()))
        crossing = first_crossing_index(frame[model.outcome].to_numpy(dtype=float), lengths, model.threshold,
                                        model.higher_is_better)
        model.hazards = estimate_hazards(paths, lengths, crossing, K, by=hazard)
        model.stuck = stuck_states(paths, lengths, crossing, K)
        model.durations = estimate_duration_model(paths, lengths, crossing, model.trans_for_forecast,
                                                  params.start_prob, model.stuck, model.budget)
        model.train_convergence_steps = np.array(
            [steps[starts[i] + c] for i, c in enumerate(crossing) if c >= 0], dtype=float
        )
    return model
