"""Parallel-in-time (associative scan) forward-backward and Viterbi.

Oracles: the sequential numba and torch kernels, brute-force enumeration of all K^T
paths, autograd (Fisher's identity), numpy logsumexp for the semiring product, and
``cumsum`` for the generic scan. The CUDA section repeats the equalities on the GPU
and runs EM and ``fit --device cuda``; it is skipped where CUDA is absent.
"""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from bayes_trainmap.inference import _scan_kernels as sk
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.bayes_likelihood import hmm_log_likelihood
from bayes_trainmap.inference.forward_backward import (
    SCAN_MIN_LENGTH,
    _pick_method,
    filtered_posteriors,
    forward_backward,
    log_likelihood,
    viterbi,
)

FIELDS = ("log_likelihood", "posteriors", "filtered", "expected_transitions", "expected_start")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def _hmm(rng, K, lengths, zeros=False, separated=False):
    """Log potentials; ``zeros``: structural zeros in start and transitions;
    ``separated``: emissions that single out one state per step by >= 6 nats (no Viterbi ties)."""
    n = int(np.sum(lengths))
    if separated:
        truth = rng.integers(K, size=n)
        log_b = rng.normal(scale=0.5, size=(n, K)) - 8.0
        log_b[np.arange(n), truth] = rng.normal(scale=0.5, size=n)
    else:
        log_b = rng.normal(scale=2.0, size=(n, K))
    start = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K), size=K)
    if zeros and K > 1:
        start[K - 1] = 0.0
        trans[0, 1] = trans[K - 1, 0] = 0.0
        start /= start.sum()
        trans /= trans.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        return log_b, np.log(start), np.log(trans)


def _as_np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _assert_fb_equal(a, b, tol=1e-10):
    for field in FIELDS:
        np.testing.assert_allclose(_as_np(getattr(a, field)), _as_np(getattr(b, field)),
                                   rtol=tol, atol=tol, err_msg=field)


def _enumerate(log_b, log_start, log_trans):
    """One sequence by brute force over all K^T paths: ll, posteriors, filtered, xi, best path, its log-prob."""
    T, K = log_b.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    prefix = [log_start[paths[:, 0]] + log_b[0, paths[:, 0]]]
    for t in range(1, T):
        prefix.append(prefix[-1] + log_trans[paths[:, t - 1], paths[:, t]] + log_b[t, paths[:, t]])
    joint = prefix[-1]
    ll = logsumexp(joint)
    w = np.exp(joint - ll)
    post, filt, xi = np.zeros((T, K)), np.zeros((T, K)), np.zeros((K, K))
    for t in range(T):
        np.add.at(post[t], paths[:, t], w)
        if t:
            np.add.at(xi, (paths[:, t - 1], paths[:, t]), w)
        # every prefix appears K^(T-t-1) times among the full paths: the count cancels
        wt = np.exp(prefix[t] - logsumexp(prefix[t]))
        np.add.at(filt[t], paths[:, t], wt)
    best = int(np.argmax(joint))
    return ll, post, filt, xi, paths[best], joint[best]


# ------------------------------------------------------------------ building blocks
def test_log_matmul_matches_logsumexp_including_underflow_and_zeros():
    rng = np.random.default_rng(0)
    a = rng.normal(scale=3.0, size=(5, 4, 3))
    b = rng.normal(scale=3.0, size=(5, 3, 4))
    # batch 1: the largest terms of a row and of a column sit at different m, 800 nats apart
    a[1, 0] = [0.0, -800.0, -np.inf]
    b[1, :, 0] = [-800.0, 0.0, -np.inf]
    # batch 2: a structural -inf result (no m with both factors finite)
    a[2, 1] = [-np.inf, 0.0, -np.inf]
    b[2, :, 2] = [0.0, -np.inf, 5.0]
    expected = logsumexp(a[:, :, :, None] + b[:, None, :, :], axis=2)
    got = sk.log_matmul(torch.tensor(a), torch.tensor(b)).numpy()
    assert np.isclose(got[1, 0, 0], np.log(2.0) - 800.0, rtol=1e-14, atol=0)
    assert got[2, 1, 2] == -np.inf
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-12)


def test_maxplus_matmul_matches_broadcast_max():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 5, 2))
    b[0, 2] = -np.inf
    expected = np.max(a[:, :, :, None] + b[:, None, :, :], axis=2)
    np.testing.assert_array_equal(sk.maxplus_matmul(torch.tensor(a), torch.tensor(b)).numpy(), expected)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 7, 8, 9, 16, 33])
