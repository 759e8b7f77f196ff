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

from ._numba_kernels import (
    ROW_BLOCK,
    n_row_blocks,
    quadratic_features,
    row_dots,
    weighted_column_sums,
)
from .params import COVARIANCE_TYPES

__all__ = ["gaussian_log_likelihood"]

_LOG_2PI = math.log(2.0 * math.pi)

#: Posterior weights at or below this are skipped in the weighted moments (far
#: below the rounding error of sums of probabilities; see weighted_column_sums).
_NEGLIGIBLE_WEIGHT = 1e-20

#: Above this many bytes the feature matrix of numpy data is not kept but rebuilt in
#: chunks at each use (long runs: 800,000 checkpoints x 119 features are 760 MB).
MAX_FEATURE_BYTES = 256 * 2**20

#: Rows per rebuilt chunk: a multiple of ``ROW_BLOCK``, so the block partial sums, and
#: hence every result, are bit-identical to those of the whole matrix.
_CHUNK_ROWS = 16 * ROW_BLOCK


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
    if covariance_type not in COVARIANCE_TYPES:
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


class QuadraticFeatures:
    """Fixed-data design for repeated Gaussian evaluations (the EM inner loop).

    Baum-Welch evaluates the emission densities and the per-state weighted moments
    of the same ``X`` at every iteration. Both are linear in the features
    ``f(x) = (x, (x_i x_j)_{i <= j})`` of the centred data (``(x, x^2)`` for
    diagonal covariances), so with ``F = f(X - c)`` built once, each iteration is
    two skinny matrix products over ``F`` instead of K whitening passes over ``X``:

    * ``(x-mu)^T P (x-mu) = f(x) . (-2 P mu, w(P)) + mu^T P mu`` with
      ``w(P)_{ij} = P_ij (2 - [i = j])``;
    * ``sum_t gamma_tk f(x_t)`` holds the weighted first moments and the upper
      triangle of the weighted second moments.

    Centring by the data mean ``c`` keeps the expansion well conditioned; on
    standardised data the results agree with :func:`gaussian_log_likelihood`
    (which whitens ``x - mu_k`` directly) to ~1e-13 relative. The products run in
    numba kernels for numpy data and as matmuls for torch tensors. The cost is the
    memory for ``F``: n (d + d(d+1)/2) floats (190 MB for n = 200 000, d = 14). For
    numpy data whose ``F`` would exceed ``max_feature_bytes``, only ``X - c`` is kept
    and ``F`` is rebuilt in chunks of rows at each use: the same results bit for bit,
    a little slower, and memory bounded by one chunk.

    Parameters
    ----------
    X : array or torch.Tensor, shape (n, d)
    covariance_type : {"full", "diag"}
    max_feature_bytes : int, optional
        Keep ``F`` only up to this size (default :data:`MAX_FEATURE_BYTES`; numpy data only).
    """

    def __init__(self, X, covariance_type: str = "full", max_feature_bytes: int | None = None):
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
        self.covariance_type = covariance_type
        self.is_torch = _is_torch(X)
        if not self.is_torch:
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n, d), got shape {tuple(X.shape)}")
        self.n, self.d = X.shape
        center = X.mean(0)
        Xc = X - center
        self.center = center.detach().cpu().numpy() if self.is_torch else center
        self.iu, self.ju = np.triu_indices(self.d)
        # Pairs (i, j) of the quadratic block: upper triangle (full) or diagonal (diag).
        iu, ju = (self.iu, self.ju) if covariance_type == "full" else (np.arange(self.d),) * 2
        if self.is_torch:
            import torch

            iu_t = torch.as_tensor(iu, device=Xc.device)
            ju_t = torch.as_tensor(ju, device=Xc.device)
            self.F = torch.cat([Xc, Xc[:, iu_t] * Xc[:, ju_t]], dim=1).contiguous()
        else:
            self._pairs = iu.astype(np.int64), ju.astype(np.int64)
            self.n_columns = self.d + len(iu)
            limit = MAX_FEATURE_BYTES if max_feature_bytes is None else int(max_feature_bytes)
            if self.n * self.n_columns * 8 > limit:
                self.F, self._Xc = None, np.ascontiguousarray(Xc)  # rebuilt per chunk in _chunks
            else:
                self.F, self._Xc = np.empty((self.n, self.n_columns)), None
                quadratic_features(np.ascontiguousarray(Xc), *self._pairs, self.F)

    def _chunks(self):
        """``(start, F[start:stop])`` over the rows; the whole ``F`` at once when it is kept."""
        if self.F is not None:
            yield 0, self.F
            return
        buffer = np.empty((min(self.n, _CHUNK_ROWS), self.n_columns))
        for start in range(0, self.n, _CHUNK_ROWS):
            rows = self._Xc[start:start + _CHUNK_ROWS]
            chunk = buffer[: len(rows)]
            quadratic_features(rows, *self._pairs, chunk)
            yield start, chunk

    def _as_data_kind(self, a: np.ndarray):
        if self.is_torch:
            import torch

            return torch.as_tensor(a, dtype=torch.float64, device=self.F.device)
        return a

    def log_likelihood(self, means, covars):
        """``log N(x_t | mu_k, Sigma_k)``, shape (n, K), of the data's kind.

        ``means`` (K, d) and ``covars`` ((K, d, d) or (K, d)) are numpy arrays.
        """
        means = np.asarray(means, dtype=np.float64)
        covars = np.asarray(covars, dtype=np.float64)
        _check_shapes((self.n, self.d), means.shape, covars.shape, self.covariance_type)
        mu = means - self.center
        d = self.d
        if self.covariance_type == "diag":
            if np.any(covars <= 0):
                raise ValueError("diagonal covariances must be positive")
            prec = 1.0 / covars
            quad_w = prec  # (K, d)
            lin = mu * prec
            log_det = np.log(covars).sum(1)
        else:
            try:
                chol = np.linalg.cholesky(covars)
            except np.linalg.LinAlgError:
                raise ValueError(
                    "every covariance matrix must be symmetric positive definite"
                ) from None
            chol_inv = np.linalg.solve(chol, np.broadcast_to(np.eye(d), covars.shape))
            prec = chol_inv.transpose(0, 2, 1) @ chol_inv  # Sigma^{-1} = L^-T L^-1
            off = np.where(self.iu == self.ju, 1.0, 2.0)
            quad_w = prec[:, self.iu, self.ju] * off  # (K, d(d+1)/2)
            lin = np.einsum("kij,kj->ki", prec, mu)
            log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
        weights = np.ascontiguousarray(np.concatenate([-2.0 * lin, quad_w], axis=1))
        const = d * _LOG_2PI + log_det + np.einsum("ki,ki->k", lin, mu)
        if not self.is_torch:
            out = np.empty((self.n, means.shape[0]))
            const = np.ascontiguousarray(const)
            for start, F in self._chunks():
                row_dots(F, weights, const, out[start:start + len(F)])
            return out
        out = self.F @ self._as_data_kind(weights.T)
        out += self._as_data_kind(const)
        out *= -0.5
        return out

    def weighted_moments(self, weights):
        """Per-state weighted moments of the data.

        Parameters
        ----------
        weights : array or Tensor (n, K), of the data's kind (e.g. posteriors).

        Returns
        -------
        mass : (K,) ``sum_t w_tk``
        means : (K, d) ``sum_t w_tk x_t / mass_k``
        covars : (K, d, d) or (K, d)
            Weighted (biased) covariances ``sum_t w_tk (x_t - m_k)(x_t - m_k)^T / mass_k``
            (their diagonal for ``"diag"``); all numpy arrays.
        """
        if self.is_torch:
            sums = (weights.T @ self.F).detach().cpu().numpy()
            mass = weights.sum(0).detach().cpu().numpy()
        else:
            weights = np.ascontiguousarray(weights, dtype=np.float64)
            blocks, K = n_row_blocks(self.n), weights.shape[1]
            partial, partial_mass = np.empty((blocks, K, self.n_columns)), np.empty((blocks, K))
            for start, F in self._chunks():
                first = start // ROW_BLOCK
                last = first + n_row_blocks(len(F))
                weighted_column_sums(weights[start:start + len(F)], F, partial[first:last],
                                     partial_mass[first:last], _NEGLIGIBLE_WEIGHT)
            sums, mass = partial.sum(0), partial_mass.sum(0)
        d = self.d
        safe = np.maximum(mass, np.finfo(float).tiny)[:, None]
        first = sums[:, :d] / safe  # centred means
        second = sums[:, d:] / safe
        K = first.shape[0]
        if self.covariance_type == "diag":
            covars = second - first * first
        else:
            covars = np.empty((K, d, d))
            covars[:, self.iu, self.ju] = second
            covars[:, self.ju, self.iu] = second
            covars -= first[:, :, None] * first[:, None, :]
        return mass, first + self.center, covars
