"""Seed-level uncertainty: bootstrap / bagged refits over runs, states matched by role.

The exchangeable units of a training-map study are the runs (seeds), not the
checkpoints: thousands of autocorrelated checkpoints per run make any posterior that
treats them as independent given the state far too narrow (``DESIGN.md``,
"Uncertainty"). This module resamples the runs instead.

* :func:`map_quantities` -- every quantity a report reads off one fit (edge run counts,
  transition probabilities, state means, occupancies, the convergence regression,
  detours, the fork) on a given set of runs, plus each state's *role*: its means, mean
  occupancy and mean position along the runs' paths.
* :func:`match_by_role` -- Hungarian matching of one fit's states to a reference fit's
  states by role (not by label).
* :func:`resample_fits` -- ``B`` bags of runs drawn with replacement, a refit of the
  chosen K per bag warm-started at the reference (Baum-Welch for ``fitter="mle"``, the
  Pyro model's MAP by L-BFGS for ``fitter="map"`` -- states marginalised exactly, CPU
  or CUDA), the bag's quantities measured on the bag's own runs and relabelled by role.
* :func:`summarize_bags` -- the ``uncertainty`` dict of the report from the bags:
  *bagged* parameter intervals (quantiles over bags) and *posterior predictive*
  intervals for a new set of ``N`` seeds.
* :func:`robustness_section` -- share of bags reproducing each edge, the fork and each
  detour, and (optionally) how the chosen K varies across resamples.

Why bagging (BayesBag; Huggins & Miller, "Reproducible model selection using bagged
posteriors") and a point fit per bag: the bagged posterior is the average of the
posteriors given bootstrap resamples of the runs, so its spread includes the
seed-to-seed variation the plain posterior lacks. On the shipped runs a bag's own
posterior is about 14 times narrower than the spread between bags (issue 12: SVI 90%
widths of the state means against the seed bootstrap), i.e. it contributes about
1/200 of the bagged variance; representing each bag's posterior by its MAP point
loses nothing measurable and costs one L-BFGS fit per bag instead of an SVI fit.

Predictive intervals for a new set of ``N`` seeds: a bag's statistic ``T_b`` is the
statistic of a resampled set of ``N`` runs, so ``T_b - median_b T_b`` samples the
seed-to-seed deviation of an ``N``-run estimate. A new set's value is (population
value) + (its own deviation); with the population value drawn from the bagged
posterior (``T_b``) and the deviation from an independent bag (``T_b' - median_b T_b``), the
predictive draws are ``T_b + T_b' - median_b T_b`` (clipped to the quantity's range;
centred on the bags, see :func:`predictive_draws`). For
binary findings (edge used, detour, fork) the share of bags showing the finding is
already the probability that a new set of ``N`` seeds shows it.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from bayes_trainmap.analysis.detours import convergence_regression
from bayes_trainmap.analysis.detours import occupancy as occupancy_fractions
from bayes_trainmap.analysis.dissimilarity import is_forking
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.storage import to_jsonable
from bayes_trainmap.fitting.selection import select_n_states
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.emissions import gaussian_log_likelihood
from bayes_trainmap.inference.forward_backward import sample_paths, viterbi

__all__ = [
    "DEFAULT_BAGS",
    "FITTERS",
    "BagResult",
    "MapQuantities",
    "coefficient_predictive",
    "count_predictive",
    "decode_paths",
    "map_quantities",
    "match_by_role",
    "predictive_draws",
    "quantities_from_paths",
    "refit",
    "resample_fits",
    "resample_runs",
    "robustness_section",
    "summarize_bags",
]

logger = logging.getLogger(__name__)

FITTERS = ("mle", "map")
#: Bags (resamples of the runs) of the default report.
DEFAULT_BAGS = 16
#: k-means restarts per refit besides the warm start: lets a resample find another
#: configuration of the states (``benchmarks/replication.py``: split-half coverage of
#: the state means 83% -> 89% on sparse_parities with 2 restarts).
DEFAULT_BAG_RESTARTS = 2


# ---------------------------------------------------------------------------
# Quantities of one fit
# ---------------------------------------------------------------------------


@dataclass
class MapQuantities:
    """Map quantities of one fit on one set of runs (``K`` states, ``d`` features).

    Attributes
    ----------
    n_runs : int
    edge_runs : np.ndarray of int, shape (K, K)
        Number of runs whose path uses ``j -> k`` (zero diagonal).
    trans_mat : np.ndarray, shape (K, K)
    means : np.ndarray, shape (K, d)
    occupancy : np.ndarray, shape (K,)
        Mean over runs of the run's occupancy fraction of the state.
    position : np.ndarray, shape (K,)
        Mean over the checkpoints in the state of their relative position in their run
        (0 = first checkpoint, 1 = last); NaN for an unvisited state.
    coefficients : np.ndarray, shape (K,)
        Convergence-regression coefficients (SD units; NaN where not estimable).
    r_squared : float
    detour : np.ndarray of bool, shape (K,)
    forking : bool
    coef_se : np.ndarray, shape (K,), optional
        OLS standard errors of ``coefficients`` (NaN where not estimable; default all NaN).
    df_resid : float
        Residual degrees of freedom of the regression (NaN when it was not fitted).
    """

    n_runs: int
    edge_runs: np.ndarray
    trans_mat: np.ndarray
    means: np.ndarray
    occupancy: np.ndarray
    position: np.ndarray
    coefficients: np.ndarray
    r_squared: float
    detour: np.ndarray
    forking: bool
    coef_se: np.ndarray | None = None
    df_resid: float = float("nan")

    def __post_init__(self):
        if self.coef_se is None:
            self.coef_se = np.full(np.shape(self.coefficients), np.nan)

    @property
    def n_states(self) -> int:
        return int(self.means.shape[0])

    def permute(self, order: np.ndarray) -> MapQuantities:
        """Relabel: new state ``k`` is old state ``order[k]``."""
        o = np.asarray(order, dtype=np.int64)
        return MapQuantities(
            n_runs=self.n_runs,
            edge_runs=self.edge_runs[np.ix_(o, o)],
            trans_mat=self.trans_mat[np.ix_(o, o)],
            means=self.means[o],
            occupancy=self.occupancy[o],
            position=self.position[o],
            coefficients=self.coefficients[o],
            r_squared=self.r_squared,
            detour=self.detour[o],
            forking=self.forking,
            coef_se=self.coef_se[o],
            df_resid=self.df_resid,
        )


def _edge_runs(paths: np.ndarray, lengths: np.ndarray, n_states: int) -> np.ndarray:
    run_index = np.repeat(np.arange(lengths.size), lengths)
    src, dst = paths[:-1], paths[1:]
    keep = (run_index[:-1] == run_index[1:]) & (src != dst)
    used = np.zeros((lengths.size, n_states, n_states), dtype=bool)
    used[run_index[:-1][keep], src[keep], dst[keep]] = True
    return used.sum(axis=0)


def _positions(paths: np.ndarray, lengths: np.ndarray, n_states: int) -> np.ndarray:
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    denom = np.repeat(np.maximum(lengths - 1, 1), lengths).astype(float)
    rel = (np.arange(paths.size) - starts) / denom
    total = np.bincount(paths, weights=rel, minlength=n_states)
    count = np.bincount(paths, minlength=n_states).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


def decode_paths(params, Z: np.ndarray, lengths: np.ndarray, *, decode: str = "viterbi", rng=None) -> np.ndarray:
    """Viterbi paths, or one forward-filtering backward-sampling draw, shape (n,)."""
    if decode not in ("viterbi", "sample"):
        raise BayesTrainmapError(f"decode must be 'viterbi' or 'sample', got {decode!r}")
    log_emission = gaussian_log_likelihood(Z, params.means, params.covars, params.covariance_type)
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(params.start_prob), np.log(params.trans_mat)
    if decode == "viterbi":
        return np.asarray(viterbi(log_emission, log_start, log_trans, lengths)[0], dtype=np.int64)
    return np.asarray(sample_paths(log_emission, log_start, log_trans, lengths, rng), dtype=np.int64)


def quantities_from_paths(params, paths, lengths, convergence_steps=None) -> MapQuantities:
    """:class:`MapQuantities` of given state paths (``paths`` (n,), ``lengths`` (N,))."""
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    K = int(params.n_states)
    edge_runs = _edge_runs(paths, lengths, K)
    occ = occupancy_fractions(paths, lengths, K)
    coefficients = np.full(K, np.nan)
    coef_se = np.full(K, np.nan)
    detour = np.zeros(K, dtype=bool)
    r_squared, df_resid = float("nan"), float("nan")
    if convergence_steps is not None:
        y = np.asarray(convergence_steps, dtype=float)
        ok = np.isfinite(y)
        if ok.sum() >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reg = convergence_regression(occ[ok], y[ok])
            coefficients, detour, r_squared = reg.coefficients, reg.detour, float(reg.r_squared)
            coef_se, df_resid = reg.std_errors, float(reg.df_resid)
    visited = np.flatnonzero(occ.sum(axis=0) > 0)
    pairs = [(j, k) for j, k in zip(*np.nonzero(edge_runs))]
    return MapQuantities(
        n_runs=int(lengths.size),
        edge_runs=edge_runs,
        trans_mat=np.asarray(params.trans_mat, dtype=float),
        means=np.asarray(params.means, dtype=float),
        occupancy=occ.mean(axis=0),
        position=_positions(paths, lengths, K),
        coefficients=np.asarray(coefficients, dtype=float),
        r_squared=r_squared,
        detour=np.asarray(detour, dtype=bool),
        forking=bool(is_forking(pairs, K, visited_states=visited.tolist())),
        coef_se=np.asarray(coef_se, dtype=float),
        df_resid=df_resid,
    )


def map_quantities(
    params, Z, lengths, convergence_steps=None, *, decode: str = "viterbi", rng=None
) -> MapQuantities:
    """Decode ``Z`` under ``params`` and measure every map quantity.

    Parameters
    ----------
    params : HMMParams
    Z : np.ndarray, shape (n, d)
    lengths : np.ndarray of int, shape (N,)
    convergence_steps : np.ndarray, shape (N,), optional
        NaN for runs that never converge; without it the regression fields are NaN.
    decode : {"viterbi", "sample"}
    rng : numpy Generator, optional (FFBS only)
    """
    Z = np.asarray(Z, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    paths = decode_paths(params, Z, lengths, decode=decode, rng=rng)
    return quantities_from_paths(params, paths, lengths, convergence_steps)


def match_by_role(reference: MapQuantities, other: MapQuantities) -> np.ndarray:
    """Order ``o`` with ``other.permute(o)`` aligned to ``reference`` by role.

    The cost of pairing reference state ``k`` with state ``l`` is the sum of three
    squared differences, each divided by its spread over the reference states: the
    state means (averaged over features), the mean occupancy and the mean position on
    the path (an unvisited state takes position 0.5). Minimised by the Hungarian
    algorithm.

    Returns
    -------
    np.ndarray of int, shape (K,)
    """
    if reference.means.shape != other.means.shape:
        raise BayesTrainmapError(
            f"cannot match fits with means of shapes {reference.means.shape} and {other.means.shape}"
        )
    K = reference.n_states
    if K == 1:
        return np.zeros(1, dtype=np.int64)

    def spread(x):
        v = float(np.var(x, axis=0).mean()) if x.ndim > 1 else float(np.var(x))
        return v if v > 1e-12 else 1.0

    pos_r = np.nan_to_num(reference.position, nan=0.5)
    pos_o = np.nan_to_num(other.position, nan=0.5)
    cost = ((reference.means[:, None, :] - other.means[None, :, :]) ** 2).mean(-1) / spread(reference.means)
    cost = cost + (reference.occupancy[:, None] - other.occupancy[None, :]) ** 2 / spread(reference.occupancy)
    cost = cost + (pos_r[:, None] - pos_o[None, :]) ** 2 / spread(pos_r)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)].astype(np.int64)


# ---------------------------------------------------------------------------
# Resampling runs and refitting
# ---------------------------------------------------------------------------


def resample_runs(Z: np.ndarray, lengths: np.ndarray, index: np.ndarray):
    """The runs ``index`` (with repeats) concatenated: ``(Z_bag (n_b, d), lengths_bag (len(index),))``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = np.asarray(index, dtype=np.int64)
    rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in index])
    return np.ascontiguousarray(np.asarray(Z)[rows]), lengths[index]


