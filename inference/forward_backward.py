"""Exact inference in HMMs: forward-backward, filtering, Viterbi and path sampling.

Every function takes the log emission matrix of several concatenated sequences
(hmmlearn layout: ``log_emission`` of shape (n, K) plus ``lengths`` of shape (N,)),
the log initial distribution (K,) and the log transition matrix (K, K), and is
batched over the sequences.

Backends
--------
``"numba"``
    Compiled CPU kernels (:mod:`inference._numba_kernels`) looping over sequences
    and time in scaled probability space, with a log-space fallback.
``"torch"``
    Batched over padded sequences, log space (:mod:`inference._torch_kernels`);
    runs on any device, differentiable.
``"auto"`` (default)
    numba for numpy arrays and CPU tensors, torch for tensors on an accelerator.

Methods (the torch backend's time axis; keyword ``method``)
------------------------------------------------------------
``"sequential"``
    One batched step per checkpoint (``T_max`` steps).
``"scan"``
    Parallel in time: associative scans of log-semiring (max-plus for Viterbi)
    matrix products, ``2 ceil(log2 T_max)`` levels (:mod:`inference._scan_kernels`);
    ``O(K^3)`` work and ``N T_max K^2`` memory per step instead of ``O(K^2)`` and
    ``N T_max K``. Implies the torch backend (``backend="numba"`` is refused).
``"auto"`` (default)
    ``"scan"`` for tensors on CUDA with ``T_max >= SCAN_MIN_LENGTH`` (256) whose scan
    fits in half the device's free memory (:func:`inference._scan_kernels.scan_bytes`),
    else ``"sequential"``; numba is always sequential. Rationale: on a GPU a sequential
    step costs a few kernel launches (~10 us each) whatever N and K, so the loop
    costs ~``8 T_max`` launches, against ~``20 log2 T_max`` for the scan plus its
    larger but fully parallel arithmetic; below a few hundred checkpoints the
    launch saving is small against the scan's ``K``-fold extra work and memory. On a
    CPU the scan only adds work (measured in ``benchmarks/bench_mle.py --engines``).

Inputs may be numpy arrays or torch tensors; results are returned as the same kind
(on the same device) as ``log_emission``, in float64.

Gradient identities (used by the Bayesian path): with ``L = sum(log_likelihood)``,
``dL/d log_emission = posteriors``, ``dL/d log_trans = expected_transitions`` and
``dL/d log_start = expected_start``; the torch backend gives them by autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _numba_kernels as nk

__all__ = [
    "ForwardBackwardResult",
    "forward_backward",
    "filtered_posteriors",
    "viterbi",
    "sample_paths",
    "check_lengths",
    "SCAN_MIN_LENGTH",
]

_BACKENDS = ("auto", "numba", "torch")
_METHODS = ("auto", "sequential", "scan")
#: ``method="auto"`` uses the time-parallel scan on CUDA from this many checkpoints.
SCAN_MIN_LENGTH = 256


@dataclass
class ForwardBackwardResult:
    """Output of :func:`forward_backward` (arrays of the input's kind).

    Attributes
    ----------
    log_likelihood : (N,) log p(z_1:T) per sequence.
    posteriors : (n, K) smoothed p(s_t | z_1:T).
    filtered : (n, K) filtered p(s_t | z_1:t), or None unless requested.
    expected_transitions : (K, K) sum over sequences and t of p(s_{t-1}=j, s_t=k | z).
    expected_start : (K,) sum over sequences of p(s_1 = k | z).
    """

    log_likelihood: Any
    posteriors: Any
    filtered: Any
    expected_transitions: Any
    expected_start: Any


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def check_lengths(lengths, n: int) -> np.ndarray:
    """Validate ``lengths`` against ``n`` rows; ``None`` means one sequence.

    Returns
    -------
    lengths : (N,) int64 array of positive integers summing to ``n``.
    """
    if lengths is None:
        if n < 1:
            raise ValueError("X has no rows; expected at least one checkpoint")
        return np.array([n], dtype=np.int64)
    if _is_torch(lengths):
        lengths = lengths.detach().cpu().numpy()
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-D sequence of ints, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise ValueError(f"lengths must be integers, got {arr.tolist()[:10]}")
    arr = arr.astype(np.int64)
    if np.any(arr < 1):
        bad = int(np.flatnonzero(arr < 1)[0])
        raise ValueError(f"lengths must be positive, got lengths[{bad}] = {int(arr[bad])}")
    if int(arr.sum()) != n:
        raise ValueError(f"lengths sum to {int(arr.sum())} but X has {n} rows; they must agree")
    return arr


def _pick_backend(backend: str, log_emission, method: str = "auto") -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method == "scan":
        if backend == "numba":
            raise ValueError("method='scan' runs on the torch backend; got backend='numba'")
        return "torch"
    if backend != "auto":
        return backend
    if _is_torch(log_emission) and log_emission.device.type != "cpu":
        return "torch"
    return "numba"


def _pick_method(method: str, backend: str, log_emission, lengths: np.ndarray) -> str:
    """Resolve ``method`` (already validated) for the chosen backend."""
    if backend == "numba":
        return "sequential"
    if method != "auto":
        return method
    if log_emission.device.type != "cuda" or int(lengths.max()) < SCAN_MIN_LENGTH:
        return "sequential"
    return "scan" if _scan_fits(log_emission, lengths) else "sequential"


def _scan_fits(log_emission, lengths: np.ndarray) -> bool:
    """Whether a scan's memory allowance fits in half the free memory of a CUDA device."""
    # lazily: torch is imported only for the torch backends
    import torch

    # lazily: it imports torch
    from ._scan_kernels import scan_bytes

    free, _ = torch.cuda.mem_get_info(log_emission.device)
    return scan_bytes(len(lengths), int(lengths.max()), log_emission.shape[1]) <= free // 2


def _check_model(log_emission, log_start, log_trans):
    if log_emission.ndim != 2:
        raise ValueError(f"log_emission must be 2-D (n, K), got shape {tuple(log_emission.shape)}")
    K = log_emission.shape[1]
    if tuple(log_start.shape) != (K,):
        raise ValueError(f"log_start must have shape ({K},), got {tuple(log_start.shape)}")
    if tuple(log_trans.shape) != (K, K):
        raise ValueError(f"log_trans must have shape ({K}, {K}), got {tuple(log_trans.shape)}")


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float64)


