"""Split-half replication: do intervals from one set of seeds predict another set?

The runs are split at random into halves A and B. Intervals are computed on A by an
interval method; the same map quantities are measured on B (a Baum-Welch fit of the
same K on B, warm-started at A's fit, its states matched to A's by role with
:func:`bayes_trainmap.fitting.robustness.match_by_role`); an interval *covers* when B's value
lies inside it. Quantity classes:

* ``edge_fraction`` -- share of runs whose path uses ``j -> k``, for every edge of A's
  or B's map;
* ``trans_prob`` -- transition probabilities of A's map edges;
* ``means`` -- every state mean;
* ``coefficients`` -- convergence-regression coefficients (SD units) estimable on both
  halves;
* ``r_squared`` -- the regression's R^2;
* ``detour`` -- the detour call of every state: covered when B's call lies in A's
  level-``q`` predictive set (``{True}`` if the predictive probability is at least
  ``q``, ``{False}`` if at most ``1 - q``, else both).

Widths are reported as ratios to the seed bootstrap's percentile interval on the same
half (same level, Baum-Welch refits): 1 is the bootstrap's width. This module holds the
pure machinery; ``benchmarks/replication.py`` drives it on the shipped and simulated
sets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.fitting.robustness import (
    MapQuantities,
    coefficient_predictive,
    count_predictive,
    map_quantities,
    match_by_role,
    predictive_draws,
    refit,
    resample_fits,
    resample_runs,
)
from bayes_trainmap.inference.baum_welch import GaussianHMM

__all__ = [
    "CLASSES",
    "DISCRETE_CLASSES",
    "IntervalDraws",
    "draws_from_bags",
    "draws_from_posterior",
    "fit_half",
    "score_split",
    "split_half",
]

CLASSES = ("edge_fraction", "trans_prob", "means", "coefficients", "r_squared", "detour")


@dataclass
class IntervalDraws:
    """Draws (``S`` of them) whose quantiles are an interval method's intervals.

    Attributes
    ----------
    edge_fraction (S, K, K), trans_prob (S, K, K), means (S, K, d), coefficients (S, K),
    r_squared (S,), detour (S, K) bool
    label : str
    """

    edge_fraction: np.ndarray
    trans_prob: np.ndarray
    means: np.ndarray
    coefficients: np.ndarray
    r_squared: np.ndarray
    detour: np.ndarray
    label: str


def fit_half(Z, lengths, n_states: int, *, covariance: str = "full", restarts: int = 5, seed: int = 0, **em):
    """Baum-Welch fit of ``n_states`` on one half (k-means restarts), the half's own reference."""
    model = GaussianHMM(n_states, covariance, n_restarts=restarts, random_state=seed, **em)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(Z, lengths)
    return model.params_


def draws_from_bags(bags, *, predictive: bool) -> IntervalDraws:
    """Interval draws from :func:`resample_fits`: bag values, or predictive draws."""
    N = bags.reference.n_runs
    edge = bags.stack("edge_runs") / N
    trans = bags.stack("trans_mat")
    means = bags.stack("means")
    coefs = bags.stack("coefficients")
    r2 = bags.stack("r_squared")
    if predictive:
        edge = count_predictive(bags.stack("edge_runs"), N) / N
        trans = predictive_draws(trans, lower=0, upper=1)
        means = predictive_draws(means)
        coefs = coefficient_predictive(coefs, bags.stack("coef_se"), bags.stack("df_resid"))
        r2 = predictive_draws(r2, lower=0, upper=1)
    kind = "predictive" if predictive else "bagged"
    return IntervalDraws(edge, trans, means, coefs, r2, bags.stack("detour"), f"{bags.fitter} {kind}")


def draws_from_posterior(draws, label: str = "posterior") -> IntervalDraws:
    """Interval draws from :class:`bayes_trainmap.fitting.bayesian.PosteriorDraws`."""
    N = draws.occupancy.shape[1]
    return IntervalDraws(
        draws.edge_runs / N, draws.trans_mat, draws.means, draws.coefficients, draws.r_squared, draws.detour, label
    )


#: Classes whose draws are counts (of runs, here divided by N): their intervals are
#: quantiles without interpolation, i.e. observed values, not points between them.
DISCRETE_CLASSES = ("edge_fraction",)


def _bounds(values: np.ndarray, level: float, *, discrete: bool = False):
    tail = (1.0 - level) / 2.0
    method = "inverted_cdf" if discrete else "linear"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(values, [tail, 1.0 - tail], axis=0, method=method)
    return lo, hi


def _targets(ref_a: MapQuantities, q_b: MapQuantities):
    """Per class: (index tuple or mask into the class array, B's values there)."""
    K = ref_a.n_states
    off = ~np.eye(K, dtype=bool)
    edges = off & ((ref_a.edge_runs > 0) | (q_b.edge_runs > 0))
    map_edges = off & (ref_a.edge_runs > 0)
    coef_ok = np.isfinite(ref_a.coefficients) & np.isfinite(q_b.coefficients)
    return {
        "edge_fraction": (edges, (q_b.edge_runs / q_b.n_runs)[edges]),
        "trans_prob": (map_edges, q_b.trans_mat[map_edges]),
        "means": (np.ones(ref_a.means.shape, dtype=bool), q_b.means.ravel()),
        "coefficients": (coef_ok, q_b.coefficients[coef_ok]),
        "r_squared": (None, np.atleast_1d(q_b.r_squared)),
        "detour": (np.ones(K, dtype=bool), q_b.detour),
    }


