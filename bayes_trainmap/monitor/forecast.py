"""Convergence forecast: an absorbing Markov chain on the map's states.

Model. A run that has not converged moves between states with the fitted
transition matrix ``A``; at every new checkpoint, in state ``k``, it crosses the
convergence threshold for the first time with probability ``h_k`` (the per-state
hazard, per checkpoint interval), after which it is absorbed. With
``D = diag(1 - h)`` and ``u_0`` the distribution of the current state given that the
run has not converged yet, the number ``R`` of further checkpoints to the first
crossing has

    P(R = r) = u_0 (A D)^{r-1} A h,      r = 1, 2, ...

computed here by the exact recursion ``w_r = u_{r-1} A``, ``P(R = r) = w_r . h``,
``u_r = w_r * (1 - h)`` up to a horizon ``H`` (the checkpoints left in the training
budget); the rest of the mass, ``sum(u_H)``, has not converged by then. A run is
**stuck** if it has not converged at the horizon and sits in a state in which no
converged training run ends: ``P(stuck) = sum_{k in stuck} u_H(k)``.

Hazards are estimated on the fitted runs' Viterbi paths: a checkpoint ``t >= 1`` of
a run is *at risk* if the run has not crossed before ``t``; it is an *event* if
``t`` is the run's first crossing. ``h_k = events_k / at_risk_k`` (0 for a state never
at risk). Runs that never cross contribute at-risk checkpoints only (censoring).

Hazards per edge. Convergence often coincides with a change of state (a run
crosses the threshold as it enters the final state), which a per-state hazard
spreads over the whole stay. With ``by="edge"`` the hazard is estimated per
transition ``j -> k`` (self-transitions included): ``H_jk = P(first crossing at t |
s_{t-1} = j, s_t = k, at risk)``, and the recursion becomes
``P(R = r) = u_{r-1} (A * H) 1``, ``u_r = u_{r-1} (A * (1 - H))`` (``*`` elementwise);
the per-state hazard is the case ``H_jk = h_k``. Both are exact for their chain.

Conditioning on the present. The filtered distribution ``p(s_t | z_1:t)`` does
not use the fact that checkpoint ``t`` has not crossed; by default the forecast
reweights it by ``1 - h`` (survival at ``t``). Earlier non-crossings are not used
(a second-order effect for small hazards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = [
    "Forecast",
    "Hazards",
    "estimate_hazards",
    "first_crossing_index",
    "forecast_convergence",
    "forecast_from_pmf",
    "stuck_states",
]


@dataclass(frozen=True)
class Hazards:
    """Per-state convergence hazard per checkpoint interval.

    Attributes
    ----------
    hazard : numpy.ndarray, shape (K,) (per state) or (K, K) (per edge ``j -> k``)
    events, at_risk : numpy.ndarray of int, same shape
    """

    hazard: np.ndarray
    events: np.ndarray
    at_risk: np.ndarray


@dataclass(frozen=True)
class Forecast:
    """Distribution of the checkpoints left until the first crossing.

    Attributes
    ----------
    pmf : numpy.ndarray, shape (H,)
        ``pmf[r - 1] = P(R = r)``, r = 1..H.
    p_converge : float
        ``P(R <= H)``: converges within the horizon.
    p_stuck : float
        Not converged at the horizon and in a state no converged run ends in.
    level : float
        Level of :attr:`interval`.
    median : int or None
        Median of R (None if ``P(R <= H) < 0.5``).
    interval : tuple of (int or None)
        Equal-tailed ``level`` interval of R in checkpoints; an end is None when it
        lies beyond the horizon.
    """

    pmf: np.ndarray
    p_converge: float
    p_stuck: float
    level: float
    median: int | None
    interval: tuple[int | None, int | None]

    @property
    def horizon(self) -> int:
        return int(self.pmf.size)

    def cdf(self) -> np.ndarray:
        """``P(R <= r)``, r = 1..H."""
        return np.cumsum(self.pmf)

    def quantile_given_converge(self, p: float) -> int | None:
        """The ``p``-quantile of R given ``R <= H`` (None if the run cannot converge within the horizon)."""
        mass = self.pmf.sum()
        return _quantile(np.cumsum(self.pmf) / mass, p) if mass > 0 else None

    def interval_given_converge(self) -> tuple[int | None, int | None]:
        """Equal-tailed :attr:`level` interval of R given ``R <= H``."""
        tail = (1.0 - self.level) / 2.0
        return self.quantile_given_converge(tail), self.quantile_given_converge(1.0 - tail)

    def mean_given_converge(self) -> float:
        """``E[R | R <= H]`` (NaN if the run cannot converge within the horizon)."""
        mass = self.pmf.sum()
        return float(np.arange(1, self.horizon + 1) @ self.pmf / mass) if mass > 0 else float("nan")


def first_crossing_index(values: np.ndarray, lengths: np.ndarray, threshold: float, higher_is_better: bool) -> np.ndarray:
    """Index within each run of the first checkpoint that crosses, -1 if none, shape (N,).

    NaN outcomes never cross.
    """
    values = np.asarray(values, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        crossed = values >= threshold if higher_is_better else values <= threshold
    out = np.full(lengths.size, -1, dtype=np.int64)
    start = 0
    for i, length in enumerate(lengths):
        hits = np.flatnonzero(crossed[start : start + length])
        if hits.size:
            out[i] = hits[0]
        start += length
    return out


def estimate_hazards(
    paths: np.ndarray, lengths: np.ndarray, crossing: np.ndarray, n_states: int, *, by: str = "state"
) -> Hazards:
    """Per-state (or per-edge) hazard from decoded runs (see the module docstring).

    Parameters
    ----------
    paths : numpy.ndarray of int, shape (n,)
        Viterbi states, runs concatenated.
    lengths : numpy.ndarray of int, shape (N,)
    crossing : numpy.ndarray of int, shape (N,)
        First crossing index per run (-1: never), from :func:`first_crossing_index`.
    n_states : int
    by : {"state", "edge"}
        Hazard per state of the checkpoint, or per transition into it.

    Returns
    -------
    Hazards
    """
    if by not in ("state", "edge"):
        raise BayesTrainmapError(f"hazards are estimated by 'state' or 'edge', got {by!r}")
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    crossing = np.asarray(crossing, dtype=np.int64)
    if lengths.sum() != paths.size or crossing.shape != lengths.shape:
        raise BayesTrainmapError(
            f"paths ({paths.size}), lengths (sum {lengths.sum()}) and crossing ({crossing.shape}) disagree"
        )
    K = n_states
    cells = K * K if by == "edge" else K
    events = np.zeros(cells, dtype=np.int64)
    at_risk = np.zeros(cells, dtype=np.int64)
    start = 0
    for length, c in zip(lengths, crossing):
        path = paths[start : start + length]
        code = path[1:] + (K * path[:-1] if by == "edge" else 0)  # index of checkpoint t = 1..T-1
        last = c if c >= 0 else length - 1
        if last >= 1:
            at_risk += np.bincount(code[:last], minlength=cells)
        if c >= 1:
            events[code[c - 1]] += 1
        start += length
    if by == "edge":
        events, at_risk = events.reshape(K, K), at_risk.reshape(K, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, events / np.maximum(at_risk, 1), 0.0)
    return Hazards(hazard=hazard, events=events, at_risk=at_risk)


def stuck_states(paths: np.ndarray, lengths: np.ndarray, crossing: np.ndarray, n_states: int) -> list[int]:
    """States in which no converged run ends (its last checkpoint's state)."""
    paths = np.asarray(paths, dtype=np.int64)
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64)) - 1
    finals = {int(paths[e]) for e, c in zip(ends, crossing) if c >= 0}
    return [k for k in range(n_states) if k not in finals]