def _to_torch(x, like):
    import torch

    return torch.as_tensor(x, dtype=torch.float64, device=like.device)


def _prepare(log_emission, log_start, log_trans, lengths, backend, method="auto"):
    """Validate and convert inputs for the chosen backend; ``backend`` comes back as
    ``"numba"``, ``"torch"`` (sequential) or ``"torch-scan"``."""
    backend = _pick_backend(backend, log_emission, method)
    _check_model(log_emission, log_start, log_trans)
    lengths = check_lengths(lengths, log_emission.shape[0])
    if backend == "numba":
        return backend, _to_numpy(log_emission), _to_numpy(log_start), _to_numpy(log_trans), lengths
    import torch

    ref = log_emission if _is_torch(log_emission) else torch.empty(0)
    le = ref.to(torch.float64) if _is_torch(log_emission) else _to_torch(log_emission, ref)
    if _pick_method(method, backend, le, lengths) == "scan":
        backend = "torch-scan"
    return (
        backend,
        le,
        log_start.to(le) if _is_torch(log_start) else _to_torch(log_start, le),
        log_trans.to(le) if _is_torch(log_trans) else _to_torch(log_trans, le),
        torch.as_tensor(lengths, device=le.device),
    )


def _as_input_kind(x, like):
    """Return ``x`` (numpy or torch) as the kind/device of ``like``."""
    if x is None:
        return None
    if _is_torch(like):
        import torch

        if _is_torch(x):
            return x.to(like.device)
        return torch.as_tensor(x, device=like.device)
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return x


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _numba_forward_backward(log_b, log_start, log_trans, lengths):
    n, K = log_b.shape
    offsets = _offsets(lengths)
    post = np.empty((n, K))
    filt = np.empty((n, K))
    xi_seq = np.empty((len(lengths), K, K))
    ll = np.empty(len(lengths))
    failed = np.zeros(len(lengths), dtype=np.int64)
    with np.errstate(divide="ignore"):
        nk.forward_backward_scaled(
            log_b, log_start, log_trans, offsets, post, filt, xi_seq, ll, failed,
            np.empty((n, K)), np.empty(n),
        )
        for i in np.flatnonzero(failed):
            xi_seq[i] = 0.0
            ll[i] = nk.forward_backward_log(
                log_b, log_start, log_trans, offsets[i], offsets[i + 1], post, filt, xi_seq[i]
            )
    return ll, post, filt, xi_seq.sum(0)


def _torch_fb(backend: str):
    """The torch forward-backward kernel of a resolved backend."""
    if backend == "torch-scan":
        # lazily: torch is imported only for the torch backends
        from ._scan_kernels import forward_backward_scan

        return forward_backward_scan
    # lazily: torch is imported only for the torch backends
    from ._torch_kernels import forward_backward_torch

    return forward_backward_torch


