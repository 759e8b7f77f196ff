"""Batched torch implementations of the HMM recursions (float64, any device).

Sequences of ragged length are padded to ``(N, T_max, K)`` and carried through
one time loop for all runs at once; a mask freezes the recursion of a sequence
after its end, so each step is a handful of batched kernels regardless of ``N``.
Everything is in log space (no underflow, and differentiable end to end, so
autograd of the log-likelihood returns the posteriors). This is the path for CUDA,
where the per-step cost is kernel-launch overhead rather than arithmetic.
"""

from __future__ import annotations

import torch

__all__ = [
    "pad", "unpad", "forward_backward_torch", "assemble_posteriors", "viterbi_torch", "ffbs_torch",
]


def pad(flat: torch.Tensor, lengths: torch.Tensor, fill: float = 0.0):
    """Concatenated rows (n, ...) -> padded (N, T_max, ...) plus mask (N, T_max)."""
    n_seq = lengths.shape[0]
    t_max = int(lengths.max())
    steps = torch.arange(t_max, device=flat.device)
    mask = steps[None, :] < lengths[:, None]
    out = flat.new_full((n_seq, t_max, *flat.shape[1:]), fill)
    out[mask] = flat
    return out, mask


def unpad(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pad`: (N, T_max, ...) -> (n, ...)."""
    return padded[mask]


def _forward_log(log_b, log_start, log_trans, mask):
    """Log forward messages (N, T, K), frozen after each sequence's end."""
    alphas = [log_start[None, :] + log_b[:, 0]]
    for t in range(1, log_b.shape[1]):
        step = torch.logsumexp(alphas[-1][:, :, None] + log_trans[None], dim=1) + log_b[:, t]
        alphas.append(torch.where(mask[:, t, None], step, alphas[-1]))
    return torch.stack(alphas, dim=1)


def forward_backward_torch(log_b, log_start, log_trans, lengths, *, need_posteriors=True):
    """Forward-backward over padded sequences.

    Parameters
    ----------
    log_b : Tensor (n, K) ; log_start : (K,) ; log_trans : (K, K) ; lengths : (N,) int64.

    Returns
    -------
    log_likelihood : (N,) ; posteriors : (n, K) | None ; filtered : (n, K) | None ;
    expected_transitions : (K, K) | None
    """
    lb_pad, mask = pad(log_b, lengths)
    la = _forward_log(lb_pad, log_start, log_trans, mask)
    log_like = torch.logsumexp(la[:, -1], dim=-1)  # frozen: last valid step
    if not need_posteriors:
        return log_like, None, None, None
    t_max = lb_pad.shape[1]
    ones = torch.zeros_like(la[:, 0])
    betas = [ones]
    for t in range(t_max - 1, 0, -1):
        step = torch.logsumexp(log_trans[None] + (lb_pad[:, t] + betas[-1])[:, None, :], dim=2)
        betas.append(torch.where(mask[:, t, None], step, ones))
    lbeta = torch.stack(betas[::-1], dim=1)
    post, filt, xi = assemble_posteriors(lb_pad, mask, la, lbeta, log_like, log_trans)
    return log_like, post, filt, xi


def assemble_posteriors(lb_pad, mask, la, lbeta, log_like, log_trans):
    """Smoothed and filtered posteriors and summed expected transitions from log messages.

    Parameters
    ----------
    lb_pad : (N, T, K) padded log emissions ; mask : (N, T) bool ;
    la, lbeta : (N, T, K) log forward / backward messages (frozen after each end) ;
    log_like : (N,) ; log_trans : (K, K).

    Returns
    -------
    posteriors : (n, K) ; filtered : (n, K) ; expected_transitions : (K, K)
    """
    log_post = la + lbeta - log_like[:, None, None]
    post = torch.softmax(log_post, dim=-1)  # renormalise each row against rounding
    log_filt_norm = torch.logsumexp(la, dim=-1, keepdim=True)
    filt = torch.exp(la - log_filt_norm)
    # xi[j, k] = A[j, k] sum_{n,t} filt[t-1, j] exp(log b_t[k] + beta_t[k] + f_{t-1} - ll):
    # a (K, N T) x (N T, K) product, never a per-checkpoint K x K array.
    right = torch.exp(lb_pad[:, 1:] + lbeta[:, 1:] + log_filt_norm[:, :-1] - log_like[:, None, None])
    # A state with zero forward mass at t (structural zeros) carries no transition into it
    # at t, but its factor above can overflow to inf (its backward message is not bounded
    # by a posterior) and make 0 * inf = NaN in the product: zero it there.
    right = torch.where(mask[:, 1:, None] & (la[:, 1:] > -torch.inf), right, torch.zeros_like(right))
    K = la.shape[-1]
    xi = torch.exp(log_trans) * (filt[:, :-1].reshape(-1, K).T @ right.reshape(-1, K))
    return unpad(post, mask), unpad(filt, mask), xi


def viterbi_torch(log_b, log_start, log_trans, lengths):
    """Batched Viterbi: paths (n,) int64 and log p(z, s*) (N,)."""
    lb_pad, mask = pad(log_b, lengths)
    n_seq, t_max, K = lb_pad.shape
    delta = log_start[None, :] + lb_pad[:, 0]
    backs = [torch.zeros((n_seq, K), dtype=torch.int64, device=log_b.device)]
    for t in range(1, t_max):
        best, arg = torch.max(delta[:, :, None] + log_trans[None], dim=1)
        delta = torch.where(mask[:, t, None], best + lb_pad[:, t], delta)
        backs.append(arg)
    log_prob, state = torch.max(delta, dim=-1)
    states = [state]
    for t in range(t_max - 1, 0, -1):
        prev = torch.gather(backs[t], 1, state[:, None])[:, 0]
        state = torch.where(mask[:, t], prev, state)
        states.append(state)
    paths = torch.stack(states[::-1], dim=1)
    return unpad(paths, mask), log_prob


def ffbs_torch(filtered, log_trans, lengths, uniforms):
    """Backward sampling from filtered posteriors (n, K) with U(0,1) draws (n,)."""
    filt_pad, mask = pad(filtered, lengths)
    u_pad, _ = pad(uniforms, lengths)
    n_seq, t_max, K = filt_pad.shape
    trans = torch.exp(log_trans)
    last = lengths - 1
    state = torch.zeros(n_seq, dtype=torch.int64, device=filtered.device)
    states = []
    for t in range(t_max - 1, -1, -1):
        w_last = filt_pad[:, t]
        w_mid = filt_pad[:, t] * trans[:, state].T
        w = torch.where((t == last)[:, None], w_last, w_mid)
        cum = torch.cumsum(w, dim=-1)
        u = u_pad[:, t] * cum[:, -1]
        choice = (cum <= u[:, None]).sum(-1).clamp(max=K - 1)
        # Rounding can push past the total: fall back to the last positive-weight state.
        positive = w > 0
        last_positive = K - 1 - torch.argmax(positive.flip(-1).to(torch.int8), dim=-1)
        bad = ~torch.gather(positive, 1, choice[:, None])[:, 0]
        choice = torch.where(bad, last_positive, choice)
        state = torch.where(mask[:, t], choice, state)
        states.append(state)
    paths = torch.stack(states[::-1], dim=1)
    return unpad(paths, mask)
