"""EM for the MAP of the Bayesian Gaussian HMM: the preconditioner of :func:`fit_map`.

The MAP objective of :mod:`inference.bayes_model` is ``log p(z | theta) + log p(theta)``
with each covariance ``Sigma_k = E_k + c I`` (``E_k`` positive semi-definite, ``c =
HMMPrior.min_covar``). Gradient methods move slowly on it: the weight statistics of a
plateau state are nearly collinear, so the optimum puts some eigenvalues of ``Sigma_k``
at the floor ``c``, where the ``(sigma, LKJ Cholesky)`` parameterisation is
ill-conditioned. EM reaches that region in a few iterations, because each M-step
solves the covariance problem in closed form:

* ``pi ∝ max(n_start + alpha_0 - 1, 0)`` and ``A_j ∝ max(xi_j + alpha - 1 + kappa e_j, 0)``
  (the modes of the Dirichlet posteriors given the expected counts);
* ``mu_k = (N_k P_k + s_0^-2 I)^-1 (P_k N_k xbar_k + s_0^-2 m_0)`` with ``P_k`` the
  previous precision (a conditional step: ECM), the weighted mean for a flat prior;
* ``Sigma_k = V max(Lambda, c) V^T`` where ``V Lambda V^T`` is the weighted scatter
  around ``mu_k``: the maximiser of the expected complete-data log-likelihood over
  ``Sigma_k - c I ⪰ 0`` (eigenvalue clipping; diagonal: ``max(s_ii, c)``).

The half-normal (or log-normal) scale prior and the LKJ prior have no closed-form
M-step; they are left to the L-BFGS polish that :func:`fit_map` runs from here. Every
iteration increases the objective without those two terms (the *conjugate log joint*
returned in the history), which the tests check.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .emissions import QuadraticFeatures
from .forward_backward import check_lengths, forward_backward
from .params import HMMParams

__all__ = ["MapEMResult", "clip_covariances", "map_em"]

#: A state with less posterior mass than this keeps its previous parameters.
_EMPTY_MASS = 1e-8
#: Eigenvalue floor used when the model has no covariance floor (``min_covar = 0``).
_TINY_FLOOR = 1e-10


class MapEMResult(NamedTuple):
    """Output of :func:`map_em`.

    Attributes
    ----------
    params : HMMParams
        The last M-step's parameters.
    history : np.ndarray, shape (n_iter,)
        Conjugate log joint (log-likelihood + Dirichlet and mean log priors) of the
        parameters entering each iteration.
    converged : bool
        Whether the conjugate log joint rose by less than ``tol`` (relative) in the last
        iteration.
    """

    params: HMMParams
    history: np.ndarray
    converged: bool


def clip_covariances(scatter: np.ndarray, floor: float, covariance_type: str) -> np.ndarray:
    """Nearest covariances with every eigenvalue at least ``floor``.

    Parameters
    ----------
    scatter : np.ndarray, shape (K, d, d) (``"full"``) or (K, d) (``"diag"``)
    floor : float
    covariance_type : {"full", "diag"}

    Returns
    -------
    np.ndarray, the shape of ``scatter``
        ``V max(Lambda, floor) V^T`` per state (diagonal: ``max(s, floor)``): the
        maximiser of ``-log det Sigma - tr(Sigma^-1 S)`` over ``Sigma ⪰ floor I``.
    """
    if covariance_type == "diag":
        return np.maximum(scatter, floor)
    sym = 0.5 * (scatter + np.swapaxes(scatter, 1, 2))
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.maximum(values, floor)[:, None, :]) @ np.swapaxes(vectors, 1, 2)


def _dirichlet_mode(counts: np.ndarray, concentration: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Row-wise mode of Dirichlet(concentration + counts); rows with no mass keep ``previous``."""
    weights = np.maximum(counts + concentration - 1.0, 0.0)
    total = weights.sum(-1, keepdims=True)
    return np.where(total > 0, weights / np.where(total > 0, total, 1.0), previous)


def _xlogy(x, y) -> float:
    """``sum x log y`` with ``0 log 0 = 0``."""
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    keep = x != 0
    with np.errstate(divide="ignore"):
        return float(np.sum(x[keep] * np.log(y[keep])))


