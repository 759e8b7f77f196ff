"""Parallel-in-time HMM recursions: associative scans over the time axis (torch, float64).

The forward recursion ``alpha_t = (alpha_{t-1} ⊗ A) ⊙ b_t`` is a product of per-step
matrices in the log semiring (``⊕ = logsumexp``, ``⊗ = +``),

* ``E_0[j, k] = log pi_k + log b_0(k)`` (every row the same), and
* ``E_t[j, k] = log A[j, k] + log b_t(k)`` for ``t >= 1``,

so every ``alpha_t`` is row 0 of the prefix product ``E_0 ⊗ E_1 ⊗ ... ⊗ E_t``, and
every backward message ``beta_t`` column 0 of the suffix product
``E_{t+1} ⊗ ... ⊗ E_{T-1} ⊗ Z`` (``Z`` the all-zero matrix, ``Z[j, k] = log 1``).
Matrix products are associative, so all prefixes come from a work-efficient
(Blelloch/odd-even) scan in ``2 ceil(log2 T)`` sequential levels of batched
``(K, K) x (K, K)`` products instead of ``T`` steps: about ``2 T`` products of
``O(K^3)`` work each, against ``T`` matrix-vector steps of ``O(K^2)``. It pays where
a step's cost is kernel-launch latency (a GPU), not where it is arithmetic (a CPU).

Ragged runs are padded to ``T_max``; padded steps are the semiring identity
(``0`` on the diagonal, ``-inf`` off it), so every run's messages are frozen after
its end exactly as in the sequential loop of :mod:`inference._torch_kernels`.

Semiring product. ``(a ⊗ b)[j, k] = log sum_m exp(a[j, m] + b[m, k])`` is computed
as a real matrix product of ``exp(a - row max)`` and ``exp(b - column max)`` (one
batched GEMM, no ``K^3`` temporary). It is exact to rounding whenever the sum is not
below ``1e-290``; entries below that (possible only when the largest terms of the two
factors sit at different ``m``, e.g. structural zeros against emissions hundreds of
nats apart) and not structurally ``-inf`` are recomputed by an exact ``logsumexp`` over
``m`` for just those entries. Results therefore match the sequential log-space
recursion to rounding (tested to 1e-10). The shifts are constants for autograd, and
``log 0`` is masked, so gradients through structural zeros are 0, never NaN.

Viterbi uses the max-plus semiring (``⊕ = max``): a scan of the same matrices gives
the max-product messages ``delta_t``; backpointers ``psi_t[k] = argmax_j delta_{t-1}[j]
+ log A[j, k]`` are then computed for all ``t`` at once, and the backtrace
``s_{t-1} = psi_t[s_t]`` is a reverse scan of function compositions ``(f ∘ g)[k] =
f[g[k]]`` on index maps ``(K,)``.

Memory. The scan holds the step matrices ``(N, T_max, K, K)`` and its prefixes, in
units of one such float64 array (``8 N T_max K^2`` bytes: 0.8 GB at N=40, T=10,000,
K=16) against ``N T_max K`` for the sequential loop. The prefix matrices are reduced
to the messages ``(N, T_max, K)`` as soon as they are formed, and the forward step
matrices are dropped once the time-reversed backward elements are built; expected
transitions are summed by one ``(K, N T) x (N T, K)`` product of the messages
(:func:`inference._torch_kernels.assemble_posteriors`), never a per-checkpoint ``K x K``
array beyond the scan's own. Measured peaks (CPU resident memory, N=40, T=2000, K=16):
4.6 arrays for a forward-backward, 4.8 for Viterbi, 5.5 for the differentiable
likelihood-only pass with its backward (a tree reduction: ``T`` products in
``log2 T`` levels, whose saved tensors autograd keeps). Max-plus products loop over the
inner index (``K`` elementwise kernels per product) rather than build a ``K^3``
temporary. :data:`SCAN_PEAK_ARRAYS` is the allowance ``method="auto"`` checks against
free device memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._torch_kernels import assemble_posteriors, pad, unpad

__all__ = [
    "associative_scan",
    "log_matmul",
    "maxplus_matmul",
    "forward_backward_scan",
    "viterbi_scan",
    "scan_bytes",
    "SCAN_PEAK_ARRAYS",
]

# Below this, a shifted GEMM entry may have lost terms to underflow: recompute exactly.
_SAFE_SUM = 1e-290
#: Peak memory of a scan in units of ``N T_max K^2`` float64 (measured <= 5.5; margin).
SCAN_PEAK_ARRAYS = 7


def scan_bytes(n_seq: int, t_max: int, n_states: int) -> int:
    """Memory allowance of a forward-backward scan, bytes (``SCAN_PEAK_ARRAYS`` arrays)."""
    return SCAN_PEAK_ARRAYS * 8 * n_seq * t_max * n_states * n_states


def _finite_shift(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over ``dim`` (kept), detached, with non-finite maxima (all ``-inf``) set to 0."""
    return torch.nan_to_num(x.detach().amax(dim=dim, keepdim=True), neginf=0.0)


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp`` whose gradient is 0 (not NaN) on slices that are all ``-inf``."""
    shift = _finite_shift(x, dim)
    total = torch.exp(x - shift).sum(dim=dim)
    positive = total > 0
    log_total = torch.log(torch.where(positive, total, torch.ones_like(total)))
    return torch.where(positive, log_total, torch.full_like(total, -torch.inf)) + shift.squeeze(dim)


def log_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Log-semiring matrix product ``log(exp(a) @ exp(b))``, batched, exact to rounding.

    Parameters
    ----------
    a : Tensor (..., J, M)
    b : Tensor (..., M, K), broadcastable batch dimensions with ``a``.

    Returns
    -------
    Tensor (..., J, K)
        ``-inf`` exactly where every term ``a[j, m] + b[m, k]`` is ``-inf``.
    """
    shift_a = _finite_shift(a, -1)
    shift_b = _finite_shift(b, -2)
    total = (a - shift_a).exp_() @ (b - shift_b).exp_()
    low = total <= _SAFE_SUM
    # clamp: no log 0 (its gradient is 0 where clamped); low entries are set below
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        out = (torch.log(total.clamp_min(_SAFE_SUM)) + (shift_a + shift_b)).masked_fill(low, -torch.inf)
    else:  # the same in place: one (..., J, K) array instead of four
        out = total.clamp_min_(_SAFE_SUM).log_().add_(shift_a).add_(shift_b).masked_fill_(low, -torch.inf)
    if bool(low.any()):
        # Structural -inf (no m with both factors finite, e.g. the identity's off-diagonal)
        # is already exact; the rest of the low entries may have underflowed: redo exactly.
        reach = (torch.isfinite(a).to(total.dtype) @ torch.isfinite(b).to(total.dtype)) > 0
        redo = low & reach
        if bool(redo.any()):
            out = _redo_exactly(out, redo, a, b)
    return out


