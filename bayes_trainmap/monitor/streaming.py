"""Online filtering: ``p(s_t | z_1:t)`` one checkpoint at a time.

The forward recursion of an HMM in log space,

    log alpha_1(k) = log pi_k + log b_1(k)
    log alpha_t(k) = log b_t(k) + logsumexp_j (log alpha_{t-1}(j) + log A_jk),

normalised at every step, so the state is the filtered distribution itself and
the normaliser accumulates ``log p(z_1:t)``. Each update costs O(K^2) plus one
Gaussian density per state (O(K d^2)); the values equal the offline
:func:`bayes_trainmap.inference.forward_backward.filtered_posteriors` on the same normalised data.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from bayes_trainmap.inference.emissions import gaussian_log_likelihood

__all__ = ["StreamingFilter"]


class StreamingFilter:
    """Filtered state distribution of one run, updated per checkpoint.

    Parameters
    ----------
    params : inference.params.HMMParams
        The fitted model (start, transitions, Gaussian emissions).

    Attributes
    ----------
    filtered : numpy.ndarray, shape (K,) or None
        ``p(s_t | z_1:t)`` after the last update (None before the first).
    log_likelihood : float
        ``log p(z_1:t)``.
    n_updates : int
        Checkpoints seen, t.
    """

    def __init__(self, params):
        self.params = params
        with np.errstate(divide="ignore"):
            self._log_start = np.log(np.asarray(params.start_prob, dtype=float))
            self._log_trans = np.log(np.asarray(params.trans_mat, dtype=float))
        self._log_alpha: np.ndarray | None = None
        self.log_likelihood = 0.0
        self.n_updates = 0

    @property
    def filtered(self) -> np.ndarray | None:
        return None if self._log_alpha is None else np.exp(self._log_alpha)

    def log_emission(self, z: np.ndarray) -> np.ndarray:
        """``log p(z | s = k)`` for one normalised checkpoint ``z`` of shape (d,), shape (K,)."""
        z = np.asarray(z, dtype=float).reshape(1, -1)
        p = self.params
        return gaussian_log_likelihood(z, p.means, p.covars, p.covariance_type)[0]

    def update(self, z: np.ndarray) -> np.ndarray:
        """Add checkpoint ``z`` (shape (d,), normalised like the fit); return ``p(s_t | z_1:t)`` (K,).

        Raises
        ------
        ValueError
            If ``z`` has the wrong length or is impossible under every state.
        """
        return self.update_log_emission(self.log_emission(z))

    def update_log_emission(self, log_b: np.ndarray) -> np.ndarray:
        """Update with a precomputed ``log p(z_t | s_t = k)``, shape (K,)."""
        log_b = np.asarray(log_b, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self._log_alpha is None:
                log_alpha = self._log_start + log_b
            else:
                log_alpha = log_b + logsumexp(self._log_alpha[:, None] + self._log_trans, axis=0)
            norm = logsumexp(log_alpha)
        if not np.isfinite(norm):
            raise ValueError(f"checkpoint {self.n_updates + 1} has zero probability under every state")
        self._log_alpha = log_alpha - norm
        self.log_likelihood += float(norm)
        self.n_updates += 1
        return np.exp(self._log_alpha)
