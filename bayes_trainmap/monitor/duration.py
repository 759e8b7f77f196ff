"""Convergence forecast with explicit dwell times: a semi-Markov absorbing chain.

Why. The chain of :mod:`bayes_trainmap.monitor.forecast` is memoryless within a
state: the chance of leaving a state, and of converging in it, is the same after one
checkpoint there as after a hundred. Training runs are not like that: a run on a
plateau leaves it after a typical time, and a run converges as it enters (or a
while after it enters) the state that follows the plateau. This model keeps the
same map but tracks how long the run has been in its state.

Model. The hidden state at checkpoint ``t`` is the pair ``(k, d)``: the map state
and the number of checkpoints the current stay in ``k`` had before ``t``
(``d = 0`` at entry; durations from ``D - 1`` on share the last index). From
``(k, d)`` the next checkpoint is

* ``(k, d + 1)`` with probability ``1 - leave[k, d]`` (stay one more checkpoint);
* ``(j, 0)`` with probability ``leave[k, d] * jump[k, j]`` (``jump``: the fitted
  transition matrix with its diagonal removed, rows renormalised; one per
  posterior draw in the Bayesian modes).

At every checkpoint ``t >= 1`` in ``(k, d)`` a run that has not converged crosses
the threshold for the first time with probability ``hazard[k, d]``. With a constant
``leave[k, d] = 1 - A_kk`` and ``hazard[k, d] = h_k`` this is exactly the chain of
:func:`~bayes_trainmap.monitor.forecast.forecast_convergence` (tested).

Estimates, on the fitted runs' Viterbi paths. ``leave[k, d]``: among checkpoints in
``k`` with duration index ``d`` that have a next checkpoint, the share whose next
checkpoint is in another state (a run's last stay is censored: at risk, never an
exit). ``hazard[k, d]``: among checkpoints ``t >= 1`` in ``(k, d)`` of runs that had
not crossed before ``t``, the share that are the run's first crossing. Both are
empirical discrete hazards, shrunk towards the state's duration-free rate with a
pseudo-count of ``prior_weight`` checkpoints: ``(events + a rate_k) / (at_risk + a)``,
so that a duration no fitted run reached falls back to the memoryless chain.

Filtering. :class:`DurationFilter` is the exact forward filter of this model with
the map's Gaussian emissions: ``p(k, d | z_1:t, not crossed at 1..t)``. It uses every
earlier non-crossing, not only the current one, and it is O(K D + K^2) per
checkpoint.

Forecast. From the filtered ``u_0`` over ``(k, d)``, with ``w_r`` the one-step
advance of ``u_{r-1}``: ``P(R = r) = sum(w_r * hazard)``, ``u_r = w_r * (1 - hazard)``,
up to the horizon; ``P(stuck)`` is the mass of ``u_H`` in the stuck states. Exact
for the model, no simulation (tested against a Monte-Carlo simulation of the
semi-Markov process that draws whole dwell times).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.monitor.forecast import Forecast, forecast_from_pmf

__all__ = [
    "DurationCounts",
    "DurationFilter",
    "DurationModel",
    "duration_counts",
    "estimate_duration_model",
    "forecast_with_durations",
    "jump_matrix",
]

#: Pseudo-count (checkpoints) of the duration-free rate in the dwell and crossing hazards.
PRIOR_WEIGHT = 1.0


@dataclass(frozen=True)
class DurationModel:
    """The semi-Markov absorbing chain (see the module docstring).

    Attributes
    ----------
    start : numpy.ndarray, shape (K,)
        State distribution at the first checkpoint (``d = 0``).
    jump : numpy.ndarray, shape (S, K, K)
        Where a run goes when it leaves ``k`` (zero diagonal; one per posterior draw,
        S = 1 for a point estimate).
    leave : numpy.ndarray, shape (K, D)
        ``P(next checkpoint in another state | k, d)``.
    hazard : numpy.ndarray, shape (K, D)
        ``P(first crossing at this checkpoint | k, d, not crossed before)``.
    stuck : list of int
        States in which no converged fitted run ends.
    """

    start: np.ndarray
    jump: np.ndarray
    leave: np.ndarray
    hazard: np.ndarray
    stuck: list

    @property
    def n_states(self) -> int:
        return int(self.leave.shape[0])

    @property
    def max_duration(self) -> int:
        return int(self.leave.shape[1])

    def advance(self, u: np.ndarray) -> np.ndarray:
        """One checkpoint of the chain without crossing: ``u`` (S, K, D) -> (S, K, D)."""
        stay = u * (1.0 - self.leave)
        w = np.zeros_like(u)
        w[..., 1:] = stay[..., :-1]
        w[..., -1] += stay[..., -1]
        out = (u * self.leave).sum(axis=-1)  # (S, K): mass leaving each state
        w[..., 0] += np.einsum("sk,skj->sj", out, self.jump)
        return w


@dataclass(frozen=True)
class DurationCounts:
    """Events and checkpoints at risk per ``(state, duration index)``, each (K, D)."""

    leave_events: np.ndarray
    leave_at_risk: np.ndarray
    cross_events: np.ndarray
    cross_at_risk: np.ndarray


def _duration_index(path: np.ndarray, max_duration: int) -> np.ndarray:
    """Checkpoints the current stay had before each checkpoint, capped at ``D - 1``, shape (T,)."""
    d = np.zeros(path.size, dtype=np.int64)
    for t in range(1, path.size):
        d[t] = d[t - 1] + 1 if path[t] == path[t - 1] else 0
    return np.minimum(d, max_duration - 1)


def duration_counts(
    paths: np.ndarray, lengths: np.ndarray, crossing: np.ndarray, n_states: int, max_duration: int
) -> DurationCounts:
    """Count exits and first crossings per ``(k, d)`` on decoded runs (see the module docstring).

    Parameters
    ----------
    paths : numpy.ndarray of int, shape (n,)
        Viterbi states, runs concatenated.
    lengths : numpy.ndarray of int, shape (N,)
    crossing : numpy.ndarray of int, shape (N,)
        First crossing index per run (-1: never).
    n_states : int
    max_duration : int
        D >= 1.

    Returns
    -------
    DurationCounts
    """
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    crossing = np.asarray(crossing, dtype=np.int64)
    if lengths.sum() != paths.size or crossing.shape != lengths.shape or max_duration < 1:
        raise BayesTrainmapError(
            f"paths ({paths.size}), lengths (sum {lengths.sum()}), crossing ({crossing.shape}) and "
            f"max_duration ({max_duration}) disagree"
        )
    K, D = n_states, int(max_duration)
    counts = [np.zeros(K * D, dtype=np.int64) for _ in range(4)]
    start = 0
    for length, c in zip(lengths, crossing):
        path = paths[start : start + length]
        code = path * D + _duration_index(path, D)
        counts[1] += np.bincount(code[:-1], minlength=K * D)
        counts[0] += np.bincount(code[:-1][path[1:] != path[:-1]], minlength=K * D)
        last = c if c >= 0 else length - 1
        counts[3] += np.bincount(code[1 : last + 1], minlength=K * D)
        if c >= 1:
            counts[2][code[c]] += 1
        start += length
    return DurationCounts(*(x.reshape(K, D) for x in counts))


def _shrunk_rate(events: np.ndarray, at_risk: np.ndarray, fallback: np.ndarray, weight: float) -> np.ndarray:
    """``(events + a rate_k) / (at_risk + a)`` with ``rate_k`` the state's pooled rate (else ``fallback``)."""
    total_risk = at_risk.sum(axis=1)
    rate = np.where(total_risk > 0, events.sum(axis=1) / np.maximum(total_risk, 1), fallback)
    return (events + weight * rate[:, None]) / (at_risk + weight)


