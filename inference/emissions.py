"""Gaussian emission log-likelihoods for every checkpoint under every state.

Full covariances go through a batched Cholesky factorisation: with
``Sigma_k = L_k L_k^T`` the Mahalanobis term is ``||L_k^{-1}(x - mu_k)||^2`` and
``log det Sigma_k = 2 sum log diag L_k``. Each state whitens the centred data with
one BLAS product ``(X - mu_k) @ L_k^{-T}``; looping over states keeps the temporary
memory at O(n d) instead of O(n K d).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_log_likelihood"]

_LOG_2PI = math.log(2.0 * math.pi)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def gaussian_log_likelihood(X, means, covars, covariance_type: str = "full"):
    """Log density ``log N(x_t | mu_k, Sigma_k)`` for all checkpoints and states.

    Parameters
    ----------
    X : array or torch.Tensor, shape (n, d)
    means : array or torch.Tensor, shape (K, d)
    covars : array or torch.Tensor, shape (K, d, d) (``"full"``) or (K, d) (``"diag"``)
    covariance_type : {"full", "diag"}

    Returns
    -------
    log_prob : array or torch.Tensor, shape (n, K)
        float64, of the same kind (and device) as ``X``.

    Raises
    ------
    ValueError
        If shapes disagree or a covariance is not positive definite.
    """
    if covariance_type not in ("full", "diag"):
        raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
    if _is_torch(X):
        return _torch_log_likelihood(X, means, covars, covariance_type)
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    covars = np.asarray(covars, dtype=np.float64)
    _check_shapes(X.shape, means.shape, covars.shape, covariance_type)
    n, d = X.shape
    K = means.shape[0]
    out = np.empty((n, K))
    if covariance_type == "diag":
        if np.any(covars <= 0):
            raise ValueError("diagonal covariances must be positive")
        prec = 1.0 / covars  # (K, d)
        log_det = np.sum(np.log(covars), axis=1)
        for k in range(K):  # one (n, d) temporary per state keeps memory at O(n d)
            diff = X - means[k]
            diff *= diff
            out[:, k] = diff @ prec[k]
    else:
        try:
            chol = np.linalg.cholesky(covars)  # (K, d, d), lower
        except np.linalg.LinAlgError:
            raise ValueError(
                "every covariance matrix must be symmetric positive definite"
            ) from None
        eye = np.broadcast_to(np.eye(d), (K, d, d))
        chol_inv_t = np.linalg.solve(chol, eye).transpose(0, 2, 1)  # L_k^{-T}
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        for k in range(K):
            # Whiten the centred data (no x^T P x expansion, which cancels badly).
            white = (X - means[k]) @ chol_inv_t[k]
            white *= white
            out[:, k] = white.sum(axis=1)
    out += log_det
    out += d * _LOG_2PI
    out *= -0.5
    return out


def _check_shapes(x_shape, mean_shape, cov_shape, covariance_type: str) -> None:
    if len(x_shape) != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {tuple(x_shape)}")
    if len(mean_shape) != 2 or mean_shape[1] != x_shape[1]:
        raise ValueError(
            f"means must have shape (K, {x_shape[1]}) to match X, got {tuple(mean_shape)}"
        )
    K, d = mean_shape
    expected = (K, d, d) if covariance_type == "full" else (K, d)
    if tuple(cov_shape) != expected:
        raise ValueError(
            f"covars must have shape {expected} for covariance_type={covariance_type!r}, "
            f"got {tuple(cov_shape)}"
        )


def _torch_log_likelihood(X, means, covars, covariance_type: str):
    import torch

    X = X.to(torch.float64)
    means = torch.as_tensor(means, dtype=torch.float64, device=X.device)
    covars = torch.as_tensor(covars, dtype=torch.float64, device=X.device)
    _check_shapes(X.shape, means.shape, covars.shape, covariance_type)
    d = X.shape[1]
    diff = X[:, None, :] - means[None, :, :]  # (n, K, d)
    if covariance_type == "diag":
        if bool(torch.any(covars <= 0)):
            raise ValueError("diagonal covariances must be positive")
        maha = (diff * diff / covars).sum(-1)
        log_det = torch.log(covars).sum(-1)
    else:
        chol, info = torch.linalg.cholesky_ex(covars)
        if bool(torch.any(info != 0)):
            raise ValueError("every covariance matrix must be symmetric positive definite")
        # Solve L_k y = (x - mu_k) for all k at once: (K, d, n).
        white = torch.linalg.solve_triangular(chol, diff.permute(1, 2, 0), upper=False)
        maha = (white * white).sum(1).T
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (d * _LOG_2PI + log_det + maha)
