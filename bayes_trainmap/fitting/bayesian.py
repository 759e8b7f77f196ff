"""Posterior uncertainty carried through the whole training-map analysis.

For ``S`` parameter sets drawn from the variational posterior of the Bayesian HMM
(:mod:`inference.bayes_fit`) this module

1. aligns each draw's state labels to the reference fit (Hungarian matching of the
   state means, :func:`align_to_reference`) and flags draws whose second-best
   matching is nearly as good ("ambiguous");
2. decodes every run (train and held-out) under the draw by **Viterbi**;
3. recomputes the pruned edges (``j -> k``, ``j != k``, used by some run's path), the
   number of runs using each edge, the occupancies and the convergence regression,
   drawing the regression coefficients from the regression's own posterior;
4. summarises all of it (:func:`summarize`) into the ``uncertainty`` dict the report
   renders, and exports the draws to ArviZ (:func:`to_inference_data`).

Why Viterbi and not forward-filtering backward-sampling: the training map, its edges
and the occupancies of the point analysis are *defined* on Viterbi paths (section 2.2
of the paper; ``DESIGN.md``), so Viterbi under each posterior draw gives the posterior
of exactly those quantities. A path sampled by FFBS answers a different question --
any brief flicker at a state boundary in a single sampled path creates an edge, so
``P(edge exists)`` would be inflated towards 1 for every pair of neighbouring states
whatever the parameters. ``decode="sample"`` is available for the path-level view.

Regression posterior: with ``y`` the standardised convergence steps of the converged
runs and ``X`` their occupancies (visited states only, no separate intercept, exactly
as :func:`bayes_trainmap.analysis.detours.convergence_regression`), the flat prior
``p(beta, sigma^2) ∝ 1/sigma^2`` gives the exact normal-inverse-gamma posterior
``sigma^2 | y ~ RSS / chi^2_{n-p}``, ``beta | sigma^2, y ~ N(beta_hat, sigma^2 (X^T X)^-1)``
(marginally a multivariate t), on the full-rank reduced design when the occupancies
are rank-deficient (coefficients the data do not identify are NaN in that draw and
never detours; see :mod:`bayes_trainmap.analysis.identifiability`). One ``(beta, sigma^2)`` is drawn per HMM draw, so the
intervals count both the HMM's uncertainty and that of a finite number of seeds.
``R^2`` is the Bayesian R^2 of Gelman et al. (2019), ``var(X beta) / (var(X beta) +
sigma^2)`` per draw, which likewise carries both.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from bayes_trainmap.analysis.detours import occupancy as occupancy_fractions
from bayes_trainmap.analysis.identifiability import occupancy_design
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.storage import to_jsonable
from bayes_trainmap.data.fitdir import POSTERIOR_FILE
from bayes_trainmap.fitting.config import BAYESIAN_MODES
from bayes_trainmap.inference.emissions import gaussian_log_likelihood
from bayes_trainmap.inference.forward_backward import sample_paths, viterbi

__all__ = [
    "DEFAULT_DRAWS",
    "DEFAULT_STEPS",
    "DEFAULT_LR",
    "PosteriorDraws",
    "BayesianResult",
    "align_to_reference",
    "propagate_draws",
    "summarize",
    "to_inference_data",
    "fit_bayesian",
]

logger = logging.getLogger(__name__)

DEFAULT_DRAWS = 200
#: Maximum optimisation steps (L-BFGS iterations for MAP) and Adam learning rates
#: (SVI; MAP uses it only with optimizer="adam") per mode: the CLI defaults.
DEFAULT_STEPS = {"map": 500, "svi": 3000}
DEFAULT_LR = {"map": 0.02, "svi": 0.01}


# ---------------------------------------------------------------------------
# Label alignment
# ---------------------------------------------------------------------------


def align_to_reference(
    draw_means: np.ndarray, reference_means: np.ndarray, *, margin: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Match each draw's states to the reference states by their means.

    Parameters
    ----------
    draw_means : np.ndarray, shape (S, K, d)
    reference_means : np.ndarray, shape (K, d)
    margin : float
        A draw is *ambiguous* when its second-best assignment costs less than
        ``(1 + margin)`` times its best one (squared distances of matched means): the
        draw's means are then about as far from the reference as the reference states
        are from each other, so the labels are not identified by the means.

    Returns
    -------
    orders : np.ndarray of int, shape (S, K)
        ``orders[s, k]`` is the draw's state that becomes state ``k``
        (the convention of :meth:`HMMParams.permute`).
    ambiguous : np.ndarray of bool, shape (S,)
    """
    draw_means = np.asarray(draw_means, dtype=float)
    ref = np.asarray(reference_means, dtype=float)
    if draw_means.ndim != 3 or draw_means.shape[1:] != ref.shape:
        raise BayesTrainmapError(
            f"draw_means must have shape (S, {ref.shape[0]}, {ref.shape[1]}), "
            f"got {draw_means.shape}"
        )
    S, K, _ = draw_means.shape
    orders = np.empty((S, K), dtype=np.int64)
    ambiguous = np.zeros(S, dtype=bool)
    for s in range(S):
        cost = ((ref[:, None, :] - draw_means[s][None, :, :]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(cost)
        orders[s] = cols[np.argsort(rows)]
        best = cost[rows, cols].sum()
        # The second-best assignment differs from the best in some pair (k, order[k]);
        # forbidding each pair in turn and re-solving finds it exactly.
        second = np.inf
        big = cost.max() * K * 10.0 + 1.0
        for k in range(K if K > 1 else 0):
            forbidden = cost.copy()
            forbidden[k, orders[s, k]] = big
            r, c = linear_sum_assignment(forbidden)
            second = min(second, forbidden[r, c].sum())
        ambiguous[s] = second < (1.0 + margin) * best
    return orders, ambiguous


# ---------------------------------------------------------------------------
# Per-draw analysis
# ---------------------------------------------------------------------------


@dataclass
class PosteriorDraws:
    """Aligned posterior draws of the parameters and the derived quantities.

    Attributes (``S`` draws, ``K`` states, ``d`` features, ``N`` runs)
    -------------------------------------------------------------------
    start_prob (S, K), trans_mat (S, K, K), means (S, K, d), scales (S, K, d)
        HMM parameters; ``scales`` are the per-feature state standard deviations.
    edge_exists (S, K, K) bool, edge_runs (S, K, K) int
        Whether some run's path uses ``j -> k`` (``j != k``), and how many runs do.
    occupancy (S, N, K)
        Per-run occupancy fractions of every run (train and held-out).
    coefficients (S, K)
        Regression coefficient draws (NaN where the state is unvisited in that draw).
    detour (S, K) bool
    r_squared (S,)
        Bayesian R^2.
    ambiguous (S,) bool
        Label alignment was ambiguous.
    feature_names : list of str
    """

    start_prob: np.ndarray
    trans_mat: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    edge_exists: np.ndarray
    edge_runs: np.ndarray
    occupancy: np.ndarray
    coefficients: np.ndarray
    detour: np.ndarray
    r_squared: np.ndarray
    ambiguous: np.ndarray
    feature_names: list[str] = field(default_factory=list)

    @property
    def n_draws(self) -> int:
        return int(self.start_prob.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.start_prob.shape[1])


def _edge_counts(paths: np.ndarray, lengths: np.ndarray, n_states: int) -> np.ndarray:
    """Number of runs whose path uses each transition ``j -> k`` with ``j != k``; (K, K)."""
    run_index = np.repeat(np.arange(lengths.size), lengths)
    src, dst = paths[:-1], paths[1:]
    keep = (run_index[:-1] == run_index[1:]) & (src != dst)
    used = np.zeros((lengths.size, n_states, n_states), dtype=bool)
    used[run_index[:-1][keep], src[keep], dst[keep]] = True
    return used.sum(axis=0)


def _regression_draw(occ: np.ndarray, y_raw: np.ndarray, rng: np.random.Generator):
    """One draw of (coefficients (K,), detour (K,), Bayesian R^2) from the regression posterior.

    The posterior is taken on the full-rank reduced design of
    :func:`bayes_trainmap.analysis.identifiability.occupancy_design` (same column space as
    the visited states' occupancies): coefficients of states the design does not
    identify are NaN and never detours, so a rank-deficient draw is handled like
    the point regression instead of factorising a singular Gram matrix. A draw
    whose fit is saturated (runs <= rank) gives no coefficients.
    """
    n, K = occ.shape
    coefficients = np.full(K, np.nan)
    detour = np.zeros(K, dtype=bool)
    visited_by = (occ > 0).sum(axis=0)
    keep = np.flatnonzero(visited_by > 0)
    sd = y_raw.std(ddof=1) if n > 1 else 0.0
    if keep.size == 0 or not sd > 0:
        return coefficients, detour, np.nan
    design = occupancy_design(occ[:, keep])
    r = design.rank
    if r == 0 or n <= r:
        return coefficients, detour, np.nan
    y = (y_raw - y_raw.mean()) / sd
    R = design.reduced()
    # R has full column rank: beta | sigma^2 ~ N(beta_hat, sigma^2 (R^T R)^-1).
    q, tri = np.linalg.qr(R)
    beta_hat = np.linalg.solve(tri, q.T @ y)
    rss = float(((y - R @ beta_hat) ** 2).sum())
    sigma2 = rss / rng.chisquare(n - r)
    # (R^T R)^-1 = tri^-1 tri^-T, so tri^-1 z has that covariance for z ~ N(0, I).
    beta = beta_hat + np.sqrt(sigma2) * np.linalg.solve(tri, rng.standard_normal(r))
    est = keep[design.identified_columns]
    coefficients[est] = beta[design.coefficient_positions()]
    if r >= 2:
        detour[est] = (coefficients[est] > 0) & (visited_by[est] < n)
    fitted_var = float(np.var(R @ beta, ddof=1))
    total = fitted_var + sigma2
    return coefficients, detour, (fitted_var / total if total > 0 else np.nan)


def _decode(params, Z, lengths, decode: str, rng):
    log_emission = gaussian_log_likelihood(Z, params.means, params.covars, params.covariance_type)
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(params.start_prob), np.log(params.trans_mat)
    if decode == "viterbi":
        return viterbi(log_emission, log_start, log_trans, lengths)[0]
    return sample_paths(log_emission, log_start, log_trans, lengths, rng)


def propagate_draws(
    param_draws: list,
    reference,
    Z: np.ndarray,
    lengths: np.ndarray,
    convergence_steps: np.ndarray | None = None,
    *,
    decode: str = "viterbi",
    margin: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> PosteriorDraws:
    """Align, decode and re-analyse every posterior draw.

    Parameters
    ----------
    param_draws : list of HMMParams, length S
        Posterior draws (any labelling).
    reference : HMMParams
        The reference fit whose state labels the draws are aligned to.
    Z : np.ndarray, shape (n, d)
        z-scored features of every run to decode (train and held-out).
    lengths : np.ndarray of int, shape (N,)
    convergence_steps : np.ndarray, shape (N,), optional
        Convergence step of each run, NaN where it never converged. Without it the
        regression quantities are NaN.
    decode : {"viterbi", "sample"}
        Viterbi paths (default; see the module docstring) or FFBS sampled paths.
    margin : float
        Ambiguity margin of :func:`align_to_reference`.
    seed : int
        Seeds the regression draws (and FFBS).
    progress : bool
        tqdm progress bar over draws.
    """
    from tqdm.auto import tqdm

    if decode not in ("viterbi", "sample"):
        raise BayesTrainmapError(f"decode must be 'viterbi' or 'sample', got {decode!r}")
    if not param_draws:
        raise BayesTrainmapError("need at least one posterior draw")
    Z = np.asarray(Z, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != Z.shape[0]:
        raise BayesTrainmapError(f"lengths sum to {lengths.sum()}, expected Z.shape[0] = {Z.shape[0]}")
    K = reference.n_states
    if convergence_steps is None:
        convergence_steps = np.full(lengths.size, np.nan)
    convergence_steps = np.asarray(convergence_steps, dtype=float)
    if convergence_steps.shape != lengths.shape:
        raise BayesTrainmapError(
            f"convergence_steps must have shape {lengths.shape}, got {convergence_steps.shape}"
        )
    converged = np.isfinite(convergence_steps)
    rng = np.random.default_rng(seed)

    orders, ambiguous = align_to_reference(
        np.stack([p.means for p in param_draws]), reference.means, margin=margin
    )
    S, N = len(param_draws), lengths.size
    out = {
        "start_prob": np.empty((S, K)),
        "trans_mat": np.empty((S, K, K)),
        "means": np.empty((S, K, Z.shape[1])),
        "scales": np.empty((S, K, Z.shape[1])),
        "edge_runs": np.empty((S, K, K), dtype=np.int64),
        "occupancy": np.empty((S, N, K)),
        "coefficients": np.full((S, K), np.nan),
        "detour": np.zeros((S, K), dtype=bool),
        "r_squared": np.full(S, np.nan),
    }
    for s in tqdm(range(S), desc="posterior draws", disable=not progress, leave=False):
        params = param_draws[s].permute(orders[s])
        paths = _decode(params, Z, lengths, decode, rng)
        out["start_prob"][s] = params.start_prob
        out["trans_mat"][s] = params.trans_mat
        out["means"][s] = params.means
        out["scales"][s] = np.sqrt(np.einsum("kii->ki", params.full_covars()))
        out["edge_runs"][s] = _edge_counts(paths, lengths, K)
        occ = occupancy_fractions(paths, lengths, K)
        out["occupancy"][s] = occ
        if converged.sum() >= 2:
            coef, detour, r2 = _regression_draw(occ[converged], convergence_steps[converged], rng)
            out["coefficients"][s], out["detour"][s], out["r_squared"][s] = coef, detour, r2
    return PosteriorDraws(
        edge_exists=out["edge_runs"] > 0,
        ambiguous=ambiguous,
        feature_names=list(reference.feature_names),
        **out,
    )


# ---------------------------------------------------------------------------
# Summaries and ArviZ export
# ---------------------------------------------------------------------------


def _quantiles(values: np.ndarray, interval: float, axis: int = 0):
    """Median and equal-tailed interval, ignoring NaN draws (all-NaN gives NaN)."""
    tail = (1.0 - interval) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, lo, hi = np.nanquantile(values, [0.5, tail, 1.0 - tail], axis=axis)
    return med, lo, hi



def summarize(draws: PosteriorDraws, *, interval: float = 0.9, elbo=()) -> dict:
    """The ``uncertainty`` dict rendered by the report.

    Edges are every ``j -> k`` (``j != k``) that exists in at least one draw, ordered
    by source then target. Medians and intervals are equal-tailed posterior quantiles;
    ``occupancy_median`` is the median over draws of the state's mean occupancy over
    runs.
    """
    if not 0.0 < interval < 1.0:
        raise BayesTrainmapError(f"interval must be in (0, 1), got {interval!r}")
    K = draws.n_states
    edges = []
    p_exists = draws.edge_exists.mean(axis=0)
    tp_med, tp_lo, tp_hi = _quantiles(draws.trans_mat, interval)
    nr_med, nr_lo, nr_hi = _quantiles(draws.edge_runs.astype(float), interval)
    for j in range(K):
        for k in range(K):
            if j == k or p_exists[j, k] == 0:
                continue
            edges.append(
                {
                    "source": j,
                    "target": k,
                    "p_exists": float(p_exists[j, k]),
                    "trans_prob_median": float(tp_med[j, k]),
                    "trans_prob_lo": float(tp_lo[j, k]),
                    "trans_prob_hi": float(tp_hi[j, k]),
                    "n_runs_median": float(nr_med[j, k]),
                    "n_runs_lo": float(nr_lo[j, k]),
                    "n_runs_hi": float(nr_hi[j, k]),
                }
            )
    c_med, c_lo, c_hi = _quantiles(draws.coefficients, interval)
    occ_med = np.median(draws.occupancy.mean(axis=1), axis=0)
    states = [
        {
            "state": k,
            "coef_median": to_jsonable(c_med[k]),
            "coef_lo": to_jsonable(c_lo[k]),
            "coef_hi": to_jsonable(c_hi[k]),
            "p_detour": float(draws.detour[:, k].mean()),
            "occupancy_median": float(occ_med[k]),
        }
        for k in range(K)
    ]
    r_med, r_lo, r_hi = _quantiles(draws.r_squared, interval)
    return {
        "edges": edges,
        "states": states,
        "r_squared": {"median": to_jsonable(r_med), "lo": to_jsonable(r_lo), "hi": to_jsonable(r_hi)},
        "interval": float(interval),
        "n_draws": draws.n_draws,
        "alignment_ambiguous_rate": float(draws.ambiguous.mean()),
        "elbo": [float(v) for v in elbo],
    }


def to_inference_data(draws: PosteriorDraws, *, elbo=()):
    """ArviZ ``InferenceData`` of the aligned draws (one chain).

    Groups: ``posterior`` -- parameters ``start_prob (state)``, ``trans_mat
    (from_state, to_state)``, ``means``/``scales (state, feature)`` and derived
    ``coefficients (state)``, ``occupancy (state)`` (mean over runs),
    ``run_occupancy (run, state)``, ``edge_exists``/``edge_runs (from_state,
    to_state)``, ``detour (state)``, ``r_squared``; ``sample_stats`` --
    ``alignment_ambiguous``; ``constant_data`` -- ``elbo (svi_step)``.
    """
    import arviz as az

    K = draws.n_states
    features = list(draws.feature_names) or [f"z{i}" for i in range(draws.means.shape[-1])]
    one_chain = lambda a: np.asarray(a)[None]  # noqa: E731
    posterior = {
        "start_prob": draws.start_prob,
        "trans_mat": draws.trans_mat,
        "means": draws.means,
        "scales": draws.scales,
        "coefficients": draws.coefficients,
        "occupancy": draws.occupancy.mean(axis=1),
        "run_occupancy": draws.occupancy,
        "edge_exists": draws.edge_exists.astype(float),
        "edge_runs": draws.edge_runs.astype(float),
        "detour": draws.detour.astype(float),
        "r_squared": draws.r_squared,
    }
    dims = {
        "start_prob": ["state"],
        "trans_mat": ["from_state", "to_state"],
        "means": ["state", "feature"],
        "scales": ["state", "feature"],
        "coefficients": ["state"],
        "occupancy": ["state"],
        "run_occupancy": ["run", "state"],
        "edge_exists": ["from_state", "to_state"],
        "edge_runs": ["from_state", "to_state"],
        "detour": ["state"],
        "elbo": ["svi_step"],
    }
    coords = {
        "state": np.arange(K),
        "from_state": np.arange(K),
        "to_state": np.arange(K),
        "feature": features,
        "run": np.arange(draws.occupancy.shape[1]),
        "svi_step": np.arange(len(elbo)),
    }
    return az.from_dict(
        posterior={name: one_chain(v) for name, v in posterior.items()},
        sample_stats={"alignment_ambiguous": one_chain(draws.ambiguous.astype(float))},
        constant_data={"elbo": np.asarray(elbo, dtype=float)},
        coords=coords,
        dims=dims,
    )


# ---------------------------------------------------------------------------
# Pipeline entry point
# ---------------------------------------------------------------------------


@dataclass
class BayesianResult:
    """Outcome of :func:`fit_bayesian`.

    Attributes
    ----------
    mode : {"map", "svi"}
    params : HMMParams
        Point estimate (MAP value, or posterior median for SVI) -- analyse it like an MLE.
    fit : inference.bayes_fit.BayesianFit
    uncertainty : dict or None
        :func:`summarize` output (``None`` for ``mode="map"``, which has no posterior).
    draws : PosteriorDraws or None
    """

    mode: str
    params: object
    fit: object
    uncertainty: dict | None
    draws: PosteriorDraws | None

    @property
    def elbo(self) -> list[float]:
        return [float(v) for v in self.fit.elbo_history]

    def inference_data(self):
        """ArviZ ``InferenceData`` of the posterior draws (SVI only)."""
        if self.draws is None:
            raise BayesTrainmapError(f"mode {self.mode!r} has no posterior draws; use mode='svi'")
        return to_inference_data(self.draws, elbo=self.elbo)

    def write_posterior(self, fit_dir: str | os.PathLike) -> Path | None:
        """Write ``posterior.nc`` (ArviZ netCDF via h5netcdf) into ``fit_dir``.

        Returns the path, or ``None`` when there are no draws (MAP).
        """
        if self.draws is None:
            return None
        path = Path(fit_dir) / POSTERIOR_FILE
        self.inference_data().to_netcdf(str(path))
        return path


def fit_bayesian(
    mode: str,
    Z_train: np.ndarray,
    len_train: np.ndarray,
    Z_all: np.ndarray,
    len_all: np.ndarray,
    mle_params,
    *,
    convergence_steps: np.ndarray | None = None,
    draws: int = DEFAULT_DRAWS,
    steps: int | None = None,
    lr: float | None = None,
    guide: str = "auto",
    prior=None,
    device: str = "cpu",
    seed: int = 0,
    decode: str = "viterbi",
    interval: float = 0.9,
    ambiguity_margin: float = 0.5,
    progress: bool = True,
) -> BayesianResult:
    """Fit the Bayesian HMM (``mode="map"`` or ``"svi"``) and propagate its uncertainty.

    Parameters
    ----------
    mode : {"map", "svi"}
    Z_train : np.ndarray, shape (n_train, d)
        z-scored training runs, concatenated.
    len_train : np.ndarray of int, shape (N_train,)
    Z_all : np.ndarray, shape (n, d)
        z-scored features of *every* run (train and held-out), in the order of
        ``convergence_steps``; decoded under each posterior draw.
    len_all : np.ndarray of int, shape (N,)
    mle_params : HMMParams
        The MLE fit (fixes K, the covariance type, the labels and the start).
    convergence_steps : np.ndarray, shape (N,), optional
        Convergence step per run of ``Z_all`` (NaN = never converged).
    draws : int
        Posterior draws S for the uncertainty (SVI only).
    steps, lr : optional
        Optimisation steps and learning rate (defaults :data:`DEFAULT_STEPS`,
        :data:`DEFAULT_LR` for the mode).
    guide : {"auto", "normal", "lowrank", "mvn"}
        Variational family for SVI.
    prior : inference.bayes_model.HMMPrior, optional
    device : {"cpu", "cuda", "auto"}
    seed : int
        Seeds the fit, the posterior draws and the regression draws.
    decode : {"viterbi", "sample"}
    interval : float
        Credible mass of the reported intervals.
    ambiguity_margin : float
        See :func:`align_to_reference`.
    progress : bool
    """
    # lazily: the Bayesian engine imports pyro, which MLE fits do not need
    from bayes_trainmap.inference.bayes_fit import fit_map, fit_svi

    if mode not in BAYESIAN_MODES:
        raise BayesTrainmapError(f"mode must be one of {BAYESIAN_MODES}, got {mode!r}")
    if draws < 1:
        raise BayesTrainmapError(f"draws must be >= 1, got {draws!r}")
    steps = DEFAULT_STEPS[mode] if steps is None else int(steps)
    lr = DEFAULT_LR[mode] if lr is None else float(lr)
    if steps < 1 or not lr > 0:
        raise BayesTrainmapError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    common = dict(prior=prior, steps=steps, lr=lr, device=device, seed=seed, progress=progress)
    try:
        if mode == "map":
            fit = fit_map(Z_train, len_train, mle_params, **common)
        else:
            fit = fit_svi(Z_train, len_train, mle_params, guide=guide, **common)
    except ValueError as exc:
        if isinstance(exc, BayesTrainmapError):
            raise
        raise BayesTrainmapError(str(exc)) from exc
    if mode == "map":
        return BayesianResult(mode, fit.params, fit, None, None)
    posterior = propagate_draws(
        fit.sample_params(draws, seed=seed),
        fit.params,
        Z_all,
        len_all,
        convergence_steps,
        decode=decode,
        margin=ambiguity_margin,
        seed=seed,
        progress=progress,
    )
    if posterior.ambiguous.mean() > 0.1:
        logger.warning(
            "state labels were ambiguous in %.0f%% of the posterior draws; "
            "per-state intervals mix states with similar means",
            100 * posterior.ambiguous.mean(),
        )
    uncertainty = summarize(posterior, interval=interval, elbo=fit.elbo_history)
    return BayesianResult(mode, fit.params, fit, uncertainty, posterior)
