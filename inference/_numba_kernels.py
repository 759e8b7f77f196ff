"""Compiled CPU kernels for the HMM time recursions (numba, float64).

All kernels take the concatenated sequences hmmlearn-style: ``log_b`` of shape
(n, K) plus ``offsets`` of shape (N + 1,), sequence ``i`` occupying rows
``offsets[i]:offsets[i+1]``. They loop over sequences and time in compiled code.

The forward-backward kernel works in scaled probability space (Rabiner's
normalised recursion): emissions are exponentiated after subtracting the per-row
maximum, every forward vector is normalised to sum to one, and the log-likelihood
is recovered from the normalisers. Expected transition counts are accumulated
into one K x K array per sequence inside the backward pass, so no per-checkpoint
K x K array is ever formed. The backward messages are scaled by the forward
normalisers and set to zero for states the filter has ruled out (exact zeros of
the start or transition probabilities), so they stay finite where they matter. If
a forward or backward normaliser still underflows to zero or overflows (possible
only with structural zeros and extreme emissions) the sequence is redone by the
log-space kernel, which cannot underflow; the check costs one comparison per step.

Sequences (forward-backward) and row blocks (the emission products) run in
parallel over numba's threads (``NUMBA_NUM_THREADS``, default one per core). Every
sum whose terms are split across threads is kept in fixed per-sequence or
per-block parts and added up in a fixed order afterwards, so results are the same
for any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Reassociation and contraction let LLVM vectorise the reductions; NaN/Inf semantics
# are kept (log_trans may hold -inf, and underflow detection relies on them).
_FAST = {"nsz", "arcp", "contract", "reassoc"}

__all__ = ["forward_backward_scaled", "forward_backward_log", "viterbi_kernel", "ffbs_kernel"]


@njit(cache=True)
def _logsumexp(v):
    m = v.max()
    if m == -np.inf:
        return -np.inf
    s = 0.0
    for i in range(v.shape[0]):
        s += np.exp(v[i] - m)
    return m + np.log(s)


@njit(cache=True, fastmath=_FAST, parallel=True)
def forward_backward_scaled(log_b, log_start, log_trans, offsets, post, filt, xi_seq, ll, failed, b, scale):
    """Scaled forward-backward over all sequences, sequences in parallel.

    Parameters
    ----------
    log_b : (n, K) log emission probabilities.
    log_start : (K,) ; log_trans : (K, K).
    offsets : (N + 1,) int64 sequence boundaries.
    post, filt : (n, K) outputs: smoothed and filtered posteriors.
    xi_seq : (N, K, K) output, expected transition counts of each sequence (the
        caller sums them in a fixed order, so results do not depend on the thread
        count).
    ll : (N,) output log-likelihoods.
    failed : (N,) output flags (1 where a normaliser vanished or overflowed; outputs for that
        sequence are then meaningless and the caller must redo it).
    b, scale : (n, K) and (n,) workspaces (allocated by the caller so that memory
        profilers see them): rescaled emissions and forward normalisers.
    """
    start = np.exp(log_start)
    trans = np.exp(log_trans)
    for i in prange(offsets.shape[0] - 1):
        ll[i], failed[i] = _forward_backward_one(
            log_b, start, trans, offsets[i], offsets[i + 1], post, filt, xi_seq[i], b, scale
        )


@njit(cache=True, fastmath=_FAST)
def _forward_backward_one(log_b, start, trans, lo, hi, post, filt, xi, b, scale):
    """Scaled forward-backward of rows ``lo:hi``; returns ``(log-likelihood, failed)``."""
    K = log_b.shape[1]
    log_norm = 0.0
    # ---- forward: filt[t] = p(s_t | z_1:t), scale[t] = p(z_t | z_1:t-1) / e^{max}
    for t in range(lo, hi):
        m = log_b[t, 0]
        for k in range(1, K):
            if log_b[t, k] > m:
                m = log_b[t, k]
        for k in range(K):
            b[t, k] = np.exp(log_b[t, k] - m)
        log_norm += m
        c = 0.0
        if t == lo:
            for k in range(K):
                a = start[k] * b[t, k]
                filt[t, k] = a
                c += a
        else:
            for k in range(K):
                a = 0.0
                for j in range(K):
                    a += filt[t - 1, j] * trans[j, k]
                a *= b[t, k]
                filt[t, k] = a
                c += a
        if not (c > 0.0) or c == np.inf:
            return np.nan, 1
        inv = 1.0 / c
        for k in range(K):
            filt[t, k] *= inv
        scale[t] = c
        log_norm += np.log(c)
    # ---- backward: beta scaled so that post[t] = filt[t] * beta
    beta = np.ones(K)
    tmp = np.empty(K)
    for j in range(K):
        for k in range(K):
            xi[j, k] = 0.0
    for t in range(hi - 1, lo - 1, -1):
        s = 0.0
        for k in range(K):
            # beta[k] only matters where the filter has mass: a state ruled out at t
            # (filt[t, k] == 0) has p(s_t = k | z) = 0 whatever beta is, and every
            # path into or out of it carries zero forward mass, so its beta is set to
            # 0 instead of being allowed to grow without bound (it would overflow to
            # inf and turn 0 * inf into NaN).
            if filt[t, k] == 0.0:
                beta[k] = 0.0
            g = filt[t, k] * beta[k]
            post[t, k] = g
            s += g
        if not (s > 0.0) or s == np.inf:
            return np.nan, 1
        inv = 1.0 / s
        for k in range(K):
            post[t, k] *= inv
        if t == lo:
            break
        inv_c = 1.0 / scale[t]
        for k in range(K):
            tmp[k] = b[t, k] * beta[k] * inv_c
        for j in range(K):
            acc = 0.0
            fj = filt[t - 1, j]
            for k in range(K):
                w = trans[j, k] * tmp[k]
                xi[j, k] += fj * w
                acc += w
            beta[j] = acc
    return log_norm, 0


@njit(cache=True)
def forward_backward_log(log_b, log_start, log_trans, lo, hi, post, filt, xi_sum):
    """Log-space forward-backward for rows ``lo:hi`` of one sequence.

    Writes ``post`` and ``filt`` rows, adds the expected transitions of the sequence
    to ``xi_sum`` and returns its log-likelihood. Slower than the scaled kernel
    but immune to underflow; used as its fallback.
    """
    K = log_b.shape[1]
    T = hi - lo
    la = np.empty((T, K))
    lb = np.empty((T, K))
    v = np.empty(K)
    for k in range(K):
        la[0, k] = log_start[k] + log_b[lo, k]
    for t in range(1, T):
        for k in range(K):
            for j in range(K):
                v[j] = la[t - 1, j] + log_trans[j, k]
            la[t, k] = _logsumexp(v) + log_b[lo + t, k]
    log_like = _logsumexp(la[T - 1])
    for k in range(K):
        lb[T - 1, k] = 0.0
    for t in range(T - 2, -1, -1):
        for j in range(K):
            for k in range(K):
                v[k] = log_trans[j, k] + log_b[lo + t + 1, k] + lb[t + 1, k]
            lb[t, j] = _logsumexp(v)
    for t in range(T):
        norm_f = _logsumexp(la[t])
        for k in range(K):
            filt[lo + t, k] = np.exp(la[t, k] - norm_f)
            post[lo + t, k] = np.exp(la[t, k] + lb[t, k] - log_like)
        s = 0.0
        for k in range(K):
            s += post[lo + t, k]
        for k in range(K):
            post[lo + t, k] /= s
    for t in range(1, T):
        for j in range(K):
            for k in range(K):
                xi_sum[j, k] += np.exp(
                    la[t - 1, j] + log_trans[j, k] + log_b[lo + t, k] + lb[t, k] - log_like
                )
    return log_like


@njit(cache=True)
def viterbi_kernel(log_b, log_start, log_trans, offsets, paths, log_prob):
    """Most probable state path of every sequence (max-product in log space).

    Writes ``paths`` (n,) int64 and ``log_prob`` (N,) = log p(z, s*).
    Ties go to the lowest state index.
    """
    n, K = log_b.shape
    delta = np.empty(K)
    new = np.empty(K)
    back = np.empty((n, K), dtype=np.int64)
    for i in range(offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        for k in range(K):
            delta[k] = log_start[k] + log_b[lo, k]
        for t in range(lo + 1, hi):
            for k in range(K):
                best = delta[0] + log_trans[0, k]
                arg = 0
                for j in range(1, K):
                    cand = delta[j] + log_trans[j, k]
                    if cand > best:
                        best = cand
                        arg = j
                new[k] = best + log_b[t, k]
                back[t, k] = arg
            for k in range(K):
                delta[k] = new[k]
        arg = 0
        for k in range(1, K):
            if delta[k] > delta[arg]:
                arg = k
        log_prob[i] = delta[arg]
        paths[hi - 1] = arg
        for t in range(hi - 1, lo, -1):
            paths[t - 1] = back[t, paths[t]]


@njit(cache=True)
def ffbs_kernel(filt, log_trans, offsets, uniforms, paths):
    """Backward sampling given filtered posteriors (forward filtering backward sampling).

    ``s_T ~ filt[T]``, then ``p(s_t = j | s_{t+1} = k, z_1:t) ∝ filt[t, j] A[j, k]``.
    ``uniforms`` (n,) are the U(0, 1) draws, one per checkpoint.
    """
    K = filt.shape[1]
    trans = np.exp(log_trans)
    w = np.empty(K)
    for i in range(offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        for t in range(hi - 1, lo - 1, -1):
            total = 0.0
            for j in range(K):
                if t == hi - 1:
                    w[j] = filt[t, j]
                else:
                    w[j] = filt[t, j] * trans[j, paths[t + 1]]
                total += w[j]
            u = uniforms[t] * total
            acc = 0.0
            choice = -1
            last_positive = 0
            for j in range(K):
                if w[j] > 0.0:
                    last_positive = j
                acc += w[j]
                if u < acc:
                    choice = j
                    break
            # Rounding can leave u >= the accumulated total: take the last state
            # with positive weight, never a zero-weight one.
            paths[t] = choice if choice >= 0 else last_positive


#: Rows per work item of the parallel emission kernels. Fixed (not derived from the
#: thread count) so that block-wise sums, and hence results, are the same whatever the
#: number of threads.
ROW_BLOCK = 2048


def n_row_blocks(n: int) -> int:
    """Number of :data:`ROW_BLOCK` blocks covering ``n`` rows."""
    return -(-int(n) // ROW_BLOCK)


@njit(cache=True, fastmath=_FAST, parallel=True)
def row_dots(F, W, const, out):
    """``out[t, k] = -0.5 (F[t] . W[k] + const[k])`` for F (n, P), W (K, P), const (K,).

    The skinny GEMM ``F @ W.T`` of the emission log-densities, with their per-state
    constant and factor folded in. OpenBLAS handles these shapes (K ~ 10 output
    columns) poorly; a contiguous vectorised dot per row is ~2x faster. Row blocks
    run in parallel.
    """
    n, P = F.shape
    K = W.shape[0]
    for block in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        for t in range(block * ROW_BLOCK, min(n, (block + 1) * ROW_BLOCK)):
            for k in range(K):
                acc = 0.0
                for p in range(P):
                    acc += F[t, p] * W[k, p]
                out[t, k] = -0.5 * (acc + const[k])


@njit(cache=True, fastmath=_FAST, parallel=True)
def weighted_column_sums(G, F, partial, partial_mass, skip_below):
    """Block partial sums of the skinny GEMM ``G.T @ F``: ``partial[b, k, p] = sum_{t in b} G[t, k] F[t, p]``.

    ``partial`` has shape (n_row_blocks(n), K, P) and ``partial_mass`` (n_row_blocks(n),
    K) receives the blocks' column sums of ``G``; the caller sums both over blocks in
    a fixed order, so the result does not depend on the thread count. Weights
    ``|G[t, k]| <= skip_below`` are skipped. With posteriors as weights (rows summing
    to one) and ``skip_below`` far below machine epsilon, the skipped terms are
    smaller than the rounding error of the sum itself, while well-separated states
    (most posteriors ~ 1e-50) cost up to K times less.
    """
    n, P = F.shape
    K = G.shape[1]
    for block in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        acc = partial[block]
        mass = partial_mass[block]
        for k in range(K):
            mass[k] = 0.0
            for p in range(P):
                acc[k, p] = 0.0
        for t in range(block * ROW_BLOCK, min(n, (block + 1) * ROW_BLOCK)):
            for k in range(K):
                g = G[t, k]
                if abs(g) > skip_below:
                    mass[k] += g
                    for p in range(P):
                        acc[k, p] += g * F[t, p]


@njit(cache=True, parallel=True)
def quadratic_features(Xc, iu, ju, out):
    """``out[t] = (x_t, x_ti x_tj for (i, j) in zip(iu, ju))``, out of shape (n, d + len(iu))."""
    n, d = Xc.shape
    P = iu.shape[0]
    for t in prange(n):
        for i in range(d):
            out[t, i] = Xc[t, i]
        for p in range(P):
            out[t, d + p] = Xc[t, iu[p]] * Xc[t, ju[p]]
