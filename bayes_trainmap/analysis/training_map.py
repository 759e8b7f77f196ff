"""The training map (section 2.2 of Hu et al., 2023).

Nodes are the HMM's latent states; an edge ``j -> k`` (``j != k``) is kept iff
at least one run's Viterbi path makes that transition. Each edge carries

* the fitted transition probability ``A[j, k]``;
* the number of runs using it (and the number of uses);
* the mean and sample SD of the convergence steps of those runs;
* its label: the 3 features most influential for state ``k``, by the absolute
  gradient ``|d log p(s_t = k | z_1:t) / d z_t|`` (appendix A, see
  :mod:`bayes_trainmap.analysis.importance`) evaluated at the first checkpoint in ``k``
  after each use and averaged over all uses, each with the change of mean
  ``mu_k - mu_j`` in z-units and its direction -- the paper's "L2 ↓ 0.59",
  written with the column name (``l2 ↓ 0.59``).

Nodes carry their occupancy (share of all checkpoints), the runs visiting them,
and whether runs start (initial) or end (final) there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trainmap.analysis.importance import posterior_gradient
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.storage import to_jsonable

__all__ = ["TrainingMap", "build_training_map", "format_change", "N_TOP_FEATURES"]

#: Features shown per edge label (the paper reports 3).
N_TOP_FEATURES = 3

STATE_COLUMNS = [
    "state",
    "occupancy",
    "n_checkpoints",
    "n_runs",
    "runs",
    "mean_dwell",
    "is_initial",
    "is_final",
    "n_runs_start",
    "n_runs_end",
    "top_features",
    "top_importance",
]
EDGE_COLUMNS = [
    "source",
    "target",
    "trans_prob",
    "n_runs",
    "n_uses",
    "runs",
    "conv_mean",
    "conv_sd",
    "conv_n",
    "top_features",
    "importance",
    "mean_change",
    "label",
]


def feature_label(name: str) -> str:
    """Display label of a feature: its column name (the glossary is ``schema.STATISTIC_GLOSSARY``)."""
    return str(name)


def format_change(name: str, change: float) -> str:
    """The paper's edge annotation in our column names, e.g. ``"l2 ↓ 0.59"`` (the paper's "L2 ↓ 0.59")."""
    arrow = "↑" if change > 0 else ("↓" if change < 0 else "→")
    return f"{feature_label(name)} {arrow} {abs(change):.2f}"


@dataclass
class TrainingMap:
    """States, pruned edges and endpoints of a training map.

    Attributes
    ----------
    states : pandas.DataFrame
        One row per state, columns ``STATE_COLUMNS``.
    edges : pandas.DataFrame
        One row per used transition ``source -> target``, columns ``EDGE_COLUMNS``;
        list-valued cells hold Python lists.
    initial_states : list of int
        States in which at least one run starts.
    final_states : list of int
        States in which at least one run ends.
    feature_names : list of str
    """

    states: pd.DataFrame
    edges: pd.DataFrame
    initial_states: list[int]
    final_states: list[int]
    feature_names: list[str]

    @property
    def n_states(self) -> int:
        return int(len(self.states))

    @property
    def visited_states(self) -> list[int]:
        return [int(s) for s in self.states.loc[self.states["n_runs"] > 0, "state"]]

    def to_dict(self) -> dict:
        return {
            "states": _frame_records(self.states),
            "edges": _frame_records(self.edges),
            "initial_states": [int(s) for s in self.initial_states],
            "final_states": [int(s) for s in self.final_states],
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingMap":
        states = pd.DataFrame(d["states"], columns=STATE_COLUMNS)
        edges = pd.DataFrame(d["edges"], columns=EDGE_COLUMNS)
        # JSON null -> NaN in the float columns (undefined dwell, convergence statistics).
        states["mean_dwell"] = states["mean_dwell"].astype(float)
        edges = edges.astype({"trans_prob": float, "conv_mean": float, "conv_sd": float})
        return cls(states, edges, list(d["initial_states"]), list(d["final_states"]), list(d["feature_names"]))



def _frame_records(frame: pd.DataFrame) -> list[dict]:
    return to_jsonable(frame.to_dict(orient="records"))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)])


def build_training_map(
    params,
    Z: np.ndarray,
    lengths: np.ndarray,
    paths: np.ndarray,
    filtered: np.ndarray,
    run_ids: list[str],
    convergence_steps=None,
    *,
    n_top: int = N_TOP_FEATURES,
) -> TrainingMap:
    """Build the training map of a fitted HMM from decoded runs.

    Parameters
    ----------
    params : inference.params.HMMParams
        Fitted model (``trans_mat``, ``means``, covariances, ``feature_names``).
    Z : numpy.ndarray, shape (n, d)
        z-scored features of every checkpoint, concatenated over runs.
    lengths : numpy.ndarray of int, shape (N,)
    paths : numpy.ndarray of int, shape (n,)
        Viterbi state of every checkpoint.
    filtered : numpy.ndarray, shape (n, K)
        Filtered posteriors ``p(s_t | z_1:t)``.
    run_ids : list of str, length N
    convergence_steps : mapping run id -> step, pandas.Series or array (N,), optional
        NaN for runs that never converged; these are left out of the edge means.
    n_top : int
        Features per edge label.

    Returns
    -------
    TrainingMap
    """
    Z = np.asarray(Z, dtype=float)
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    filtered = np.asarray(filtered, dtype=float)
    n_states, n_features = np.asarray(params.means, dtype=float).shape
    names = list(getattr(params, "feature_names", None) or [f"x{i}" for i in range(n_features)])
    if paths.shape != (Z.shape[0],) or lengths.sum() != Z.shape[0] or len(run_ids) != lengths.size:
        raise BayesTrainmapError(
            f"inconsistent shapes: Z {Z.shape}, paths {paths.shape}, lengths summing to {lengths.sum()} "
            f"over {lengths.size} runs, {len(run_ids)} run ids"
        )
    if paths.size and (paths.min() < 0 or paths.max() >= n_states):
        raise BayesTrainmapError(f"paths contain states outside 0..{n_states - 1}")
    run_ids = [str(r) for r in run_ids]
    conv = _convergence_array(convergence_steps, run_ids)
    offsets = _offsets(lengths)
    run_of = np.repeat(np.arange(lengths.size), lengths)

    edges = _edge_table(params, Z, paths, filtered, run_of, conv, run_ids, names, n_top)
    starts = paths[offsets[:-1]]
    ends = paths[offsets[1:] - 1]
    states = _state_table(params, Z, paths, filtered, run_of, starts, ends, run_ids, names, n_top)
    return TrainingMap(
        states=states,
        edges=edges,
        initial_states=sorted({int(s) for s in starts}),
        final_states=sorted({int(s) for s in ends}),
        feature_names=names,
    )


def _edge_table(params, Z, paths, filtered, run_of, conv, run_ids, names, n_top: int) -> pd.DataFrame:
    """One row per transition ``j -> k`` (``j != k``) some run takes (``EDGE_COLUMNS``).

    Parameters
    ----------
    params : HMMParams
    Z : numpy.ndarray, shape (n, d)
    paths : numpy.ndarray of int, shape (n,)
    filtered : numpy.ndarray, shape (n, K)
    run_of : numpy.ndarray of int, shape (n,)
        Run index of every checkpoint.
    conv : numpy.ndarray, shape (N,)
        Convergence step per run (NaN: never converged).
    run_ids, names : list of str
    n_top : int
    """
    means = np.asarray(params.means, dtype=float)
    trans = np.asarray(params.trans_mat, dtype=float)
    n_features = means.shape[1]
    # Transitions: t is the first checkpoint in the new state.
    change = np.flatnonzero((paths[1:] != paths[:-1]) & (run_of[1:] == run_of[:-1])) + 1
    sources, targets = paths[change - 1], paths[change]

    abs_grad = np.abs(posterior_gradient(params, Z[change], filtered[change]))  # (m, K, d)
    importance_uses = abs_grad[np.arange(change.size), targets] if change.size else np.zeros((0, n_features))

    edge_rows = []
    for j, k in sorted(set(zip(sources.tolist(), targets.tolist()))):
        uses = np.flatnonzero((sources == j) & (targets == k))
        runs_idx = np.unique(run_of[change[uses]])
        conv_runs = conv[runs_idx]
        conv_runs = conv_runs[np.isfinite(conv_runs)]
        mean_imp = importance_uses[uses].mean(axis=0)
        top = np.argsort(-mean_imp, kind="stable")[:n_top]
        delta = means[k] - means[j]
        edge_rows.append(
            {
                "source": int(j),
                "target": int(k),
                "trans_prob": float(trans[j, k]),
                "n_runs": int(runs_idx.size),
                "n_uses": int(uses.size),
                "runs": [run_ids[i] for i in runs_idx],
                "conv_mean": float(conv_runs.mean()) if conv_runs.size else np.nan,
                "conv_sd": float(conv_runs.std(ddof=1)) if conv_runs.size > 1 else np.nan,
                "conv_n": int(conv_runs.size),
                "top_features": [names[i] for i in top],
                "importance": [float(mean_imp[i]) for i in top],
                "mean_change": [float(delta[i]) for i in top],
                "label": ", ".join(format_change(names[i], delta[i]) for i in top),
            }
        )
    return pd.DataFrame(edge_rows, columns=EDGE_COLUMNS)


#: Checkpoints per block when taking gradients over all checkpoints: memory O(block K d)
#: instead of O(n K d) (40 runs x 20,000 checkpoints x K=8 x d=14 would be 0.7 GB).
GRADIENT_BLOCK = 16384


def _own_state_importance(params, Z: np.ndarray, filtered: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """``|d log p(s_t = k | z_1:t) / d z_t|`` at each checkpoint's own state ``k = paths[t]``, shape (n, d)."""
    out = np.empty(Z.shape, dtype=float)
    for a in range(0, paths.size, GRADIENT_BLOCK):
        b = min(a + GRADIENT_BLOCK, paths.size)
        grad = posterior_gradient(params, Z[a:b], filtered[a:b])  # (b - a, K, d)
        out[a:b] = np.abs(grad[np.arange(b - a), paths[a:b]])
    return out