def jump_matrix(trans_mat: np.ndarray) -> np.ndarray:
    """The transition matrix without its diagonal, rows renormalised: shape (K, K) or (S, K, K).

    A row that only stays (``A_kk = 1``) keeps its diagonal, so that its mass is never lost
    (such a state also gets ``leave = 0`` from :func:`estimate_duration_model`).
    """
    trans = np.asarray(trans_mat, dtype=float)
    eye = np.eye(trans.shape[-1], dtype=bool)
    off = np.where(eye, 0.0, trans)
    total = off.sum(axis=-1, keepdims=True)
    return np.where(total > 0, off / np.where(total > 0, total, 1.0), eye.astype(float))


def estimate_duration_model(
    paths: np.ndarray,
    lengths: np.ndarray,
    crossing: np.ndarray,
    trans_mat: np.ndarray,
    start_prob: np.ndarray,
    stuck: list,
    max_duration: int,
    *,
    prior_weight: float = PRIOR_WEIGHT,
) -> DurationModel:
    """Dwell and crossing hazards per ``(k, d)`` from decoded runs; the jumps from ``trans_mat``.

    Parameters
    ----------
    paths, lengths, crossing : see :func:`duration_counts`
    trans_mat : numpy.ndarray, shape (K, K) or (S, K, K)
        Fitted transition matrix (or posterior draws): the jump probabilities, and the
        duration-free leave rate ``1 - A_kk`` of a state the paths never visit.
    start_prob : numpy.ndarray, shape (K,)
    stuck : list of int
    max_duration : int
        D: durations from ``D - 1`` checkpoints on share one hazard.
    prior_weight : float
        Pseudo-count of the duration-free rates.

    Returns
    -------
    DurationModel
    """
    trans = np.asarray(trans_mat, dtype=float)
    trans = trans[None] if trans.ndim == 2 else trans
    K = trans.shape[-1]
    counts = duration_counts(paths, lengths, crossing, K, max_duration)
    diag = np.diagonal(trans.mean(axis=0))
    leave = _shrunk_rate(counts.leave_events, counts.leave_at_risk, 1.0 - diag, prior_weight)
    leave[diag >= 1.0] = 0.0  # a state the fitted chain never leaves
    hazard = _shrunk_rate(counts.cross_events, counts.cross_at_risk, np.zeros(K), prior_weight)
    return DurationModel(start=np.asarray(start_prob, dtype=float), jump=jump_matrix(trans), leave=leave,
                         hazard=hazard, stuck=list(stuck))