def _conjugate_log_prior(params: HMMParams, prior) -> float:
    """Dirichlet and Normal-mean log prior densities, up to their constants."""
    start_concentration, row_concentration = prior.dirichlet_concentrations(params.n_states)
    value = _xlogy(start_concentration - 1.0, params.start_prob)
    value += _xlogy(row_concentration - 1.0, params.trans_mat)
    if prior.mean_scale is not None:
        value -= 0.5 * float(np.sum((params.means - prior.mean_loc) ** 2)) / prior.mean_scale**2
    return value


def _mean_step(mass, weighted_mean, old: HMMParams, prior) -> np.ndarray:
    """Posterior mode of the means given the previous covariances (ECM)."""
    if prior.mean_scale is None:
        return weighted_mean
    shrink = 1.0 / prior.mean_scale**2
    if old.covariance_type == "diag":
        precision = mass[:, None] / old.covars
        return (precision * weighted_mean + shrink * prior.mean_loc) / (precision + shrink)
    d = weighted_mean.shape[1]
    precision = np.linalg.inv(old.covars) * mass[:, None, None]  # N_k P_k
    rhs = np.einsum("kij,kj->ki", precision, weighted_mean) + shrink * prior.mean_loc
    return np.linalg.solve(precision + shrink * np.eye(d), rhs[..., None])[..., 0]


def map_em(
    Z, lengths, init_params: HMMParams, prior, *, n_iter: int = 50, tol: float = 1e-7,
    backend: str = "auto",
) -> MapEMResult:
    """EM iterations towards the MAP of the Bayesian HMM (without its scale and LKJ priors).

    Parameters
    ----------
    Z : np.ndarray, shape (n_total, d)
        Concatenated z-scored runs.
    lengths : np.ndarray of int, shape (N,)
    init_params : HMMParams
        Starting point; its state labels are kept.
    prior : HMMPrior
        Supplies the Dirichlet concentrations, the stickiness, the Normal mean prior and
        the covariance floor ``min_covar``.
    n_iter : int
        Maximum number of EM iterations (0 returns ``init_params``, clipped to the floor).
    tol : float
        Stop when the conjugate log joint rises by less than ``tol * |value|``.
    backend : {"auto", "numba", "torch"}
        Forward-backward backend.

    Returns
    -------
    MapEMResult
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    lengths = check_lengths(lengths, len(Z))
    cov = init_params.covariance_type
    floor = max(float(prior.min_covar), _TINY_FLOOR)
    design = QuadraticFeatures(Z, cov)
    params = dataclasses.replace(init_params, covars=clip_covariances(init_params.covars, floor, cov))
    start_concentration, row_concentration = prior.dirichlet_concentrations(params.n_states)
    history: list[float] = []
    converged = False
    for _ in range(int(n_iter)):
        log_b = design.log_likelihood(params.means, params.covars)
        with np.errstate(divide="ignore"):
            log_start, log_trans = np.log(params.start_prob), np.log(params.trans_mat)
        fb = forward_backward(log_b, log_start, log_trans, lengths, backend=backend)
        history.append(float(np.sum(fb.log_likelihood)) + _conjugate_log_prior(params, prior))
        if len(history) >= 2 and history[-1] - history[-2] < tol * abs(history[-1]):
            converged = True
            break
        start = _dirichlet_mode(np.asarray(fb.expected_start, float), start_concentration, params.start_prob)
        trans = _dirichlet_mode(np.asarray(fb.expected_transitions, float), row_concentration, params.trans_mat)
        mass, weighted_mean, scatter = design.weighted_moments(fb.posteriors)
        means = _mean_step(mass, weighted_mean, params, prior)
        shift = weighted_mean - means
        if cov == "diag":
            scatter = scatter + shift**2
        else:
            scatter = scatter + shift[:, :, None] * shift[:, None, :]
        covars = clip_covariances(scatter, floor, cov)
        empty = mass < _EMPTY_MASS
        means[empty], covars[empty] = params.means[empty], params.covars[empty]
        params = dataclasses.replace(params, start_prob=start, trans_mat=trans, means=means, covars=covars)
    return MapEMResult(params, np.asarray(history), converged)