def _quantile(cdf: np.ndarray, p: float) -> int | None:
    hit = np.flatnonzero(cdf >= p - 1e-12)
    return int(hit[0]) + 1 if hit.size else None


def forecast_convergence(
    state_probs: np.ndarray,
    trans_mat: np.ndarray,
    hazard: np.ndarray,
    horizon: int,
    stuck: list[int] | np.ndarray = (),
    *,
    level: float = 0.9,
    condition_on_survival: bool = True,
) -> Forecast:
    """Exact distribution of the checkpoints to convergence (see the module docstring).

    Parameters
    ----------
    state_probs : numpy.ndarray, shape (K,) or (S, K)
        Current state distribution (filtered); with a leading axis, one per
        posterior draw (paired with ``trans_mat``), and the forecast is their mixture.
    trans_mat : numpy.ndarray, shape (K, K) or (S, K, K)
    hazard : numpy.ndarray, shape (K,) or (K, K)
        Per-state (or per-edge ``j -> k``) hazard per checkpoint interval, in [0, 1].
    horizon : int
        Checkpoints left in the budget (H >= 0).
    stuck : sequence of int
        States in which no converged run ends.
    level : float
        Interval level in (0, 1).
    condition_on_survival : bool
        Reweight ``state_probs`` by ``1 - h`` (the current checkpoint has not crossed;
        with per-edge hazards, by the hazard of staying, ``1 - H_kk``).

    Returns
    -------
    Forecast
    """
    hazard = np.asarray(hazard, dtype=float)
    trans = np.asarray(trans_mat, dtype=float)
    probs = np.asarray(state_probs, dtype=float)
    K = hazard.shape[0]
    if trans.ndim == 2:
        trans = trans[None]
    if probs.ndim == 1:
        probs = np.broadcast_to(probs, (trans.shape[0], K))
    if trans.shape[1:] != (K, K) or probs.shape != (trans.shape[0], K) or hazard.shape not in ((K,), (K, K)):
        raise BayesTrainmapError(
            f"shapes disagree: state_probs {np.shape(state_probs)}, trans_mat {np.shape(trans_mat)}, "
            f"hazard {hazard.shape}"
        )
    if np.any(hazard < 0) or np.any(hazard > 1):
        raise BayesTrainmapError(f"hazards must lie in [0, 1], got {hazard.tolist()}")
    if int(horizon) < 0:
        raise BayesTrainmapError(f"horizon must be >= 0 checkpoints, got {horizon}")
    if not 0.0 < float(level) < 1.0:
        raise BayesTrainmapError(f"level must be in (0, 1), got {level}")
    H = int(horizon)
    edge_hazard = hazard if hazard.ndim == 2 else np.broadcast_to(hazard, (K, K))
    stay = 1.0 - (np.diag(hazard) if hazard.ndim == 2 else hazard)
    u = probs * stay if condition_on_survival else probs.copy()
    total = u.sum(axis=1, keepdims=True)
    # a state that converges at once (h = 1) cannot be the current, unconverged state
    u = np.where(total > 0, u / np.where(total > 0, total, 1.0), probs / probs.sum(axis=1, keepdims=True))
    pmf = np.zeros((trans.shape[0], H))
    converge = (trans * edge_hazard).sum(axis=2)  # (S, K): P(cross at the next checkpoint | s_t = j)
    carry = trans * (1.0 - edge_hazard)  # (S, K, K): move j -> k without crossing
    for r in range(H):
        pmf[:, r] = (u * converge).sum(axis=1)
        u = np.einsum("sj,sjk->sk", u, carry)
    stuck_idx = np.asarray(list(stuck), dtype=np.int64)
    p_stuck = float(u[:, stuck_idx].sum(axis=1).mean()) if stuck_idx.size else 0.0
    return forecast_from_pmf(pmf.mean(axis=0), p_stuck, level)


def forecast_from_pmf(pmf: np.ndarray, p_stuck: float, level: float = 0.9) -> Forecast:
    """The :class:`Forecast` summaries (median, interval, ``P(R <= H)``) of an exact pmf.

    Parameters
    ----------
    pmf : numpy.ndarray, shape (H,)
        ``P(R = r)``, r = 1..H (mixed over posterior draws already).
    p_stuck : float
    level : float
        Interval level in (0, 1).

    Returns
    -------
    Forecast
    """
    pmf = np.asarray(pmf, dtype=float)
    cdf = np.cumsum(pmf)
    tail = (1.0 - float(level)) / 2.0
    return Forecast(
        pmf=pmf,
        p_converge=float(cdf[-1]) if pmf.size else 0.0,
        p_stuck=float(p_stuck),
        level=float(level),
        median=_quantile(cdf, 0.5),
        interval=(_quantile(cdf, tail), _quantile(cdf, 1.0 - tail)),
    )