def _state_table(params, Z, paths, filtered, run_of, starts, ends, run_ids, names, n_top: int) -> pd.DataFrame:
    """One row per state of the model, visited or not (``STATE_COLUMNS``).

    ``starts`` and ``ends`` (each ``(N,)``) are the first and last state of every run;
    the other arguments are those of :func:`_edge_table`.
    """
    n_states = np.asarray(params.means).shape[0]
    # Per-state importance: mean |gradient| over the checkpoints decoded as that state.
    state_abs = _own_state_importance(params, Z, filtered, paths) if paths.size else None
    state_rows = []
    for k in range(n_states):
        in_k = paths == k
        visiting = np.unique(run_of[in_k])
        # Dwell: lengths of maximal runs of k within a run.
        entries = np.flatnonzero(in_k & np.r_[True, (paths[1:] != paths[:-1]) | (run_of[1:] != run_of[:-1])])
        if in_k.any():
            imp = state_abs[in_k].mean(axis=0)
            top = np.argsort(-imp, kind="stable")[:n_top]
            top_names, top_imp = [names[i] for i in top], [float(imp[i]) for i in top]
        else:
            top_names, top_imp = [], []
        state_rows.append(
            {
                "state": k,
                "occupancy": float(in_k.mean()) if paths.size else 0.0,
                "n_checkpoints": int(in_k.sum()),
                "n_runs": int(visiting.size),
                "runs": [run_ids[i] for i in visiting],
                "mean_dwell": float(in_k.sum() / entries.size) if entries.size else np.nan,
                "is_initial": bool((starts == k).any()),
                "is_final": bool((ends == k).any()),
                "n_runs_start": int((starts == k).sum()),
                "n_runs_end": int((ends == k).sum()),
                "top_features": top_names,
                "top_importance": top_imp,
            }
        )
    return pd.DataFrame(state_rows, columns=STATE_COLUMNS)


def _convergence_array(convergence_steps, run_ids: list[str]) -> np.ndarray:
    if convergence_steps is None:
        return np.full(len(run_ids), np.nan)
    if isinstance(convergence_steps, pd.Series):
        return convergence_steps.reindex(run_ids).to_numpy(dtype=float)
    if isinstance(convergence_steps, dict):
        return np.array([convergence_steps.get(r, np.nan) for r in run_ids], dtype=float)
    arr = np.asarray(convergence_steps, dtype=float)
    if arr.shape != (len(run_ids),):
        raise BayesTrainmapError(f"convergence_steps has shape {arr.shape}, expected ({len(run_ids)},)")
    return arr