def refit(
    Z, lengths, init_params, *, fitter: str = "mle", n_iter: int = 100, tol: float = 1e-4,
    min_covar: float = 1e-3, steps: int = 0, device: str = "cpu", prior=None, restarts: int = 0,
    seed: int = 0,
):
    """One refit of ``init_params``' K on ``Z``, warm-started at ``init_params``.

    With ``restarts > 0`` Baum-Welch also runs from that many k-means
    initialisations and the fit with the highest log-likelihood is kept, so a
    resample can land in another configuration of the states than the reference's.

    ``fitter="mle"``: Baum-Welch (``GaussianHMM``); ``"map"``: MAP of the Pyro model
    started from that Baum-Welch refit: :func:`inference.map_em.map_em` iterations
    (the MAP without the scale and LKJ prior terms, converged in tens of iterations),
    then at most ``steps`` L-BFGS iterations on the full log joint (default 0). That
    polish does not converge in any affordable number of iterations (the log joint
    keeps creeping up), and on the sparse-parities demo it moved the state means by at
    most 0.02 SD in 200 iterations from EM's point, against a spread of about 0.2 SD
    between bags; the same bags' spreads with and without it agreed. Returns ``(HMMParams, converged)``.
    """
    if fitter not in FITTERS:
        raise BayesTrainmapError(f"fitter must be one of {FITTERS}, got {fitter!r}")
    if fitter in ("mle", "map"):
        model = GaussianHMM(
            init_params.n_states, init_params.covariance_type, n_iter=n_iter, tol=tol,
            init=init_params, min_covar=min_covar, device=device, feature_names=list(init_params.feature_names),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Z, lengths)
            if int(restarts) > 0:
                fresh = GaussianHMM(
                    init_params.n_states, init_params.covariance_type, n_iter=n_iter, tol=tol,
                    n_restarts=int(restarts), min_covar=min_covar, device=device, random_state=seed,
                    feature_names=list(init_params.feature_names),
                ).fit(Z, lengths)
                if fresh.log_likelihood_ > model.log_likelihood_:
                    model = fresh
        if fitter == "mle":
            return model.params_, bool(model.converged_)
        start = dataclasses.replace(
            model.params_, feature_names=list(init_params.feature_names), normalization=dict(init_params.normalization)
        )
    # lazily: the Bayesian engine imports pyro, which MLE fits do not need
    from bayes_trainmap.inference.bayes_fit import fit_map

    engine_logger = logging.getLogger("inference.bayes_fit")
    level = engine_logger.level
    engine_logger.setLevel(logging.ERROR)  # one summary warning for all bags instead (seed_uncertainty)
    try:
        fit = fit_map(Z, lengths, start, prior=prior, steps=steps, em_steps=n_iter, device=device, progress=False)
    finally:
        engine_logger.setLevel(level)
    return fit.params, bool(fit.converged)


