"""Exact marginal log-likelihood of an HMM as a differentiable torch operation.

The discrete states are summed out by the compiled forward algorithm of
:mod:`inference.forward_backward` (numba on CPU, torch kernels on CUDA). Its gradient
needs no backpropagation through the time recursion: by Fisher's identity the
gradient of ``log p(z_1:T)`` with respect to the (unnormalised) log potentials is the
expected sufficient statistic under the smoothed posterior,

* ``d log p / d log_emission[t, k] = p(s_t = k | z_1:T)``  (smoothed posteriors),
* ``d log p / d log_trans[j, k]    = sum_t p(s_t = j, s_t+1 = k | z_1:T)``,
* ``d log p / d log_start[k]       = p(s_1 = k | z_1:T)``.

So one forward-backward pass gives the value and the whole gradient. Normalisation
(``log_softmax`` of logits, ``log`` of simplex-valued probabilities) stays outside this
function and is differentiated by torch as usual.

:func:`reference_log_likelihood` is a plain, differentiable torch forward recursion
over padded runs: slow, used as an oracle in the tests and by nothing else.
"""

from __future__ import annotations

import numpy as np
import torch

from .forward_backward import forward_backward

__all__ = ["hmm_log_likelihood", "reference_log_likelihood", "pad_sequences"]


def _run_forward_backward(log_emission, log_start, log_trans, lengths):
    """Call the engine on the device the inputs live on; return torch tensors there."""
    device, dtype = log_emission.device, log_emission.dtype
    if log_emission.is_cuda:
        result = forward_backward(
            log_emission, log_start, log_trans, lengths.to(device), backend="torch"
        )
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    else:
        # numba kernels work on numpy; the conversion is zero-copy for CPU tensors.
        result = forward_backward(
            log_emission.numpy(),
            log_start.numpy(),
            log_trans.numpy(),
            lengths.cpu().numpy(),
            backend="numba",
        )
        as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    return (
        as_tensor(result.log_likelihood),
        as_tensor(result.posteriors),
        as_tensor(result.expected_transitions),
        as_tensor(result.expected_start),
    )


class _MarginalLogLikelihood(torch.autograd.Function):
    """Total log-likelihood of ragged sequences with Fisher-identity gradients."""

    @staticmethod
    def forward(ctx, log_emission, log_start, log_trans, lengths):
        loglik, posteriors, expected_trans, expected_start = _run_forward_backward(
            log_emission.detach(), log_start.detach(), log_trans.detach(), lengths
        )
        ctx.save_for_backward(posteriors, expected_trans, expected_start)
        return loglik.sum()

    @staticmethod
    def backward(ctx, grad_output):
        posteriors, expected_trans, expected_start = ctx.saved_tensors
        return (
            grad_output * posteriors,
            grad_output * expected_start,
            grad_output * expected_trans,
            None,
        )


def hmm_log_likelihood(
    log_emission: torch.Tensor,
    log_start: torch.Tensor,
    log_trans: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Total exact log-likelihood ``sum_i log p(z^(i))`` of ragged runs, differentiable.

    Parameters
    ----------
    log_emission : torch.Tensor, shape (n_total, K)
        ``log N(z_t | mu_k, Sigma_k)`` for the concatenated runs.
    log_start : torch.Tensor, shape (K,)
        Log initial-state potentials (normally ``log pi``).
    log_trans : torch.Tensor, shape (K, K)
        Log transition potentials, ``[j, k]`` for ``j -> k`` (normally ``log A``).
    lengths : torch.Tensor, shape (N,), integer
        Run lengths, summing to ``n_total``.

    Returns
    -------
    torch.Tensor, scalar
        Summed over runs. Gradients flow to the three potential tensors by Fisher's
        identity (see the module docstring); no second derivatives.
    """
    if log_emission.ndim != 2 or log_emission.shape[1] != log_start.shape[0]:
        raise ValueError(
            f"log_emission must have shape (n_total, K={log_start.shape[0]}), "
            f"got {tuple(log_emission.shape)}"
        )
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    if int(lengths.sum()) != log_emission.shape[0]:
        raise ValueError(
            f"lengths sum to {int(lengths.sum())} but log_emission has "
            f"{log_emission.shape[0]} rows"
        )
    return _MarginalLogLikelihood.apply(log_emission, log_start, log_trans, lengths)


def pad_sequences(X: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated runs ``(n_total, ...)`` -> padded ``(N, T_max, ...)`` and mask ``(N, T_max)``."""
    lengths = [int(n) for n in lengths]
    t_max = max(lengths)
    padded = X.new_zeros((len(lengths), t_max) + tuple(X.shape[1:]))
    mask = torch.zeros((len(lengths), t_max), dtype=torch.bool, device=X.device)
    start = 0
    for i, n in enumerate(lengths):
        padded[i, :n] = X[start : start + n]
        mask[i, :n] = True
        start += n
    return padded, mask


def reference_log_likelihood(
    log_emission: torch.Tensor,
    log_start: torch.Tensor,
    log_trans: torch.Tensor,
    lengths,
) -> torch.Tensor:
    """Per-run log-likelihood ``(N,)`` by an autograd-friendly log-space forward pass.

    Runs are padded; past a run's end its forward vector is carried unchanged. This
    differentiates through the Python time loop, so it is only for tests on tiny data.
    """
    padded, mask = pad_sequences(log_emission, lengths)
    log_alpha = log_start + padded[:, 0]
    for t in range(1, padded.shape[1]):
        step = torch.logsumexp(log_alpha[:, :, None] + log_trans, dim=1) + padded[:, t]
        log_alpha = torch.where(mask[:, t, None], step, log_alpha)
    return torch.logsumexp(log_alpha, dim=-1)
