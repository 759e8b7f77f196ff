"""Decoding new (finished) runs against a saved fit.

The runs are normalised exactly as the fit normalised its own runs (per-run
z-scores over the first ``min(T, window)`` checkpoints, the fit's model features),
then decoded with the fitted HMM: Viterbi states, filtered ``p(s_t | z_1:t)`` and
smoothed ``p(s_t | z_1:T)`` probabilities, the transitions taken (flagged when the
fitted runs' map has no such edge) and the visits of detour states.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trainmap.core.schema import RUN_COLUMN, STEP_COLUMN
from bayes_trainmap.data import TrajectorySet, validate
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.monitor.model import MapModel, load_map_model
from bayes_trainmap.monitor.normalize import normalize_offline

__all__ = ["DecodeResult", "decode_runs"]


@dataclass
class DecodeResult:
    """Decoded runs.

    Attributes
    ----------
    checkpoints : pandas.DataFrame
        One row per checkpoint: ``run, step, state``, ``filtered_<k>`` and
        ``smoothed_<k>`` for k = 0..K-1, ``new_edge`` (the checkpoint is entered by a
        transition absent from the map) and ``in_detour``.
    edges : pandas.DataFrame
        One row per transition taken: ``run, step`` (first checkpoint in the new
        state), ``source, target, seen`` (the edge is in the fitted map).
    detours : pandas.DataFrame
        One row per visit of a detour state: ``run, state, first_step, last_step,
        n_checkpoints``.
    """

    checkpoints: pd.DataFrame
    edges: pd.DataFrame
    detours: pd.DataFrame

    @property
    def states(self) -> np.ndarray:
        """Viterbi states, shape (n,)."""
        return self.checkpoints["state"].to_numpy(dtype=np.int64)


def decode_runs(model, trajectories: TrajectorySet) -> DecodeResult:
    """Decode ``trajectories`` with a saved fit.

    Parameters
    ----------
    model : MapModel, FitDirectory or path
        The fit.
    trajectories : TrajectorySet
        Finished runs with the fit's model features (other columns are ignored).

    Returns
    -------
    DecodeResult

    Raises
    ------
    TrajectoryError
        If a model feature is missing, non-numeric or non-finite, or steps are unsorted.
    """
    if not isinstance(model, MapModel):
        model = load_map_model(model)
    features = validate(trajectories, model.features, min_length=1)
    X, lengths = trajectories.feature_matrix(features)
    Z = normalize_offline(X, lengths, model.reference.window)
    hmm = GaussianHMM.from_params(model.params)
    states = np.asarray(hmm.predict(Z, lengths), dtype=np.int64)
    filtered = np.asarray(hmm.filtered_proba(Z, lengths))
    smoothed = np.asarray(hmm.predict_proba(Z, lengths))

    runs = np.repeat(trajectories.run_ids, lengths)
    steps = trajectories.steps()
    run_of = np.repeat(np.arange(lengths.size), lengths)
    K = model.n_states
    frame = pd.DataFrame({RUN_COLUMN: runs, STEP_COLUMN: steps, "state": states})
    for k in range(K):
        frame[f"filtered_{k}"] = filtered[:, k]
    for k in range(K):
        frame[f"smoothed_{k}"] = smoothed[:, k]
    change = np.flatnonzero((states[1:] != states[:-1]) & (run_of[1:] == run_of[:-1])) + 1
    seen = np.array([(int(a), int(b)) in model.seen_edges for a, b in zip(states[change - 1], states[change])],
                    dtype=bool)
    new_edge = np.zeros(states.size, dtype=bool)
    new_edge[change[~seen]] = True
    frame["new_edge"] = new_edge
    frame["in_detour"] = np.isin(states, model.detour_states)
    edges = pd.DataFrame(
        {
            RUN_COLUMN: runs[change],
            STEP_COLUMN: steps[change],
            "source": states[change - 1],
            "target": states[change],
            "seen": seen,
        }
    )
    visits = []
    segment_start = np.r_[0, change, states.size]
    boundaries = np.unique(np.r_[segment_start, np.cumsum(lengths)])
    for a, b in itertools.pairwise(boundaries):
        if states[a] in model.detour_states:
            visits.append({RUN_COLUMN: runs[a], "state": int(states[a]), "first_step": int(steps[a]),
                           "last_step": int(steps[b - 1]), "n_checkpoints": int(b - a)})
    detours = pd.DataFrame(visits, columns=[RUN_COLUMN, "state", "first_step", "last_step", "n_checkpoints"])
    return DecodeResult(checkpoints=frame, edges=edges, detours=detours)