@dataclass
class BagResult:
    """Refits over ``B`` bags of runs, relabelled to the reference by role.

    Attributes
    ----------
    reference : MapQuantities
        The quantities of the reference fit on all runs.
    bags : list of MapQuantities, length B
        Each bag's quantities on its own runs, aligned to ``reference``.
    indices : np.ndarray of int, shape (B, N)
        The runs drawn into each bag.
    converged : np.ndarray of bool, shape (B,)
    fitter : str
    """

    reference: MapQuantities
    bags: list
    indices: np.ndarray
    converged: np.ndarray
    fitter: str

    @property
    def n_bags(self) -> int:
        return len(self.bags)

    def stack(self, name: str) -> np.ndarray:
        """Attribute ``name`` of every bag stacked along a new first axis."""
        return np.stack([np.asarray(getattr(b, name)) for b in self.bags])


def resample_fits(
    reference_params,
    Z: np.ndarray,
    lengths: np.ndarray,
    convergence_steps: np.ndarray | None = None,
    *,
    n_bags: int = DEFAULT_BAGS,
    fitter: str = "mle",
    seed: int = 0,
    progress: bool = False,
    decode: str = "viterbi",
    indices: np.ndarray | None = None,
    **fit_options,
) -> BagResult:
    """Bootstrap (``fitter="mle"``) or BayesBag-MAP (``"map"``) refits over runs.

    Parameters
    ----------
    reference_params : HMMParams
        Fit on all runs; fixes K and the labels, and warm-starts every refit.
    Z : np.ndarray, shape (n, d)
    lengths : np.ndarray of int, shape (N,)
    convergence_steps : np.ndarray, shape (N,), optional
    n_bags : int
    fitter : {"mle", "map"}
    seed : int
    progress : bool
    decode : {"viterbi", "sample"}
        How each bag's runs are decoded: Viterbi paths (the map's definition), or one
        forward-filtering backward-sampling path per run, so that a run whose state
        boundary is uncertain under the bag's fit contributes that uncertainty.
    indices : np.ndarray of int, shape (n_bags, N), optional
        The runs of each bag (e.g. another :class:`BagResult`'s ``indices``, to refit
        the same resamples with another fitter); default drawn from ``seed``.
    **fit_options
        Passed to :func:`refit` (``n_iter``, ``tol``, ``min_covar``, ``steps``,
        ``device``, ``prior``, ``restarts``).
    """
    if fitter not in FITTERS:
        raise BayesTrainmapError(f"fitter must be one of {FITTERS}, got {fitter!r}")
    if int(n_bags) < 1:
        raise BayesTrainmapError(f"the number of bags must be >= 1, got {n_bags!r}")
    Z = np.asarray(Z, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    N = lengths.size
    steps = None if convergence_steps is None else np.asarray(convergence_steps, dtype=float)
    reference = map_quantities(reference_params, Z, lengths, steps)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, N, size=(int(n_bags), N))  # drawn either way: same rng state for FFBS decoding
    indices = drawn if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.ndim != 2 or indices.shape[1] != N or indices.min() < 0 or indices.max() >= N:
        raise BayesTrainmapError(f"indices must have shape (n_bags, {N}) with entries in [0, {N})")
    bags, converged = [], []
    for b in tqdm(range(len(indices)), desc=f"resamples ({fitter})", disable=not progress, leave=False):
        Zb, lb = resample_runs(Z, lengths, indices[b])
        params, ok = refit(Zb, lb, reference_params, fitter=fitter, seed=seed + b, **fit_options)
        q = map_quantities(
            params, Zb, lb, None if steps is None else steps[indices[b]], decode=decode, rng=rng
        )
        bags.append(q.permute(match_by_role(reference, q)))
        converged.append(ok)
    return BagResult(reference, bags, indices, np.asarray(converged, dtype=bool), fitter)


