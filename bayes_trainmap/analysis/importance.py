"""Feature importance for latent states (appendix A of Hu et al., 2023).

For a Gaussian HMM with means ``mu_h`` and covariances ``Sigma_h``, the
derivative of the log *filtered* posterior with respect to the current
observation has the closed form

    d log p(s_t = k | z_1:t) / d z_t
        = Sigma_k^{-1} (mu_k - z_t) - sum_h p(s_t = h | z_1:t) Sigma_h^{-1} (mu_h - z_t),

because ``log p(s_t = k, z_1:t-1)`` does not depend on ``z_t``. The vector is
kept whole (one entry per feature); the importance of feature ``i`` for state
``k`` is the absolute value of its ``i``-th entry.
"""

from __future__ import annotations

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["state_precisions", "posterior_gradient", "importance_at"]


def state_precisions(params) -> np.ndarray:
    """Precision matrices ``Sigma_k^{-1}`` of the emission Gaussians.

    Parameters
    ----------
    params : inference.params.HMMParams
        Fitted model (any covariance type supported by ``full_covars``).

    Returns
    -------
    numpy.ndarray, shape (K, d, d)
    """
    if getattr(params, "covariance_type", "full") == "diag":
        covars = np.asarray(params.covars, dtype=float)
        return np.stack([np.diag(1.0 / c) for c in covars])
    full = np.asarray(params.full_covars(), dtype=float)
    return np.linalg.inv(full)


def _state_scores(precisions: np.ndarray, means: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``Sigma_h^{-1} (mu_h - z_t)`` for all t and h, shape (n, K, d)."""
    prec_means = np.einsum("kij,kj->ki", precisions, means)  # (K, d)
    prec_z = np.einsum("kij,nj->nki", precisions, Z)  # (n, K, d)
    return prec_means[None, :, :] - prec_z


def posterior_gradient(params, Z: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Signed gradient of every log filtered posterior with respect to ``z_t``.

    Parameters
    ----------
    params : inference.params.HMMParams
        Fitted model with ``means (K, d)`` and covariances.
    Z : numpy.ndarray, shape (n, d)
        Observations (z-scored features), concatenated over runs.
    filtered : numpy.ndarray, shape (n, K)
        Filtered posteriors ``p(s_t = h | z_1:t)`` of the same checkpoints.

    Returns
    -------
    numpy.ndarray, shape (n, K, d)
        ``[t, k, i] = d log p(s_t = k | z_1:t) / d z_t[i]``.
    """
    Z = np.atleast_2d(np.asarray(Z, dtype=float))
    filtered = np.atleast_2d(np.asarray(filtered, dtype=float))
    means = np.asarray(params.means, dtype=float)
    n_states, n_features = means.shape
    if Z.shape[1] != n_features:
        raise BayesTrainmapError(f"Z has {Z.shape[1]} features, expected {n_features} (the model's)")
    if filtered.shape != (Z.shape[0], n_states):
        raise BayesTrainmapError(f"filtered has shape {filtered.shape}, expected {(Z.shape[0], n_states)}")
    scores = _state_scores(state_precisions(params), means, Z)
    expected = np.einsum("nh,nhi->ni", filtered, scores)
    return scores - expected[:, None, :]


def importance_at(params, z_t: np.ndarray, filtered_t: np.ndarray, k) -> np.ndarray:
    """Absolute importance ``|d log p(s_t = k | z_1:t) / d z_t|`` of every feature.

    Parameters
    ----------
    params : inference.params.HMMParams
        Fitted model.
    z_t : numpy.ndarray, shape (m, d)
        Observations at m checkpoints.
    filtered_t : numpy.ndarray, shape (m, K)
        Filtered posteriors at those checkpoints.
    k : int or array of int, shape (m,)
        The state whose posterior is differentiated (one per checkpoint, or shared).

    Returns
    -------
    numpy.ndarray, shape (m, d)
    """
    grad = posterior_gradient(params, z_t, filtered_t)
    k = np.broadcast_to(np.asarray(k, dtype=np.int64), (grad.shape[0],))
    if k.size and (k.min() < 0 or k.max() >= grad.shape[1]):
        raise BayesTrainmapError(f"state index out of range 0..{grad.shape[1] - 1}: {k}")
    return np.abs(grad[np.arange(grad.shape[0]), k])
