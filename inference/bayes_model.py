"""Bayesian Gaussian HMM in Pyro: priors, the fast model and the textbook enumerated model.

Generative model for N runs of z-scored statistics (``d`` features, ``K`` states)::

    pi        ~ Dirichlet(alpha_0 * 1)                       start_prob   (K,)
    A[j]      ~ Dirichlet(alpha * 1 + kappa * e_j)           trans_mat    (K, K)
    mu[k]     ~ Normal(m_0, s_0^2 I)                         means        (K, d)
    sigma[k]  ~ HalfNormal(tau) or LogNormal(0, tau)         scales       (K, d)
    L[k]      ~ LKJCholesky(d, eta)          (full only)     corr_chol    (K, d, d)
    Sigma[k]  = diag(sigma[k]) L[k] L[k]^T diag(sigma[k]) + c I   (diag: sigma[k]^2 + c)
    s_1 ~ pi,  s_t | s_t-1 ~ A[s_t-1],  z_t | s_t ~ N(mu[s_t], Sigma[s_t])

Two implementations of the same joint density, with identical continuous sample sites
(so guides, conditioning and traces are interchangeable):

* :func:`hmm_model` marginalises the states exactly with the compiled forward-backward
  (:func:`inference.bayes_likelihood.hmm_log_likelihood`, Fisher-identity gradients)
  and registers the result with ``pyro.factor``. Runs are concatenated
  (``Z (n_total, d)`` + ``lengths``), so ragged lengths cost no padding.
* :func:`enumerated_hmm_model` is the textbook form: padded runs, a ``pyro.plate`` over
  runs, ``pyro.markov`` over time and ``config_enumerate``d state sites, for
  ``TraceEnum_ELBO`` and ``infer_discrete``. It loops over time in Python; use it on
  small data (tests) only.

The floor ``c`` (``HMMPrior.min_covar``) plays the part of Baum-Welch's ``min_covar``:
without it the likelihood of a full covariance grows without bound as a state's
nearly collinear weight statistics make its covariance singular, and the MAP and SVI
optimisers follow that slow, ill-conditioned direction instead of converging.

Padding in the textbook model: past a run's end the state is copied (transition =
identity) and the observation is masked, so padded steps contribute exactly ``log 1``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from .bayes_likelihood import hmm_log_likelihood, pad_sequences
from .params import COVARIANCE_TYPES, HMMParams

__all__ = [
    "HMMPrior",
    "SITE_NAMES",
    "hmm_model",
    "enumerated_hmm_model",
    "emission_log_prob",
    "covariances_from_sites",
    "sites_from_params",
    "params_from_sites",
    "pad_sequences",
]

_COVARIANCE_TYPES = COVARIANCE_TYPES


@dataclass(frozen=True)
class HMMPrior:
    """Hyperparameters of the Bayesian HMM (defaults suit z-scored statistics).

    Parameters
    ----------
    start_concentration : float, default 1.0
        Symmetric Dirichlet concentration of the initial distribution (1 = uniform on
        the simplex).
    trans_concentration : float, default 1.0
        Symmetric Dirichlet concentration of every transition row.
    stickiness : float, default 0.0
        Extra concentration ``kappa`` on the diagonal of each row (sticky HMM). Runs
        dwell hundreds of checkpoints in a state, so the data dominate the self-loop
        probabilities anyway; raise it to discourage rapid switching on short runs.
    mean_loc : float, default 0.0
    mean_scale : float or None, default 3.0
        ``mu[k, i] ~ Normal(mean_loc, mean_scale^2)``; on z-scored data a state mean
        beyond 3 SDs is rare but possible. ``None`` = flat (improper) prior.
    scale_prior : {"halfnormal", "lognormal"} or None, default "halfnormal"
        Prior on the per-feature state standard deviations. Half-normal keeps mass
        near 0, which plateau states of the weight statistics need (their
        within-state SD can be 0.01 of the run's SD). ``None`` = flat on (0, inf).
    scale_scale : float, default 2.0
        ``HalfNormal(scale_scale)`` or ``LogNormal(0, scale_scale)``.
    lkj_concentration : float, default 2.0
        LKJ ``eta`` of each state's correlation matrix (full covariance only):
        1 = uniform over correlation matrices, > 1 shrinks towards independence.
    min_covar : float, default 1e-3
        Floor ``c`` added to the diagonal of every state covariance (a part of the
        model, not of the prior): ``Sigma = diag(sigma) L L^T diag(sigma) + c I``. It
        keeps the likelihood bounded, as Baum-Welch's ``min_covar`` does, and has the
        same default, so that the Bayesian fits and the Baum-Welch fits they start from
        (and are compared with, in the robustness section and ``benchmarks/replication.py``)
        describe covariances with the same resolution. A Baum-Welch covariance (a weighted
        scatter plus ``c I``) is an interior point of the model.

    Notes
    -----
    :meth:`flat` gives the prior under which the MAP estimate equals the maximum
    likelihood estimate (Dirichlet(1), flat means and scales, LKJ(1), no covariance
    floor).
    """

    start_concentration: float = 1.0
    trans_concentration: float = 1.0
    stickiness: float = 0.0
    mean_loc: float = 0.0
    mean_scale: float | None = 3.0
    scale_prior: str | None = "halfnormal"
    scale_scale: float = 2.0
    lkj_concentration: float = 2.0
    min_covar: float = 1e-3

    def __post_init__(self):
        for name in ("start_concentration", "trans_concentration", "lkj_concentration"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.stickiness < 0:
            raise ValueError(f"stickiness must be >= 0, got {self.stickiness!r}")
        if self.mean_scale is not None and not self.mean_scale > 0:
            raise ValueError(f"mean_scale must be > 0 or None, got {self.mean_scale!r}")
        if self.scale_prior not in ("halfnormal", "lognormal", None):
            raise ValueError(
                "scale_prior must be 'halfnormal', 'lognormal' or None, "
                f"got {self.scale_prior!r}"
            )
        if not self.scale_scale > 0:
            raise ValueError(f"scale_scale must be > 0, got {self.scale_scale!r}")
        if not (math.isfinite(self.min_covar) and self.min_covar >= 0):
            raise ValueError(f"min_covar must be a finite number >= 0, got {self.min_covar!r}")

    @classmethod
    def flat(cls) -> "HMMPrior":
        """Prior whose MAP estimate is the maximum likelihood estimate."""
        return cls(mean_scale=None, scale_prior=None, lkj_concentration=1.0, min_covar=0.0)

    def dirichlet_concentrations(self, n_states: int) -> tuple[np.ndarray, np.ndarray]:
        """Concentrations of the start prior, shape (K,), and of the transition rows,
        shape (K, K): ``alpha_0 * 1`` and ``alpha * 1 + kappa * e_j`` for row ``j``."""
        K = int(n_states)
        return (np.full(K, float(self.start_concentration)),
                self.trans_concentration * np.ones((K, K)) + self.stickiness * np.eye(K))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


#: Continuous sample sites of both models, in a fixed order.
SITE_NAMES = ("start_prob", "trans_mat", "means", "scales", "corr_chol")


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {_COVARIANCE_TYPES}, got {covariance_type!r}"
        )


def _sample_parameters(n_states, n_features, covariance_type, prior, dtype, device):
    """Sample the HMM parameters from the prior; returns the site values."""
    K, d = n_states, n_features
    tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=device)  # noqa: E731
    start_conc, trans_conc = prior.dirichlet_concentrations(K)
    start_prob = pyro.sample("start_prob", dist.Dirichlet(tensor(start_conc)))
    trans_mat = pyro.sample("trans_mat", dist.Dirichlet(tensor(trans_conc)).to_event(1))
    if prior.mean_scale is None:
        mean_dist = dist.ImproperUniform(constraints.real, (), (K, d))
    else:
        mean_dist = (
            dist.Normal(tensor(prior.mean_loc), tensor(prior.mean_scale))
            .expand((K, d))
            .to_event(2)
        )
    means = pyro.sample("means", mean_dist)
    if prior.scale_prior is None:
        scale_dist = dist.ImproperUniform(constraints.positive, (), (K, d))
    elif prior.scale_prior == "halfnormal":
        scale_dist = dist.HalfNormal(tensor(prior.scale_scale)).expand((K, d)).to_event(2)
    else:
        scale_dist = (
            dist.LogNormal(tensor(0.0), tensor(prior.scale_scale)).expand((K, d)).to_event(2)
        )
    scales = pyro.sample("scales", scale_dist)
    corr_chol = None
    if covariance_type == "full":
        corr_chol = pyro.sample(
            "corr_chol",
            dist.LKJCholesky(d, tensor(prior.lkj_concentration)).expand((K,)).to_event(1),
        )
    return start_prob, trans_mat, means, scales, corr_chol


def _state_cholesky(scales, corr_chol, min_covar: float = 0.0) -> torch.Tensor:
    """Lower Cholesky factor of ``diag(scales) L L^T diag(scales) + min_covar I``, shape (K, d, d)."""
    if not min_covar > 0:
        return scales.unsqueeze(-1) * corr_chol
    factor, info = torch.linalg.cholesky_ex(covariances_from_sites(scales, corr_chol, min_covar))
    # Non-finite sites (a diverging optimiser) give a NaN factor, hence a NaN loss that
    # the optimisers report as divergence, instead of a LinAlgError.
    return factor.masked_fill(info[..., None, None] != 0, float("nan"))


_OUTER_CACHE: list = []


def _upper_outer_products(Z: torch.Tensor) -> torch.Tensor:
    """``z_i z_j`` for ``i <= j`` of every row, shape ``(n, d(d+1)/2)``.

    The data are constant during a fit, so the last two results are cached (keyed
    by tensor identity, via weak references, and its in-place version counter).
    """
    for ref, version, products in _OUTER_CACHE:
        if ref() is Z and version == Z._version:
            return products
    rows, cols = torch.triu_indices(Z.shape[1], Z.shape[1], device=Z.device)
    products = Z[:, rows] * Z[:, cols]
    if not Z.requires_grad:
        _OUTER_CACHE[:] = [(weakref.ref(Z), Z._version, products)] + _OUTER_CACHE[:1]
    return products


def emission_log_prob(Z, means, scales, corr_chol=None, min_covar: float = 0.0) -> torch.Tensor:
    """``log N(z | mu_k, Sigma_k)`` for every row of ``Z`` and state ``k``.

    Written as a linear function of the sufficient statistics ``(z z^T, z)``:
    ``-1/2 <z z^T, Lambda_k> + z^T Lambda_k mu_k - 1/2 mu_k^T Lambda_k mu_k - log|L_k| - d/2 log 2 pi``
    with the precision ``Lambda_k = Sigma_k^-1``. The data enter through two matrix
    products, so the backward pass costs two more (``(n, d^2)^T (n, K)``) instead of
    autograd through ``n K`` triangular solves -- the dominant cost of an SVI step
    before. The products ``z_i z_j`` (upper triangle) are computed once per data
    tensor and cached. Cancellation in the expanded quadratic form is harmless in
    float64 on z-scored data.

    Parameters
    ----------
    Z : torch.Tensor, shape (n, d)
    means, scales : torch.Tensor, shape (K, d)
    corr_chol : torch.Tensor, shape (K, d, d), or None for diagonal covariances
    min_covar : float, default 0.0
        Floor ``c`` added to the diagonal of every covariance (``HMMPrior.min_covar``).

    Returns
    -------
    torch.Tensor, shape (n, K)
    """
    n, d = Z.shape
    K = means.shape[0]
    const = 0.5 * d * math.log(2.0 * math.pi)
    if corr_chol is None:
        variance = covariances_from_sites(scales, None, min_covar)  # (K, d)
        precision = variance.reciprocal()  # (K, d)
        quad = (
            Z.pow(2) @ precision.T
            - 2.0 * Z @ (means * precision).T
            + (means.pow(2) * precision).sum(-1)
        )
        return -0.5 * quad - 0.5 * variance.log().sum(-1) - const
    chol = _state_cholesky(scales, corr_chol, min_covar)  # (K, d, d), lower triangular
    eye = torch.eye(d, dtype=Z.dtype, device=Z.device).expand(K, d, d)
    inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
    precision = inv_chol.transpose(-1, -2) @ inv_chol  # (K, d, d)
    prec_means = (precision @ means.unsqueeze(-1)).squeeze(-1)  # (K, d)
    rows, cols = torch.triu_indices(d, d, device=Z.device)
    # <z z^T, Lambda> over the upper triangle: off-diagonal terms count twice.
    weights = precision[:, rows, cols] * torch.where(rows == cols, 1.0, 2.0).to(Z.dtype)
    quad = (
        _upper_outer_products(Z) @ weights.T
        - 2.0 * Z @ prec_means.T
        + (means * prec_means).sum(-1)
    )
    log_det = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * quad - log_det - const


def hmm_model(
    Z: torch.Tensor,
    lengths: torch.Tensor,
    n_states: int,
    covariance_type: str = "full",
    prior: HMMPrior | None = None,
    *,
    fb_method: str = "auto",
) -> torch.Tensor:
    """Pyro model with the states marginalised by the compiled forward-backward.

    Parameters
    ----------
    Z : torch.Tensor, shape (n_total, d)
        Concatenated z-scored runs (float64 recommended; any device).
    lengths : torch.Tensor, shape (N,), int64
        Run lengths.
    n_states : int
    covariance_type : {"full", "diag"}
    prior : HMMPrior, optional
        Defaults to ``HMMPrior()``.
    fb_method : {"auto", "sequential", "scan"}
        Time recursion of the forward-backward pass (``method`` of
        :func:`inference.bayes_likelihood.hmm_log_likelihood`).

    Returns
    -------
    torch.Tensor, scalar
        The exact marginal log-likelihood ``sum_i log p(z^(i) | theta)``, also
        registered as the factor ``"log_likelihood"``.
    """
    _check_covariance_type(covariance_type)
    prior = prior or HMMPrior()
    start_prob, trans_mat, means, scales, corr_chol = _sample_parameters(
        n_states, Z.shape[-1], covariance_type, prior, Z.dtype, Z.device
    )
    log_emission = emission_log_prob(Z, means, scales, corr_chol, prior.min_covar)
    loglik = hmm_log_likelihood(
        log_emission, start_prob.log(), trans_mat.log(), lengths, method=fb_method
    )
    pyro.factor("log_likelihood", loglik)
    return loglik


def enumerated_hmm_model(
    Z_padded: torch.Tensor,
    mask: torch.Tensor,
    n_states: int,
    covariance_type: str = "full",
    prior: HMMPrior | None = None,
    params: dict | None = None,
) -> list[torch.Tensor]:
    """Textbook Pyro HMM with enumerated states (``TraceEnum_ELBO``/``infer_discrete``).

    Parameters
    ----------
    Z_padded : torch.Tensor, shape (N, T_max, d)
        Runs padded at the end (see :func:`pad_sequences`).
    mask : torch.Tensor, shape (N, T_max), bool
        True on real checkpoints.
    n_states : int
    covariance_type : {"full", "diag"}
    prior : HMMPrior, optional
        Defaults to ``HMMPrior()``; its ``min_covar`` applies also to fixed ``params``.
    params : dict, optional
        Fixed site values (``start_prob``, ``trans_mat``, ``means``, ``scales`` and,
        for full covariance, ``corr_chol``). When given, no parameter is sampled, so
        with an empty guide the ELBO *is* the exact log-likelihood.

    Returns
    -------
    list of torch.Tensor, each shape (N,)
        The state sites ``s_0 ... s_{T_max-1}`` (meaningful under ``infer_discrete``).
    """
    _check_covariance_type(covariance_type)
    N, T, d = Z_padded.shape
    prior = prior or HMMPrior()
    if params is None:
        start_prob, trans_mat, means, scales, corr_chol = _sample_parameters(
            n_states, d, covariance_type, prior, Z_padded.dtype, Z_padded.device
        )
    else:
        start_prob, trans_mat = params["start_prob"], params["trans_mat"]
        means, scales = params["means"], params["scales"]
        corr_chol = params.get("corr_chol") if covariance_type == "full" else None
    if corr_chol is None:
        sd = covariances_from_sites(scales, None, prior.min_covar).sqrt()
        obs_dist = lambda k: dist.Normal(means[k], sd[k]).to_event(1)  # noqa: E731
    else:
        scale_tril = _state_cholesky(scales, corr_chol, prior.min_covar)
        obs_dist = lambda k: dist.MultivariateNormal(means[k], scale_tril=scale_tril[k])  # noqa: E731
    eye = torch.eye(n_states, dtype=trans_mat.dtype, device=trans_mat.device)
    states = []
    with pyro.plate("runs", N, dim=-1):
        state = None
        for t in pyro.markov(range(T)):
            if t == 0:
                probs = start_prob
            else:
                # Past the end of a run the state is copied, so padding adds log 1.
                probs = torch.where(mask[:, t, None], trans_mat[state], eye[state])
            state = pyro.sample(
                f"s_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"}
            )
            with pyro.poutine.mask(mask=mask[:, t]):
                pyro.sample(f"z_{t}", obs_dist(state), obs=Z_padded[:, t])
            states.append(state)
    return states


# ---------------------------------------------------------------------------
# Conversions between site values and the shared parameter container
# ---------------------------------------------------------------------------


def covariances_from_sites(scales, corr_chol=None, min_covar: float = 0.0):
    """Covariances from site values: ``(K, d, d)`` (full) or variances ``(K, d)`` (diag).

    ``diag(scales) L L^T diag(scales) + min_covar I`` (diag: ``scales^2 + min_covar``).
    Accepts numpy arrays or torch tensors with optional leading batch dimensions.
    """
    if corr_chol is None:
        return scales**2 + min_covar
    if isinstance(scales, torch.Tensor):
        chol = scales.unsqueeze(-1) * corr_chol
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        return chol @ chol.transpose(-1, -2) + min_covar * eye
    chol = np.asarray(scales)[..., :, None] * np.asarray(corr_chol)
    return chol @ np.swapaxes(chol, -1, -2) + min_covar * np.eye(chol.shape[-1])


def _excess_covariances(covars: np.ndarray, min_covar: float, covariance_type: str) -> np.ndarray:
    """``covars - min_covar I``, its eigenvalues (diag: entries) kept >= ``min_covar / 100``.

    Exact wherever every eigenvalue of ``covars`` is at least ``1.01 min_covar`` -- any
    Baum-Welch fit with a ``min_covar`` at least that large; smaller covariances are
    raised to the nearest point of the model's support."""
    if not min_covar > 0:
        return covars
    tiny = 0.01 * min_covar
    if covariance_type == "diag":
        return np.maximum(covars - min_covar, tiny)
    values, vectors = np.linalg.eigh(0.5 * (covars + np.swapaxes(covars, -1, -2)))
    values = np.maximum(values - min_covar, tiny)
    return (vectors * values[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def sites_from_params(
    params, *, dtype=torch.float64, device="cpu", floor=1e-8, min_covar: float = 0.0
) -> dict:
    """Site values equal to a fitted :class:`~inference.params.HMMParams`.

    Probabilities are floored at ``floor`` and renormalised so that they lie in the
    open simplex (a Dirichlet's support; MLE transition matrices often hold exact 0s).
    The scale and correlation sites describe ``covars - min_covar I`` (the model's
    covariance above its floor ``HMMPrior.min_covar``; see :func:`_excess_covariances`).
    """
    # Copies: guides may optimise their initial values in place.
    tensor = lambda a: torch.tensor(np.array(a, dtype=float), dtype=dtype, device=device)  # noqa: E731
    start = np.maximum(np.asarray(params.start_prob, dtype=float), floor)
    trans = np.maximum(np.asarray(params.trans_mat, dtype=float), floor)
    sites = {
        "start_prob": tensor(start / start.sum()),
        "trans_mat": tensor(trans / trans.sum(axis=1, keepdims=True)),
        "means": tensor(params.means),
    }
    covars = _excess_covariances(np.asarray(params.covars, dtype=float), min_covar, params.covariance_type)
    if params.covariance_type == "diag":
        sites["scales"] = tensor(np.sqrt(covars))
        return sites
    sd = np.sqrt(np.einsum("kii->ki", covars))
    corr = covars / (sd[:, :, None] * sd[:, None, :])
    # Symmetrise and keep the correlation strictly positive definite for the Cholesky.
    corr = 0.5 * (corr + np.swapaxes(corr, -1, -2))
    sites["scales"] = tensor(sd)
    sites["corr_chol"] = tensor(np.linalg.cholesky(corr))
    return sites


def params_from_sites(sites: dict, covariance_type: str, template=None, min_covar: float = 0.0):
    """Build an :class:`~inference.params.HMMParams` from (constrained) site values.

    ``template`` (an ``HMMParams``) supplies ``feature_names`` and ``normalization``;
    ``min_covar`` is the model's covariance floor (``HMMPrior.min_covar``).
    """
    def as_np(value):
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy().astype(float)
        return np.asarray(value, dtype=float)

    start = as_np(sites["start_prob"])
    trans = as_np(sites["trans_mat"])
    means = as_np(sites["means"])
    scales = as_np(sites["scales"])
    corr_chol = as_np(sites["corr_chol"]) if covariance_type == "full" else None
    covars = covariances_from_sites(scales, corr_chol, min_covar)
    n_features = means.shape[-1]
    feature_names = (
        list(template.feature_names) if template is not None else [f"z{i}" for i in range(n_features)]
    )
    normalization = dict(template.normalization) if template is not None else {}
    return HMMParams(
        start_prob=start / start.sum(),
        trans_mat=trans / trans.sum(axis=1, keepdims=True),
        means=means,
        covars=covars,
        covariance_type=covariance_type,
        feature_names=feature_names,
        normalization=normalization,
    )


def n_unconstrained_parameters(n_states: int, n_features: int, covariance_type: str) -> int:
    """Dimension of the unconstrained parameter vector the guides work in."""
    K, d = n_states, n_features
    p = (K - 1) + K * (K - 1) + 2 * K * d
    if covariance_type == "full":
        p += K * d * (d - 1) // 2
    return p