# ---------------------------------------------------------------------------
# Intervals from bags
# ---------------------------------------------------------------------------


def predictive_draws(bag_values: np.ndarray, *, lower=None, upper=None):
    """Predictive draws ``T_b + T_b' - median(T)`` of a new set's statistic over all pairs ``b != b'``.

    ``T_b`` draws the population value from the bagged posterior and
    ``T_b' - median(T)`` the deviation of a new set of ``N`` seeds from it. The centre
    is the bags' median, not the estimate on all runs: where the bags are off-centre
    (refits landing in other configurations of the states), centring on the estimate
    would double that offset (on modular_addition it cut the split-half coverage of
    transition probabilities from 92% to 67%).

    Parameters
    ----------
    bag_values : np.ndarray, shape (B, ...)
        The statistic on each bag (NaN where not estimable).
    lower, upper : float, optional
        Range of the statistic; the draws are clipped to it.

    Returns
    -------
    np.ndarray, shape (B (B - 1), ...)
        NaN propagates. With one bag the bag values are returned unchanged.
    """
    values = np.asarray(bag_values, dtype=float)
    B = values.shape[0]
    if B < 2:
        out = values.copy()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmedian(values, axis=0)
        first, second = np.nonzero(~np.eye(B, dtype=bool))
        out = values[first] + values[second] - centre[None]
    if lower is not None or upper is not None:
        out = np.clip(out, lower, upper)
    return out