def score_split(method: IntervalDraws, reference: IntervalDraws, ref_a: MapQuantities, q_b: MapQuantities, *, level=0.9):
    """Coverage of B's values by ``method``'s level intervals and width ratios to ``reference``.

    Count classes (:data:`DISCRETE_CLASSES`) take quantiles without interpolation: a
    count interval interpolated between the bags' counts (e.g. [19.8, 20] runs from
    one bag at 19 and fifteen at 20) has a width no set of runs can show. Where the
    reference interval has zero width the ratio is undefined (NaN), and counted.

    Returns
    -------
    dict class -> {"covered": bool array, "width_ratio": float array (NaN where the
    reference width is 0)}
    """
    out = {}
    for name, (where, truth) in _targets(ref_a, q_b).items():
        values = getattr(method, name)
        if name == "detour":
            p = values.mean(axis=0)[where]
            covered = np.where(truth, p > 1.0 - level, p < level)
            out[name] = {"covered": covered, "width_ratio": np.empty(0)}
            continue
        discrete = name in DISCRETE_CLASSES
        lo, hi = _bounds(values, level, discrete=discrete)
        rlo, rhi = _bounds(getattr(reference, name), level, discrete=discrete)
        if where is None:
            lo, hi, rlo, rhi = (np.atleast_1d(a) for a in (lo, hi, rlo, rhi))
        else:
            lo, hi, rlo, rhi = lo[where], hi[where], rlo[where], rhi[where]
        ok = np.isfinite(truth) & np.isfinite(lo) & np.isfinite(hi)
        covered = (lo[ok] <= truth[ok]) & (truth[ok] <= hi[ok])
        ref_w = (rhi - rlo)[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ref_w > 0, (hi - lo)[ok] / ref_w, np.nan)
        out[name] = {"covered": covered, "width_ratio": ratio}
    return out


def split_half(
    Z, lengths, convergence_steps, n_states: int, *, seed: int, methods, n_bags: int = 20, level: float = 0.9,
    covariance: str = "full", restarts: int = 5, bag_restarts: int = 0, decode: str = "viterbi",
):
    """One random split: fit both halves, compute every method's intervals on A, score on B.

    Parameters
    ----------
    Z : np.ndarray, shape (n, d)
    lengths : np.ndarray of int, shape (N,)
    convergence_steps : np.ndarray, shape (N,)
    n_states : int
    seed : int
        Seeds the split, the fits and the bags.
    methods : mapping name -> callable(params_a, Z_a, len_a, steps_a, bootstrap) -> IntervalDraws
        Extra interval methods; ``bootstrap`` (the Baum-Welch seed bootstrap's
        :class:`BagResult` on A) lets a method reuse it. The bootstrap's percentile
        (``"bootstrap"``) and predictive (``"bootstrap predictive"``) intervals are
        always scored.
    n_bags, level, covariance, restarts
    bag_restarts : int
        k-means restarts per bootstrap refit besides the warm start (see :func:`refit`).
    decode : {"viterbi", "sample"}
        Decoding of the bootstrap's bags (see :func:`resample_fits`); A's and B's own
        values always use Viterbi paths, the map's definition.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    N = lengths.size
    if N < 4:
        raise BayesTrainmapError(f"split-half replication needs at least 4 runs, got {N}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(N)
    half_a, half_b = np.sort(perm[: N // 2]), np.sort(perm[N // 2 : 2 * (N // 2)])
    steps = np.asarray(convergence_steps, dtype=float)
    Za, la = resample_runs(Z, lengths, half_a)
    Zb, lb = resample_runs(Z, lengths, half_b)
    sa, sb = steps[half_a], steps[half_b]
    params_a = fit_half(Za, la, n_states, covariance=covariance, restarts=restarts, seed=seed)
    ref_a = map_quantities(params_a, Za, la, sa)
    params_b, _ = refit(Zb, lb, params_a, fitter="mle")
    q_b = map_quantities(params_b, Zb, lb, sb)
    q_b = q_b.permute(match_by_role(ref_a, q_b))
    boot = resample_fits(
        params_a, Za, la, sa, n_bags=n_bags, fitter="mle", seed=seed, restarts=bag_restarts, decode=decode
    )
    reference = draws_from_bags(boot, predictive=False)
    scored = {
        "bootstrap": score_split(reference, reference, ref_a, q_b, level=level),
        "bootstrap predictive": score_split(
            draws_from_bags(boot, predictive=True), reference, ref_a, q_b, level=level
        ),
    }
    for name, make in dict(methods).items():
        scored[name] = score_split(make(params_a, Za, la, sa, boot), reference, ref_a, q_b, level=level)
    return scored