class DurationFilter:
    """Exact forward filter of the semi-Markov chain: ``p(k, d | z_1:t, not crossed)``.

    Parameters
    ----------
    model : DurationModel
        Filtering uses the mean of its jump draws.

    Attributes
    ----------
    joint : numpy.ndarray, shape (K, D) or None
        The filtered distribution after the last update.
    n_updates : int
    """

    def __init__(self, model: DurationModel):
        self.model = model
        self._one = DurationModel(start=model.start, jump=model.jump.mean(axis=0, keepdims=True),
                                  leave=model.leave, hazard=model.hazard, stuck=model.stuck)
        self.joint: np.ndarray | None = None
        self.n_updates = 0

    @property
    def filtered(self) -> np.ndarray | None:
        """``p(k | z_1:t, not crossed)``, shape (K,)."""
        return None if self.joint is None else self.joint.sum(axis=1)

    def update(self, log_b: np.ndarray, survived: bool = True) -> np.ndarray:
        """Add a checkpoint with ``log p(z_t | s_t = k)`` (K,); return the filtered (K, D).

        ``survived``: the checkpoint did not cross (ignored at the first checkpoint,
        where no crossing is modelled). Raises ValueError when the checkpoint is
        impossible under every state.
        """
        log_b = np.asarray(log_b, dtype=float)
        with np.errstate(invalid="ignore"):
            b = np.exp(log_b - np.max(log_b))
        m = self._one
        if self.joint is None:
            joint = np.zeros((m.n_states, m.max_duration))
            joint[:, 0] = m.start * b
        else:
            joint = m.advance(self.joint[None])[0] * b[:, None]
            if survived:
                joint = joint * (1.0 - m.hazard)
        total = joint.sum()
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"checkpoint {self.n_updates + 1} has zero probability under every state")
        self.joint = joint / total
        self.n_updates += 1
        return self.joint


def forecast_with_durations(
    joint: np.ndarray, model: DurationModel, horizon: int, *, level: float = 0.9
) -> Forecast:
    """Exact distribution of the checkpoints to the first crossing (see the module docstring).

    Parameters
    ----------
    joint : numpy.ndarray, shape (K, D)
        Current distribution over ``(state, duration index)`` given no crossing so
        far (:attr:`DurationFilter.joint`).
    model : DurationModel
    horizon : int
        Checkpoints left in the budget (H >= 0).
    level : float
        Interval level in (0, 1).

    Returns
    -------
    Forecast
        Mixed over the jump draws of ``model``.
    """
    joint = np.asarray(joint, dtype=float)
    if joint.shape != model.leave.shape:
        raise BayesTrainmapError(f"joint has shape {joint.shape}, the model {model.leave.shape}")
    if int(horizon) < 0:
        raise BayesTrainmapError(f"horizon must be >= 0 checkpoints, got {horizon}")
    if not 0.0 < float(level) < 1.0:
        raise BayesTrainmapError(f"level must be in (0, 1), got {level}")
    H = int(horizon)
    u = np.broadcast_to(joint / joint.sum(), (model.jump.shape[0], *joint.shape)).copy()
    pmf = np.zeros((u.shape[0], H))
    for r in range(H):
        w = model.advance(u)
        pmf[:, r] = (w * model.hazard).sum(axis=(1, 2))
        u = w * (1.0 - model.hazard)
    stuck = np.asarray(model.stuck, dtype=np.int64)
    p_stuck = float(u[:, stuck].sum(axis=(1, 2)).mean()) if stuck.size else 0.0
    return forecast_from_pmf(pmf.mean(axis=0), p_stuck, level)