def coefficient_predictive(
    bag_coefficients: np.ndarray, bag_std_errors: np.ndarray, bag_df_resid: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Predictive draws of a new set's regression coefficients over all pairs ``b != b'``.

    ``T_b`` draws the population value from the bags, as in :func:`predictive_draws`.
    The new set's own deviation is the larger (in magnitude) of two draws: the bag
    deviation ``T_b' - median(T)`` and the OLS sampling error of an ``N``-run regression
    at bag ``b'``'s design, ``SE_b' * t`` with ``t`` Student-t on the bag's residual
    degrees of freedom. The bag deviations carry what the OLS error lacks (which runs,
    their decoding, the scale of their convergence steps); the OLS error is a floor the
    pairs bootstrap misses for rarely visited states, whose bootstrap spread is the
    downward-biased sandwich (HC0) variance of a high-leverage design. In a planted
    regression (16 runs, 4 states, one at 6% occupancy;
    ``tests/analysis/test_coefficient_predictive.py``) the 90% intervals cover a new
    sample's coefficient about 92% of the time, the bag deviations alone about 85%.

    Parameters
    ----------
    bag_coefficients, bag_std_errors : np.ndarray, shape (B, K)
        Each bag's coefficients and their OLS standard errors (NaN where not estimable).
    bag_df_resid : np.ndarray, shape (B,)
        Each bag's residual degrees of freedom (NaN: no standard errors).
    seed : int

    Returns
    -------
    np.ndarray, shape (B (B - 1), K)
        NaN where the first bag's coefficient is NaN. A NaN standard error or degrees
        of freedom leaves the bag deviation alone. With one bag the bag values.
    """
    T = np.asarray(bag_coefficients, dtype=float)
    B = T.shape[0]
    if B < 2:
        return T.copy()
    se = np.asarray(bag_std_errors, dtype=float)
    df = np.asarray(bag_df_resid, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(T, axis=0)
    first, second = np.nonzero(~np.eye(B, dtype=bool))
    rng = np.random.default_rng(seed)
    dof = np.where(np.isfinite(df) & (df >= 1), df, 1.0)[second]
    noise = se[second] * rng.standard_t(dof[:, None], size=(first.size, T.shape[1]))
    deviation = T[second] - centre[None]
    bigger = np.isfinite(noise) & ~(np.abs(deviation) >= np.abs(noise))
    return T[first] + np.where(bigger, noise, deviation)


def count_predictive(bag_counts: np.ndarray, n_runs: int, *, per_bag: int = 20, seed: int = 0) -> np.ndarray:
    """Posterior predictive draws of "how many of ``n_runs`` new seeds show it" per bag.

    The runs are exchangeable: in a new set each run shows the finding (uses an edge)
    independently with probability ``p``. Given a bag where ``x`` of its ``n_runs``
    runs show it, ``p ~ Beta(x + 1/2, n_runs - x + 1/2)`` (Jeffreys prior) and the new
    count is ``Binomial(n_runs, p)``; mixing over bags carries the uncertainty of the
    fit and the decoding. Unlike a resampling of the observed runs, this gives an
    edge no run of this set used a non-zero chance in a new set.

    Parameters
    ----------
    bag_counts : np.ndarray of int, shape (B, ...)
    n_runs : int
    per_bag : int
        Predictive draws per bag.
    seed : int

    Returns
    -------
    np.ndarray of float, shape (B * per_bag, ...)
    """
    counts = np.asarray(bag_counts, dtype=float)
    rng = np.random.default_rng(seed)
    rep_counts = np.repeat(counts, int(per_bag), axis=0)
    p = rng.beta(rep_counts + 0.5, n_runs - rep_counts + 0.5)
    return rng.binomial(int(n_runs), p).astype(float)


def _interval(values: np.ndarray, level: float, axis: int = 0):
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, [0.5, tail, 1.0 - tail], axis=axis)



def summarize_bags(result: BagResult, *, interval: float = 0.9) -> dict:
    """The report's ``uncertainty`` dict from bagged refits.

    Same keys as :func:`bayes_trainmap.fitting.bayesian.summarize` (so every renderer works),
    with ``method`` and ``labels`` saying what each interval is: transition
    probabilities, coefficients and R^2 get *bagged* parameter intervals
    (``*_lo``/``*_hi``) and posterior-predictive intervals for a new set of ``N``
    seeds (``*_pred_lo``/``*_pred_hi``); run counts of edges are predictive only;
    ``p_exists``/``p_detour``/``p_forking`` are the shares of bags showing the finding.
    """
    if not 0.0 < interval < 1.0:
        raise BayesTrainmapError(f"interval must be in (0, 1), got {interval!r}")
    ref, N = result.reference, result.reference.n_runs
    K = ref.n_states
    edge_runs = result.stack("edge_runs").astype(float)
    trans = result.stack("trans_mat")
    coefs = result.stack("coefficients")
    r2 = result.stack("r_squared")
    p_exists = (edge_runs > 0).mean(axis=0)
    runs_pred = count_predictive(edge_runs, N)
    trans_pred = predictive_draws(trans, lower=0, upper=1)
    coef_pred = coefficient_predictive(coefs, result.stack("coef_se"), result.stack("df_resid"))
    r2_pred = predictive_draws(r2, lower=0, upper=1)
    tp = _interval(trans, interval)
    tpp = _interval(trans_pred, interval)
    nr = _interval(runs_pred, interval)
    edges = []
    for j in range(K):
        for k in range(K):
            if j == k or (p_exists[j, k] == 0 and ref.edge_runs[j, k] == 0):
                continue
            edges.append(
                {
                    "source": j,
                    "target": k,
                    "p_exists": float(p_exists[j, k]),
                    "trans_prob_median": float(tp[0][j, k]),
                    "trans_prob_lo": float(tp[1][j, k]),
                    "trans_prob_hi": float(tp[2][j, k]),
                    "trans_prob_pred_lo": float(tpp[1][j, k]),
                    "trans_prob_pred_hi": float(tpp[2][j, k]),
                    "n_runs_median": float(nr[0][j, k]),
                    "n_runs_lo": float(nr[1][j, k]),
                    "n_runs_hi": float(nr[2][j, k]),
                }
            )
    c, cp = _interval(coefs, interval), _interval(coef_pred, interval)
    occ_med = np.median(result.stack("occupancy"), axis=0)
    states = [
        {
            "state": k,
            "coef_median": to_jsonable(c[0][k]),
            "coef_lo": to_jsonable(c[1][k]),
            "coef_hi": to_jsonable(c[2][k]),
            "coef_pred_lo": to_jsonable(cp[1][k]),
            "coef_pred_hi": to_jsonable(cp[2][k]),
            "p_detour": float(result.stack("detour")[:, k].mean()),
            "occupancy_median": float(occ_med[k]),
        }
        for k in range(K)
    ]
    r, rp = _interval(r2, interval), _interval(r2_pred, interval)
    return {
        "method": f"bagged ({result.fitter} refit per bag of runs)",
        "labels": {
            "trans_prob": "bagged posterior credible interval (BayesBag over runs)",
            "trans_prob_pred": f"posterior predictive for a new set of {N} seeds",
            "n_runs": f"posterior predictive for a new set of {N} seeds",
            "coef": "bagged posterior credible interval (BayesBag over runs)",
            "coef_pred": f"posterior predictive for a new set of {N} seeds",
            "r_squared": "bagged posterior credible interval (BayesBag over runs)",
            "r_squared_pred": f"posterior predictive for a new set of {N} seeds",
            "p_exists": f"share of bags whose map has the edge (predictive probability for {N} new seeds)",
            "p_detour": f"share of bags calling the state a detour (predictive probability for {N} new seeds)",
        },
        "edges": edges,
        "states": states,
        "r_squared": {
            "median": to_jsonable(r[0]),
            "lo": to_jsonable(r[1]),
            "hi": to_jsonable(r[2]),
            "pred_lo": to_jsonable(rp[1]),
            "pred_hi": to_jsonable(rp[2]),
        },
        "p_forking": float(np.mean([b.forking for b in result.bags])),
        "interval": float(interval),
        "n_draws": result.n_bags,
        "n_bags": result.n_bags,
        "bags_converged": float(result.converged.mean()),
        "alignment_ambiguous_rate": 0.0,
        "elbo": [],
    }


def robustness_section(result: BagResult, *, k_choices=None, chosen_k: int | None = None) -> dict:
    """Share of resampled fits reproducing each finding of the reference fit.

    Parameters
    ----------
    result : BagResult
    k_choices : sequence of int, optional
        K chosen by the selection on each of a few resamples of the runs.
    chosen_k : int, optional
        K of the reference fit.

    Returns
    -------
    dict
        ``n_resamples``, ``fitter``, ``edges`` (every edge of the reference map or of
        some bag: ``source, target, in_map, share``), ``forking`` (``in_map``,
        ``share``), ``detours`` (every state: ``state, detour, share``) and ``k``
        (``chosen``, ``choices``, ``share_same``) when ``k_choices`` is given.
    """
    ref = result.reference
    K = ref.n_states
    used = (result.stack("edge_runs") > 0).mean(axis=0)
    detour_share = result.stack("detour").mean(axis=0)
    edges = [
        {"source": j, "target": k, "in_map": bool(ref.edge_runs[j, k] > 0), "share": float(used[j, k])}
        for j in range(K)
        for k in range(K)
        if j != k and (ref.edge_runs[j, k] > 0 or used[j, k] > 0)
    ]
    edges.sort(key=lambda e: (not e["in_map"], -e["share"], e["source"], e["target"]))
    section = {
        "n_resamples": result.n_bags,
        "fitter": result.fitter,
        "matched_by": "role (state means, occupancy, position on the path; Hungarian)",
        "edges": edges,
        "forking": {
            "in_map": bool(ref.forking),
            "share": float(np.mean([b.forking for b in result.bags])),
        },
        "detours": [
            {"state": k, "detour": bool(ref.detour[k]), "share": float(detour_share[k])} for k in range(K)
        ],
    }
    if k_choices is not None:
        choices = [int(k) for k in k_choices]
        section["k"] = {
            "chosen": None if chosen_k is None else int(chosen_k),
            "choices": choices,
            "share_same": None if chosen_k is None or not choices else float(np.mean([k == chosen_k for k in choices])),
        }
    return section


# ---------------------------------------------------------------------------
# Stability of the chosen K, and the pipeline's entry point
# ---------------------------------------------------------------------------

#: Resamples of the K selection in the default report (one restart per K each).
DEFAULT_K_RESAMPLES = 2
INTERVAL_METHODS = ("bagged", "posterior")


def k_choices(
    Z_train, len_train, Z_val, len_val, states, *, n_resamples: int = DEFAULT_K_RESAMPLES, restarts: int = 1,
    covariance: str = "full", seed: int = 0, **select_options,
) -> list[int]:
    """K chosen by the held-out BIC selection on ``n_resamples`` resamples of the runs.

    Training and held-out runs are resampled with replacement separately (a run
    never lands on both sides), and each resample runs the selection over ``states``
    with ``restarts`` restarts per K.
    """
    rng = np.random.default_rng(seed)
    len_train, len_val = np.asarray(len_train, dtype=np.int64), np.asarray(len_val, dtype=np.int64)
    out = []
    for _ in range(int(n_resamples)):
        Zt, lt = resample_runs(Z_train, len_train, rng.integers(0, len_train.size, len_train.size))
        Zv, lv = resample_runs(Z_val, len_val, rng.integers(0, len_val.size, len_val.size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sel = select_n_states(
                Zt, lt, Zv, lv, states=list(states), n_restarts=restarts, covariance_type=covariance,
                random_state=int(rng.integers(2**31 - 1)), progress=False, **select_options,
            )
        out.append(int(sel.best_n_states))
    return out


def seed_uncertainty(
    mode: str,
    params,
    Z: np.ndarray,
    lengths: np.ndarray,
    convergence_steps: np.ndarray | None,
    *,
    intervals: str = "bagged",
    n_bags: int = DEFAULT_BAGS,
    interval: float = 0.9,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    map_steps: int = 0,
    restarts: int = DEFAULT_BAG_RESTARTS,
    k_selection: dict | None = None,
):
    """Resampling over runs for one fit: ``(uncertainty or None, robustness dict, settings)``.

    ``mode="mle"`` (or ``intervals="posterior"``) bootstraps with Baum-Welch refits
    and gives only the robustness section; the Bayesian modes with
    ``intervals="bagged"`` refit the Pyro model's MAP per bag and also return the
    bagged ``uncertainty`` dict (:func:`summarize_bags`). ``k_selection``: keyword
    arguments of :func:`k_choices` (``Z_train, len_train, Z_val, len_val, states``
    and options) for the stability of K; ``None`` skips it.
    """
    if intervals not in INTERVAL_METHODS:
        raise BayesTrainmapError(f"intervals must be one of {INTERVAL_METHODS}, got {intervals!r}")
    if int(n_bags) < 1:
        return None, None, {"n_bags": 0}
    bagged = mode != "mle" and intervals == "bagged"
    fitter = "map" if bagged else "mle"
    options = {"device": device, "restarts": int(restarts)}
    if fitter == "map":
        options["steps"] = int(map_steps)
    bags = resample_fits(
        params, Z, lengths, convergence_steps, n_bags=n_bags, fitter=fitter, seed=seed, progress=progress, **options
    )
    # refits that stopped at their iteration limit are recorded in the settings (converged_share)
    # and reported once, by the report's warnings
    choices = None
    if k_selection is not None:
        k_selection = dict(k_selection)
        choices = k_choices(**k_selection, seed=seed + 1)
    section = robustness_section(bags, k_choices=choices, chosen_k=params.n_states)
    uncertainty = summarize_bags(bags, interval=interval) if bagged else None
    settings = {"fitter": fitter, "n_bags": int(n_bags), "map_steps": int(map_steps) if bagged else None,
                "k_resamples": 0 if choices is None else len(choices), "restarts": int(restarts),
                "converged_share": float(bags.converged.mean())}
    return uncertainty, section, settings
