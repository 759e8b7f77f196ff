"""Decoded extra runs as plain rows for a fit's report (``report FITDIR --extra-runs NEWRUNS``).

The report layer does not import the monitor (they are siblings); the command
line decodes the runs here and hands :func:`extra_runs_rows` to the report.
"""

from __future__ import annotations

import itertools

import numpy as np

from bayes_trainmap.data import TrajectorySet
from bayes_trainmap.monitor.decode import DecodeResult, decode_runs
from bayes_trainmap.monitor.model import MapModel, load_map_model
from bayes_trainmap.monitor.normalize import normalize_offline
from bayes_trainmap.monitor.online import RunMonitor

__all__ = ["extra_runs_rows"]


def _path(states: np.ndarray) -> list[int]:
    """The state path with repeats removed."""
    return [int(states[0])] + [int(b) for a, b in itertools.pairwise(states) if a != b]


def _forecast(model: MapModel, Z: np.ndarray, steps: np.ndarray, outcome: np.ndarray | None) -> dict:
    """Convergence at the run's last checkpoint: the step it crossed, or the forecast from there."""
    monitor = RunMonitor(model, "given")
    status = None
    for t in range(len(Z)):
        status = monitor.update(Z[t], int(steps[t]), None if outcome is None else float(outcome[t]))
    out = {"current_state": int(status.state), "converged_step": status.converged_step, "predicted_step": None,
           "interval": [None, None], "p_converge": None, "p_stuck": None}
    if status.forecast is not None:
        out.update(predicted_step=status.predicted_step(given_converge=True),
                   interval=list(status.predicted_interval(given_converge=True)),
                   p_converge=status.forecast.p_converge, p_stuck=status.forecast.p_stuck)
    return out


def extra_runs_rows(model, trajectories: TrajectorySet, result: DecodeResult | None = None) -> list[dict]:
    """One row per run of ``trajectories`` decoded against the fit.

    Parameters
    ----------
    model : MapModel, FitDirectory or path
    trajectories : TrajectorySet
        Finished runs with the fit's model features.
    result : DecodeResult, optional
        Their decoding (default: :func:`~bayes_trainmap.monitor.decode.decode_runs`).

    Returns
    -------
    list of dict
        ``run, n_checkpoints, last_step, path`` (states, repeats removed),
        ``new_edges`` (``[{source, target, step}]``, transitions no fitted run took),
        ``detours`` (``[{state, first_step, last_step, n_checkpoints}]``),
        ``current_state`` (filtered, at the last checkpoint), ``converged_step``
        (None: not crossed), ``predicted_step``, ``interval`` (90%, given
        convergence within the budget), ``p_converge``, ``p_stuck`` (None once
        converged or without a convergence outcome).
    """
    if not isinstance(model, MapModel):
        model = load_map_model(model)
    result = result if result is not None else decode_runs(model, trajectories)
    X, lengths = trajectories.feature_matrix(model.features)
    Z = normalize_offline(X, lengths, model.reference.window)
    has_outcome = model.outcome is not None and model.outcome in trajectories.frame.columns
    outcome = trajectories.outcome(model.outcome) if has_outcome else None
    steps = trajectories.steps()
    rows, start = [], 0
    for run, length in zip(trajectories.run_ids, lengths):
        part = slice(start, start + length)
        start += length
        states = result.checkpoints["state"].to_numpy()[part]
        new = result.edges[(result.edges["run"] == run) & ~result.edges["seen"]]
        visits = result.detours[result.detours["run"] == run]
        row = {"run": str(run), "n_checkpoints": int(length), "last_step": int(steps[part][-1]),
               "path": _path(states),
               "new_edges": [{"source": int(s), "target": int(t), "step": int(st)}
                             for s, t, st in zip(new["source"], new["target"], new["step"])],
               "detours": visits.drop(columns="run").to_dict(orient="records")}
        row.update(_forecast(model, Z[part], steps[part], None if outcome is None else outcome[part]))
        rows.append(row)
    return rows