def forward_backward(
    log_emission,
    log_start,
    log_trans,
    lengths=None,
    *,
    filtered: bool = False,
    backend: str = "auto",
    method: str = "auto",
) -> ForwardBackwardResult:
    """Forward-backward over several sequences.

    Parameters
    ----------
    log_emission : array or Tensor, shape (n, K)
        ``log p(z_t | s_t = k)`` for the concatenated sequences.
    log_start : shape (K,)
        Log initial state probabilities (``-inf`` allowed).
    log_trans : shape (K, K)
        Log transition matrix, ``log_trans[j, k] = log p(s_{t+1}=k | s_t=j)``.
    lengths : shape (N,) ints summing to n, or None for one sequence.
    filtered : bool
        Also return the filtered posteriors p(s_t | z_1:t).
    backend : {"auto", "numba", "torch"}
    method : {"auto", "sequential", "scan"}
        Time recursion of the torch backend (see the module docstring).

    Returns
    -------
    ForwardBackwardResult
    """
    backend, le, ls, lt, lens = _prepare(log_emission, log_start, log_trans, lengths, backend, method)
    if backend == "numba":
        ll, post, filt, xi = _numba_forward_backward(le, ls, lt, lens)
    else:
        ll, post, filt, xi = _torch_fb(backend)(le, ls, lt, lens)
    offsets = _offsets(lens.cpu().numpy() if _is_torch(lens) else lens)[:-1]
    start = post[offsets].sum(0)
    return ForwardBackwardResult(
        log_likelihood=_as_input_kind(ll, log_emission),
        posteriors=_as_input_kind(post, log_emission),
        filtered=_as_input_kind(filt, log_emission) if filtered else None,
        expected_transitions=_as_input_kind(xi, log_emission),
        expected_start=_as_input_kind(start, log_emission),
    )


def log_likelihood(
    log_emission, log_start, log_trans, lengths=None, *, backend: str = "auto", method: str = "auto"
):
    """Per-sequence log-likelihood (N,) (the forward pass of :func:`forward_backward`).

    With ``method="scan"`` it is one tree reduction of the step matrices.
    """
    backend, le, ls, lt, lens = _prepare(log_emission, log_start, log_trans, lengths, backend, method)
    if backend == "numba":
        ll = _numba_forward_backward(le, ls, lt, lens)[0]
    else:
        ll = _torch_fb(backend)(le, ls, lt, lens, need_posteriors=False)[0]
    return _as_input_kind(ll, log_emission)


def filtered_posteriors(
    log_emission, log_start, log_trans, lengths=None, *, backend: str = "auto", method: str = "auto"
):
    """Filtered posteriors p(s_t | z_1:t), shape (n, K), of the input's kind."""
    return forward_backward(
        log_emission, log_start, log_trans, lengths, filtered=True, backend=backend, method=method
    ).filtered


def viterbi(
    log_emission, log_start, log_trans, lengths=None, *, backend: str = "auto", method: str = "auto"
):
    """Most probable state paths (``method="scan"``: max-plus scan, see the module docstring).

    Returns
    -------
    paths : (n,) int64
        The Viterbi path of every sequence, concatenated.
    log_prob : (N,)
        ``log p(z, s*)`` of each sequence's best path.
    """
    backend, le, ls, lt, lens = _prepare(log_emission, log_start, log_trans, lengths, backend, method)
    if backend == "numba":
        paths = np.empty(le.shape[0], dtype=np.int64)
        log_prob = np.empty(len(lens))
        nk.viterbi_kernel(le, ls, lt, _offsets(lens), paths, log_prob)
    elif backend == "torch-scan":
        # lazily: torch is imported only for the torch backends
        from ._scan_kernels import viterbi_scan

        paths, log_prob = viterbi_scan(le, ls, lt, lens)
    else:
        # lazily: torch is imported only for the torch backends
        from ._torch_kernels import viterbi_torch

        paths, log_prob = viterbi_torch(le, ls, lt, lens)
    return _as_input_kind(paths, log_emission), _as_input_kind(log_prob, log_emission)


def sample_paths(
    log_emission, log_start, log_trans, lengths=None, random_state=None, *, backend: str = "auto"
):
    """Draw one state path per sequence from p(s | z) (forward filtering, backward sampling).

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        Source of the n uniform draws (taken with numpy, so both backends give the
        same paths for the same seed).

    Returns
    -------
    paths : (n,) int64
    """
    rng = np.random.default_rng(random_state)
    backend, le, ls, lt, lens = _prepare(log_emission, log_start, log_trans, lengths, backend)
    uniforms = rng.random(le.shape[0])
    if backend == "numba":
        filt = _numba_forward_backward(le, ls, lt, lens)[2]
        paths = np.empty(le.shape[0], dtype=np.int64)
        nk.ffbs_kernel(filt, lt, _offsets(lens), uniforms, paths)
    else:
        # lazily: torch is imported only for the torch backends
        from ._torch_kernels import ffbs_torch

        filt = _torch_fb(backend)(le, ls, lt, lens)[2]
        paths = ffbs_torch(filt, lt, lens, _to_torch(uniforms, le))
    return _as_input_kind(paths, log_emission)