@pytest.mark.parametrize("reverse", [False, True])
def test_associative_scan_is_a_prefix_scan(length, reverse):
    x = torch.arange(1, 2 * length + 1, dtype=torch.int64).reshape(2, length) ** 2
    got = sk.associative_scan(torch.add, x, reverse=reverse)
    expected = x.flip(1).cumsum(1).flip(1) if reverse else x.cumsum(1)
    assert torch.equal(got, expected)
    # a non-commutative operator keeps the order: compositions of index maps
    rng = np.random.default_rng(length)
    maps = torch.tensor(rng.integers(3, size=(1, length, 3)))
    got = sk.associative_scan(sk._compose, maps, reverse=True)
    for t in range(length):
        composed = torch.arange(3)
        for u in range(length - 1, t - 1, -1):  # maps[t] ∘ ... ∘ maps[L-1]: the last applied first
            composed = maps[0, u][composed]
        assert torch.equal(got[0, t], composed)


# ------------------------------------------------------ equality with the sequential kernels
@pytest.mark.parametrize("K", [1, 3, 5])
@pytest.mark.parametrize("zeros", [False, True])
def test_scan_equals_sequential_numba_and_torch(K, zeros):
    rng = np.random.default_rng(10 * K + zeros)
    lengths = np.array([1, 9, 40, 2, 1, 23])
    log_b, ls, lt = _hmm(rng, K, lengths, zeros=zeros)
    numba = forward_backward(log_b, ls, lt, lengths, filtered=True, backend="numba")
    tb, tls, tlt = map(torch.tensor, (log_b, ls, lt))
    seq = forward_backward(tb, tls, tlt, lengths, filtered=True, backend="torch", method="sequential")
    scan = forward_backward(tb, tls, tlt, lengths, filtered=True, method="scan")
    assert isinstance(scan.posteriors, torch.Tensor) and scan.posteriors.shape == (lengths.sum(), K)
    _assert_fb_equal(scan, numba)
    _assert_fb_equal(scan, seq)
    np.testing.assert_allclose(log_likelihood(tb, tls, tlt, lengths, method="scan").numpy(),
                               numba.log_likelihood, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(filtered_posteriors(log_b, ls, lt, lengths, method="scan"),
                               numba.filtered, rtol=1e-10, atol=1e-10)


def test_scan_survives_emissions_that_underflow_a_shifted_product():
    """Structural zeros against emissions ~900 nats apart force the exact fallback."""
    rng = np.random.default_rng(3)
    lengths = np.array([12, 5])
    log_b, ls, lt = _hmm(rng, 3, lengths, zeros=True)
    log_b[[3, 14], 0] += 900.0  # state 0 explains these steps far better than any other
    ref = forward_backward(log_b, ls, lt, lengths, filtered=True, backend="numba")
    got = forward_backward(log_b, ls, lt, lengths, filtered=True, method="scan")
    assert np.all(np.isfinite(got.log_likelihood))
    _assert_fb_equal(got, ref)


@pytest.mark.parametrize("K,T", [(1, 4), (2, 1), (2, 6), (3, 5)])
def test_scan_equals_enumeration(K, T):
    rng = np.random.default_rng(100 * K + T)
    lengths = np.array([T, max(T - 2, 1), 1])
    log_b, ls, lt = _hmm(rng, K, lengths, zeros=True, separated=True)
    fb = forward_backward(log_b, ls, lt, lengths, filtered=True, method="scan")
    paths, log_prob = viterbi(log_b, ls, lt, lengths, method="scan")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    start, xi = np.zeros(K), np.zeros((K, K))
    for i, (a, b) in enumerate(itertools.pairwise(offsets)):
        ll, post, filt, xi_i, best, best_lp = _enumerate(log_b[a:b], ls, lt)
        assert fb.log_likelihood[i] == pytest.approx(ll, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(fb.posteriors[a:b], post, atol=1e-12)
        np.testing.assert_allclose(fb.filtered[a:b], filt, atol=1e-12)
        np.testing.assert_array_equal(paths[a:b], best)
        assert log_prob[i] == pytest.approx(best_lp, rel=1e-12, abs=1e-12)
        start += post[0]
        xi += xi_i
    np.testing.assert_allclose(fb.expected_transitions, xi, atol=1e-12)
    np.testing.assert_allclose(fb.expected_start, start, atol=1e-12)


@pytest.mark.parametrize("K", [1, 2, 4])
@pytest.mark.parametrize("zeros", [False, True])
def test_viterbi_scan_equals_sequential_kernels(K, zeros):
    rng = np.random.default_rng(7 * K + zeros)
    lengths = np.array([1, 30, 17, 1, 64])
    log_b, ls, lt = _hmm(rng, K, lengths, zeros=zeros, separated=True)
    ref_paths, ref_lp = viterbi(log_b, ls, lt, lengths, backend="numba")
    seq_paths, seq_lp = viterbi(torch.tensor(log_b), torch.tensor(ls), torch.tensor(lt), lengths,
                                backend="torch", method="sequential")
    paths, lp = viterbi(log_b, ls, lt, lengths, method="scan")
    np.testing.assert_array_equal(paths, ref_paths)
    np.testing.assert_array_equal(paths, seq_paths.numpy())
    np.testing.assert_allclose(lp, ref_lp, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(lp, seq_lp.numpy(), rtol=1e-12, atol=1e-10)


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("zeros", [False, True])
def test_autograd_of_the_scanned_likelihood_gives_posteriors(zeros):
    """Fisher's identity: d sum(ll) / d log potentials = expected sufficient statistics."""
    rng = np.random.default_rng(5 + zeros)
    lengths = np.array([1, 11, 6, 20])
    log_b, ls, lt = _hmm(rng, 3, lengths, zeros=zeros)
    ref = forward_backward(log_b, ls, lt, lengths, backend="numba")
    tb, tls, tlt = (torch.tensor(v, requires_grad=True) for v in (log_b, ls, lt))
    log_likelihood(tb, tls, tlt, lengths, method="scan").sum().backward()
    for grad, expected in ((tb.grad, ref.posteriors), (tls.grad, ref.expected_start),
                           (tlt.grad, ref.expected_transitions)):
        assert torch.all(torch.isfinite(grad))
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_bayesian_likelihood_with_the_scan_equals_the_numba_path():
    rng = np.random.default_rng(8)
    lengths = torch.tensor([7, 1, 15])
    log_b, ls, lt = _hmm(rng, 3, lengths.numpy(), zeros=True)
    values, grads = [], []
    for method in ("auto", "scan"):
        tensors = [torch.tensor(v, requires_grad=True) for v in (log_b, ls, lt)]
        value = hmm_log_likelihood(*tensors, lengths, method=method)
        value.backward()
        values.append(float(value.detach()))
        grads.append([t.grad.numpy() for t in tensors])
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    for g_scan, g_ref in zip(grads[1], grads[0]):
        np.testing.assert_allclose(g_scan, g_ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- the switch
def test_auto_method_picks_the_scan_only_for_long_runs_on_cuda(monkeypatch):
    import bayes_trainmap.inference.forward_backward as fb

    def on(kind):
        return SimpleNamespace(device=SimpleNamespace(type=kind), shape=(10, 4))

    long, short = np.array([3, SCAN_MIN_LENGTH]), np.array([SCAN_MIN_LENGTH - 1, 5])
    fits = {"value": True}
    monkeypatch.setattr(fb, "_scan_fits", lambda le, lengths: fits["value"])
    assert _pick_method("auto", "torch", on("cuda"), long) == "scan"
    fits["value"] = False  # too large for the device's free memory
    assert _pick_method("auto", "torch", on("cuda"), long) == "sequential"
    assert _pick_method("scan", "torch", on("cuda"), long) == "scan"  # an explicit choice stands
    fits["value"] = True
    assert _pick_method("auto", "torch", on("cuda"), short) == "sequential"
    assert _pick_method("auto", "torch", on("cpu"), long) == "sequential"
    assert _pick_method("sequential", "torch", on("cuda"), long) == "sequential"
    assert _pick_method("auto", "numba", on("cpu"), long) == "sequential"
    assert sk.scan_bytes(40, 10_000, 16) == sk.SCAN_PEAK_ARRAYS * 8 * 40 * 10_000 * 256


def test_method_errors_name_the_bad_value():
    log_b, ls, lt = _hmm(np.random.default_rng(0), 2, [4])
    with pytest.raises(ValueError, match="'parallel'"):
        forward_backward(log_b, ls, lt, method="parallel")
    with pytest.raises(ValueError, match="backend='numba'"):
        viterbi(log_b, ls, lt, backend="numba", method="scan")
    with pytest.raises(ValueError, match="fb_method"):
        GaussianHMM(2, fb_method="fast").fit(np.random.default_rng(0).normal(size=(20, 2)))


def _planted_runs(K=3, d=2, lengths=(40, 1, 25, 60), seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(K, d))
    X = np.concatenate([means[rng.integers(K, size=n)] + rng.normal(size=(n, d)) for n in lengths])
    return X, np.array(lengths)


def test_em_with_the_scan_equals_em_with_numba():
    X, lengths = _planted_runs()
    kwargs = {"n_states": 3, "n_iter": 8, "tol": -np.inf, "random_state": 0}
    ref = GaussianHMM(**kwargs).fit(X, lengths)
    # numpy design + torch scan; and the all-torch path a CUDA device takes, on the CPU
    for backend in ("auto", "torch"):
        scan = GaussianHMM(**kwargs, backend=backend, fb_method="scan").fit(X, lengths)
        np.testing.assert_allclose(scan.history_, ref.history_, rtol=1e-10)
        np.testing.assert_allclose(scan.params_.means, ref.params_.means, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(scan.params_.trans_mat, ref.params_.trans_mat, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(scan.predict(X, lengths), ref.predict(X, lengths))
        np.testing.assert_allclose(scan.predict_proba(X, lengths), ref.predict_proba(X, lengths),
                                   atol=1e-10)


# ----------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("zeros", [False, True])
def test_cuda_scan_and_sequential_equal_the_cpu_kernels(zeros):
    rng = np.random.default_rng(20 + zeros)
    lengths = np.array([1, 300, 57, 2])
    log_b, ls, lt = _hmm(rng, 4, lengths, zeros=zeros, separated=True)
    ref = forward_backward(log_b, ls, lt, lengths, filtered=True, backend="numba")
    ref_paths, ref_lp = viterbi(log_b, ls, lt, lengths, backend="numba")
    tb, tls, tlt = (torch.tensor(v, device="cuda") for v in (log_b, ls, lt))
    assert _pick_method("auto", "torch", tb, lengths) == "scan"  # T_max 300, a few MB: fits
    for method in ("sequential", "scan", "auto"):
        fb = forward_backward(tb, tls, tlt, lengths, filtered=True, method=method)
        assert fb.posteriors.device.type == "cuda"
        _assert_fb_equal(fb, ref)
        paths, lp = viterbi(tb, tls, tlt, lengths, method=method)
        np.testing.assert_array_equal(paths.cpu().numpy(), ref_paths)
        np.testing.assert_allclose(lp.cpu().numpy(), ref_lp, rtol=1e-12, atol=1e-10)
    tb.requires_grad_(True)
    log_likelihood(tb, tls, tlt, lengths, method="scan").sum().backward()
    np.testing.assert_allclose(tb.grad.cpu().numpy(), ref.posteriors, rtol=1e-10, atol=1e-10)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("fb_method", ["sequential", "scan"])
def test_cuda_em_equals_cpu_em(fb_method):
    X, lengths = _planted_runs(lengths=(300, 1, 120, 280))
    kwargs = {"n_states": 3, "n_iter": 6, "tol": -np.inf, "random_state": 0}
    ref = GaussianHMM(**kwargs).fit(X, lengths)
    gpu = GaussianHMM(**kwargs, device="cuda", fb_method=fb_method).fit(X, lengths)
    np.testing.assert_allclose(gpu.history_, ref.history_, rtol=1e-10)
    np.testing.assert_allclose(gpu.params_.means, ref.params_.means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gpu.params_.covars, ref.params_.covars, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(gpu.predict(X, lengths), ref.predict(X, lengths))


@pytest.mark.cuda
@CUDA
def test_cuda_fit_through_the_cli(planted_dir, tmp_path, capsys):
    from bayes_trainmap import cli

    fits = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        argv = ["fit", "--data", planted_dir, "--states", "1-3", "--restarts", "1",
                "--device", device, "--out", str(out), "--no-report", "--quiet"]
        assert cli.main(argv) == 0, capsys.readouterr().err
        fits[device] = json.loads((out / "model.json").read_text())
    assert len(fits["cuda"]["means"]) == len(fits["cpu"]["means"]) == 3  # the planted K
    np.testing.assert_allclose(np.array(fits["cuda"]["means"]), np.array(fits["cpu"]["means"]),
                               rtol=1e-6, atol=1e-8)
