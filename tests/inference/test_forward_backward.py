"""Forward-backward, filtering, Viterbi and FFBS against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from bayes_trainmap.inference import _numba_kernels as nk
from bayes_trainmap.inference.forward_backward import (
    filtered_posteriors,
    forward_backward,
    log_likelihood,
    sample_paths,
    viterbi,
)

BACKENDS = ["numba", "torch"]


def _random_hmm(rng, K, n, zero_trans=False):
    log_b = rng.normal(scale=2.0, size=(n, K))
    start = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K), size=K)
    if zero_trans and K > 1:
        trans[0, 1] = 0.0  # a structural zero (log = -inf)
        trans /= trans.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        return log_b, np.log(start), np.log(trans)


def _brute_force(log_b, log_start, log_trans):
    """Enumerate all K^T paths of one sequence."""
    T, K = log_b.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    joint = log_start[paths[:, 0]] + log_b[0, paths[:, 0]]
    for t in range(1, T):
        joint = joint + log_trans[paths[:, t - 1], paths[:, t]] + log_b[t, paths[:, t]]
    ll = logsumexp(joint)
    w = np.exp(joint - ll)
    post = np.zeros((T, K))
    xi = np.zeros((K, K))
    for t in range(T):
        np.add.at(post[t], paths[:, t], w)
        if t:
            np.add.at(xi, (paths[:, t - 1], paths[:, t]), w)
    filt = np.zeros((T, K))
    for t in range(T):
        # p(s_t | z_1:t) from the prefix joint of every path (each prefix counted K^(T-t-1) times).
        prefix = log_start[paths[:, 0]] + log_b[0, paths[:, 0]]
        for u in range(1, t + 1):
            prefix = prefix + log_trans[paths[:, u - 1], paths[:, u]] + log_b[u, paths[:, u]]
        for k in range(K):
            filt[t, k] = logsumexp(prefix[paths[:, t] == k]) if np.any(paths[:, t] == k) else -np.inf
        filt[t] = np.exp(filt[t] - logsumexp(filt[t]))
    best = int(np.argmax(joint))
    return ll, post, filt, xi, paths[best], joint[best]


def _oracle(log_b, log_start, log_trans, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = [_brute_force(log_b[a:b], log_start, log_trans) for a, b in zip(offsets[:-1], offsets[1:])]
    ll = np.array([o[0] for o in out])
    post = np.concatenate([o[1] for o in out])
    filt = np.concatenate([o[2] for o in out])
    xi = sum(o[3] for o in out)
    paths = np.concatenate([o[4] for o in out])
    best = np.array([o[5] for o in out])
    return ll, post, filt, xi, paths, best


CASES = [
    (1, [3, 1]),
    (2, [6, 1, 4, 2]),
    (3, [5, 3, 1, 6]),
    (3, [6]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("K,lengths", CASES)
@pytest.mark.parametrize("zero_trans", [False, True])
def test_forward_backward_matches_enumeration(backend, K, lengths, zero_trans):
    rng = np.random.default_rng(K * 100 + sum(lengths) + zero_trans)
    log_b, log_start, log_trans = _random_hmm(rng, K, sum(lengths), zero_trans)
    ll, post, filt, xi, paths, best = _oracle(log_b, log_start, log_trans, lengths)

    res = forward_backward(log_b, log_start, log_trans, lengths, filtered=True, backend=backend)
    np.testing.assert_allclose(res.log_likelihood, ll, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.posteriors, post, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.filtered, filt, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.expected_transitions, xi, rtol=0, atol=1e-10)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    np.testing.assert_allclose(res.expected_start, post[starts].sum(0), atol=1e-10)
    np.testing.assert_allclose(res.posteriors.sum(1), 1.0, atol=1e-12)

    v_paths, v_logp = viterbi(log_b, log_start, log_trans, lengths, backend=backend)
    np.testing.assert_array_equal(v_paths, paths)
    np.testing.assert_allclose(v_logp, best, atol=1e-10)
    assert v_paths.dtype == np.int64

    np.testing.assert_allclose(
        log_likelihood(log_b, log_start, log_trans, lengths, backend=backend), ll, atol=1e-10
    )
    np.testing.assert_allclose(
        filtered_posteriors(log_b, log_start, log_trans, lengths, backend=backend), filt, atol=1e-10
    )


def test_single_sequence_default_lengths():
    rng = np.random.default_rng(3)
    log_b, log_start, log_trans = _random_hmm(rng, 2, 5)
    ll = _oracle(log_b, log_start, log_trans, [5])[0]
    np.testing.assert_allclose(forward_backward(log_b, log_start, log_trans).log_likelihood, ll)


def test_scaled_kernel_falls_back_to_log_space_on_underflow():
    """State 1 is unreachable (start and transitions into it are 0) while the only
    reachable state 0 has an emission e^-2000 below it: the scaled recursion's
    normaliser underflows to exactly 0."""
    with np.errstate(divide="ignore"):
        log_start = np.log([1.0, 0.0])
        log_trans = np.log(np.array([[1.0, 0.0], [0.5, 0.5]]))
    log_b = np.array([[0.0, -5.0], [-2000.0, 0.0], [-1.0, -3.0]])
    ll, post, filt, xi, paths, best = _oracle(log_b, log_start, log_trans, [3])
    assert ll < -1000
    # The scaled kernel alone reports the failure ...
    out = [np.empty((3, 2)), np.empty((3, 2)), np.zeros((1, 2, 2)), np.empty(1), np.zeros(1, np.int64)]
    nk.forward_backward_scaled(
        log_b, log_start, log_trans, np.array([0, 3]), *out, np.empty((3, 2)), np.empty(3)
    )
    assert out[4][0] == 1
    # ... and the public function redoes the sequence in log space.
    res = forward_backward(log_b, log_start, log_trans, [3], filtered=True, backend="numba")
    np.testing.assert_allclose(res.log_likelihood, ll, atol=1e-10)
    np.testing.assert_allclose(res.posteriors, post, atol=1e-10)
    np.testing.assert_allclose(res.filtered, filt, atol=1e-10)
    np.testing.assert_allclose(res.expected_transitions, xi, atol=1e-10)
    assert np.all(np.isfinite(res.posteriors))


def test_torch_input_returns_torch_and_matches_numba():
    rng = np.random.default_rng(5)
    lengths = [7, 3, 12]
    log_b, log_start, log_trans = _random_hmm(rng, 4, sum(lengths))
    ref = forward_backward(log_b, log_start, log_trans, lengths, filtered=True, backend="numba")
    for backend in ("auto", "torch"):
        res = forward_backward(
            torch.from_numpy(log_b), torch.from_numpy(log_start), torch.from_numpy(log_trans),
            torch.tensor(lengths), filtered=True, backend=backend,
        )
        assert isinstance(res.posteriors, torch.Tensor) and res.posteriors.dtype == torch.float64
        for name in ("log_likelihood", "posteriors", "filtered", "expected_transitions", "expected_start"):
            np.testing.assert_allclose(getattr(res, name).numpy(), getattr(ref, name), atol=1e-10)


def test_autograd_gradients_are_posteriors_and_expected_counts():
    rng = np.random.default_rng(11)
    lengths = [4, 6, 1]
    log_b, log_start, log_trans = _random_hmm(rng, 3, sum(lengths))
    tb, ts, tt = (torch.tensor(a, requires_grad=True) for a in (log_b, log_start, log_trans))
    res = forward_backward(tb, ts, tt, lengths, backend="torch")
    res.log_likelihood.sum().backward()
    np.testing.assert_allclose(tb.grad.numpy(), res.posteriors.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(tt.grad.numpy(), res.expected_transitions.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(ts.grad.numpy(), res.expected_start.detach().numpy(), atol=1e-10)


def test_sample_paths_ffbs_distribution_and_backend_agreement():
    rng = np.random.default_rng(2)
    K, T = 2, 4
    log_b, log_start, log_trans = _random_hmm(rng, K, T)
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    joint = log_start[paths[:, 0]] + log_b[0, paths[:, 0]]
    for t in range(1, T):
        joint += log_trans[paths[:, t - 1], paths[:, t]] + log_b[t, paths[:, t]]
    exact = np.exp(joint - logsumexp(joint))
    n_draws = 4000
    tiled = np.tile(log_b, (n_draws, 1))
    lengths = np.full(n_draws, T)
    draws = sample_paths(tiled, log_start, log_trans, lengths, random_state=0, backend="numba")
    codes = draws.reshape(n_draws, T) @ (K ** np.arange(T - 1, -1, -1))
    freq = np.bincount(codes, minlength=K**T) / n_draws
    # Multinomial standard errors: every cell within 4.5 SE of the exact path probability.
    se = np.sqrt(exact * (1 - exact) / n_draws) + 1e-12
    assert np.all(np.abs(freq - exact) <= 4.5 * se + 1e-3)
    draws_t = sample_paths(tiled, log_start, log_trans, lengths, random_state=0, backend="torch")
    np.testing.assert_array_equal(draws, draws_t)
    assert draws.dtype == np.int64


def test_sample_paths_respects_structural_zeros():
    rng = np.random.default_rng(8)
    K = 3
    log_b = rng.normal(size=(40, K))
    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log([1.0, 0.0, 0.0]), np.log(trans)
    for backend in BACKENDS:
        draws = sample_paths(log_b, log_start, log_trans, [10, 20, 10], 1, backend=backend)
        for seq in np.split(draws, [10, 30]):
            assert seq[0] == 0 and np.all(np.diff(seq) >= 0) and np.all(np.diff(seq) <= 1)


@pytest.mark.parametrize(
    "lengths,match",
    [([3, 3], "sum to 6 but X has 5 rows"), ([5, 0], "must be positive"), ([[5]], "1-D"),
     ([2.5, 2.5], "integers")],
)
def test_bad_lengths_raise(lengths, match):
    log_b = np.zeros((5, 2))
    with pytest.raises(ValueError, match=match):
        forward_backward(log_b, np.log([0.5, 0.5]), np.log(np.full((2, 2), 0.5)), lengths)


def test_bad_shapes_and_backend_raise():
    log_b = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"log_trans must have shape \(2, 2\)"):
        viterbi(log_b, np.log([0.5, 0.5]), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"log_start must have shape \(2,\)"):
        viterbi(log_b, np.zeros(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="backend must be one of"):
        forward_backward(log_b, np.log([0.5, 0.5]), np.zeros((2, 2)), backend="cuda")


def test_numba_results_do_not_depend_on_the_thread_count():
    """Parallel kernels keep per-sequence / per-block parts and add them in a fixed order."""
    import numba

    from bayes_trainmap.inference.emissions import QuadraticFeatures

    rng = np.random.default_rng(11)
    lengths = [300, 7, 1200, 45, 2600]
    log_b, log_start, log_trans = _random_hmm(rng, 5, sum(lengths))
    X = rng.normal(size=(sum(lengths), 4))
    design = QuadraticFeatures(X, "full")
    means, covars = rng.normal(size=(5, 4)), np.stack([np.eye(4) * (1 + k) for k in range(5)])
    before = numba.get_num_threads()
    outputs = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            fb = forward_backward(log_b, log_start, log_trans, lengths, backend="numba")
            outputs.append((fb.log_likelihood, fb.posteriors, fb.expected_transitions,
                            design.log_likelihood(means, covars), *design.weighted_moments(fb.posteriors)))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(outputs[0], outputs[-1]):
        np.testing.assert_array_equal(a, b)