def _redo_exactly(out, redo, a, b, chunk_elements: int = 1 << 24):
    """``out`` with the entries ``redo`` replaced by an exact logsumexp over the inner index."""
    a_full, b_full = torch.broadcast_tensors(a[..., :, :, None], b[..., None, :, :])  # views
    idx = redo.nonzero(as_tuple=True)  # (batch..., j, k)
    chunk = max(1, chunk_elements // a.shape[-1])  # bounds the (U, M) temporary
    for lo in range(0, idx[0].shape[0], chunk):
        part = tuple(i[lo : lo + chunk] for i in idx)
        batch, j, k = part[:-2], part[-2], part[-1]
        terms = a_full[(*batch, j, slice(None), k)] + b_full[(*batch, j, slice(None), k)]  # (U, M)
        out = out.index_put(part, _logsumexp(terms, -1))
    return out


def maxplus_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-plus matrix product ``c[j, k] = max_m a[j, m] + b[m, k]``, batched (no autograd use).

    Loops over the inner index ``m`` (``M`` elementwise maxima) so that no
    ``(..., J, M, K)`` temporary is formed.
    """
    out = a[..., :, 0:1] + b[..., 0:1, :]
    for m in range(1, a.shape[-1]):
        out = torch.maximum(out, a[..., :, m : m + 1] + b[..., m : m + 1, :])
    return out


def associative_scan(
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    elems: torch.Tensor,
    *,
    reverse: bool = False,
) -> torch.Tensor:
    """Inclusive scan along dim 1 with an associative ``combine(earlier, later)``.

    Work-efficient odd-even recursion (as ``jax.lax.associative_scan``): combine
    neighbouring pairs, scan the half-length sequence, fill in the even positions;
    about ``2 L`` combines in ``2 ceil(log2 L)`` levels.

    Parameters
    ----------
    combine : callable
        ``combine(x, y)`` for ``x`` the earlier segment, batched over leading dims.
    elems : Tensor (N, L, ...)
    reverse : bool
        Suffix scan: position ``t`` gets ``elems[t] ∘ elems[t+1] ∘ ... ∘ elems[L-1]``.

    Returns
    -------
    Tensor (N, L, ...)
        Position ``t`` holds ``elems[0] ∘ ... ∘ elems[t]`` (or the suffix).
    """
    if reverse:
        flipped = _scan(lambda later, earlier: combine(earlier, later), elems.flip(1))
        return flipped.flip(1)
    return _scan(combine, elems)


def _scan(combine, x: torch.Tensor) -> torch.Tensor:
    length = x.shape[1]
    if length < 2:
        return x
    odd = _scan(combine, combine(x[:, 0 : length - 1 : 2], x[:, 1:length:2]))  # prefixes 1, 3, ...
    out = torch.empty_like(x)
    out[:, 1::2] = odd
    out[:, :1] = x[:, :1]
    if length > 2:
        out[:, 2::2] = combine(odd[:, : (length - 1) // 2], x[:, 2:length:2])  # prefixes 2, 4, ...
    return out


def _reduce(combine, x: torch.Tensor) -> torch.Tensor:
    """Total ``x[0] ∘ ... ∘ x[L-1]`` along dim 1 by pairwise tree reduction: (N, ...)."""
    while x.shape[1] > 1:
        length = x.shape[1]
        pairs = combine(x[:, 0 : length - 1 : 2], x[:, 1:length:2])
        x = torch.cat([pairs, x[:, -1:]], dim=1) if length % 2 else pairs
    return x[:, 0]


def _identity(K: int, like: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(K, dtype=torch.bool, device=like.device)
    return torch.where(eye, torch.zeros((), dtype=like.dtype, device=like.device),
                       torch.full((), -torch.inf, dtype=like.dtype, device=like.device))


def _step_matrices(lb_pad, log_start, log_trans, mask):
    """Semiring step matrices ``E`` (N, T, K, K); identity on padded steps."""
    n_seq, _, K = lb_pad.shape
    first = (log_start + lb_pad[:, 0])[:, None, None, :].expand(n_seq, 1, K, K)
    rest = log_trans[None, None] + lb_pad[:, 1:, None, :]
    rest = torch.where(mask[:, 1:, None, None], rest, _identity(K, lb_pad))
    return torch.cat([first, rest], dim=1)


def forward_backward_scan(log_b, log_start, log_trans, lengths, *, need_posteriors=True):
    """Forward-backward over padded sequences by log-semiring scans over time.

    Same contract as :func:`inference._torch_kernels.forward_backward_torch`.

    Parameters
    ----------
    log_b : Tensor (n, K) ; log_start : (K,) ; log_trans : (K, K) ; lengths : (N,) int64.
    need_posteriors : bool
        False: the log-likelihood only, by one tree reduction (differentiable by
        autograd with respect to all three log-potential tensors).

    Returns
    -------
    log_likelihood : (N,) ; posteriors : (n, K) | None ; filtered : (n, K) | None ;
    expected_transitions : (K, K) | None
    """
    lb_pad, mask = pad(log_b, lengths)
    steps = _step_matrices(lb_pad, log_start, log_trans, mask)
    if not need_posteriors:
        total = _reduce(log_matmul, steps)  # (N, K, K), every row the final alpha
        return torch.logsumexp(total[:, 0], dim=-1), None, None, None
    la = associative_scan(log_matmul, steps)[:, :, 0, :].contiguous()  # (N, T, K); frees the prefixes
    log_like = torch.logsumexp(la[:, -1], dim=-1)  # frozen after the end: last valid step
    # Suffixes E_{t+1} ⊗ ... ⊗ E_{T-1} ⊗ Z as a prefix scan of the time-reversed elements
    # (Z: log of the all-ones matrix), built in place of the forward elements.
    backward = torch.cat([torch.zeros_like(steps[:, :1]), steps[:, 1:].flip(1)], dim=1)
    del steps
    suffix = _scan(lambda later, earlier: log_matmul(earlier, later), backward)
    del backward
    lbeta = suffix[:, :, :, 0].flip(1)  # (N, T, K), a copy: frees the suffixes
    del suffix
    post, filt, xi = assemble_posteriors(lb_pad, mask, la, lbeta, log_like, log_trans)
    return log_like, post, filt, xi


def _compose(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """Index maps (..., K): ``(earlier ∘ later)[k] = earlier[later[k]]``."""
    return torch.gather(earlier, -1, later)


def viterbi_scan(log_b, log_start, log_trans, lengths):
    """Batched Viterbi by a max-plus scan and a composition scan of backpointers.

    Returns
    -------
    paths : (n,) int64 ; log_prob : (N,) ``log p(z, s*)``.
    """
    lb_pad, mask = pad(log_b, lengths)
    n_seq, t_max, K = lb_pad.shape
    with torch.no_grad():
        steps = _step_matrices(lb_pad, log_start, log_trans, mask)
        delta = associative_scan(maxplus_matmul, steps)[:, :, 0, :].contiguous()  # (N, T, K)
        del steps
        log_prob, last = torch.max(delta[:, -1], dim=-1)
        if t_max == 1:
            return unpad(last[:, None], mask), log_prob
        # psi_t[k] = argmax_j delta_{t-1}[j] + log A[j, k], t = 1..T-1; identity when padded.
        psi = torch.argmax(delta[:, :-1, :, None] + log_trans[None, None], dim=2)  # (N, T-1, K)
        arange = torch.arange(K, device=log_b.device).expand_as(psi)
        psi = torch.where(mask[:, 1:, None], psi, arange)
        back = associative_scan(_compose, psi, reverse=True)  # psi_t ∘ ... ∘ psi_{T-1}
        earlier = torch.gather(back, 2, last[:, None, None].expand(n_seq, t_max - 1, 1))[..., 0]
        paths = torch.cat([earlier, last[:, None]], dim=1)
    return unpad(paths, mask), log_prob
