"""Gaussian emission log-likelihoods against scipy and hmmlearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hmmlearn.stats import log_multivariate_normal_density
from scipy.stats import multivariate_normal

from bayes_trainmap.inference.emissions import QuadraticFeatures, gaussian_log_likelihood


def _random_problem(rng, n=30, K=3, d=4, offset=0.0):
    X = rng.normal(size=(n, d)) + offset
    means = rng.normal(size=(K, d)) + offset
    A = rng.normal(size=(K, d, d))
    full = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    diag = rng.uniform(0.2, 3.0, size=(K, d))
    return X, means, full, diag


def test_full_matches_scipy():
    rng = np.random.default_rng(0)
    X, means, full, _ = _random_problem(rng)
    got = gaussian_log_likelihood(X, means, full, "full")
    want = np.stack([multivariate_normal(means[k], full[k]).logpdf(X) for k in range(3)], axis=1)
    assert got.shape == (30, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_diag_matches_scipy_and_hmmlearn():
    rng = np.random.default_rng(1)
    X, means, _, diag = _random_problem(rng)
    got = gaussian_log_likelihood(X, means, diag, "diag")
    want = np.stack([multivariate_normal(means[k], np.diag(diag[k])).logpdf(X) for k in range(3)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, log_multivariate_normal_density(X, means, diag, "diag"), rtol=1e-12)


def test_far_from_origin_keeps_precision():
    """Centring before whitening: data at 1e6 with unit spread loses no digits."""
    rng = np.random.default_rng(2)
    X, means, full, _ = _random_problem(rng, offset=1e6)
    got = gaussian_log_likelihood(X, means, full, "full")
    want = log_multivariate_normal_density(X, means, full, "full")
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_torch_matches_numpy_and_keeps_kind(covariance_type):
    rng = np.random.default_rng(3)
    X, means, full, diag = _random_problem(rng)
    covars = full if covariance_type == "full" else diag
    ref = gaussian_log_likelihood(X, means, covars, covariance_type)
    got = gaussian_log_likelihood(
        torch.from_numpy(X), torch.from_numpy(means), torch.from_numpy(covars), covariance_type
    )
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


def test_bad_inputs_raise():
    rng = np.random.default_rng(4)
    X, means, full, diag = _random_problem(rng)
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_log_likelihood(X, means, -full, "full")
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_log_likelihood(torch.from_numpy(X), means, -full, "full")
    with pytest.raises(ValueError, match="must be positive"):
        gaussian_log_likelihood(X, means, -diag, "diag")
    with pytest.raises(ValueError, match=r"covars must have shape \(3, 4\)"):
        gaussian_log_likelihood(X, means, full, "diag")
    with pytest.raises(ValueError, match=r"means must have shape \(K, 4\)"):
        gaussian_log_likelihood(X, means[:, :2], full, "full")
    with pytest.raises(ValueError, match="covariance_type must be"):
        gaussian_log_likelihood(X, means, full, "tied")


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_quadratic_features_match_direct_computation(covariance_type, kind):
    rng = np.random.default_rng(5)
    X, means, full, diag = _random_problem(rng, n=200, offset=50.0)
    covars = full if covariance_type == "full" else diag
    data = X if kind == "numpy" else torch.from_numpy(X)
    qf = QuadraticFeatures(data, covariance_type)
    got = qf.log_likelihood(means, covars)
    got = got.numpy() if kind == "torch" else got
    np.testing.assert_allclose(got, gaussian_log_likelihood(X, means, covars, covariance_type), rtol=1e-10)

    W = rng.dirichlet(np.ones(3), size=200)
    W[:, 2] = 0.0  # an all-zero column must give zero mass, not NaN
    mass, m, c = qf.weighted_moments(W if kind == "numpy" else torch.from_numpy(W))
    np.testing.assert_allclose(mass, W.sum(0), rtol=1e-12)
    for k in range(2):
        mk = W[:, k] @ X / W[:, k].sum()
        ck = (X - mk).T @ ((X - mk) * W[:, [k]]) / W[:, k].sum()
        np.testing.assert_allclose(m[k], mk, rtol=1e-12)
        want = ck if covariance_type == "full" else np.diag(ck)
        np.testing.assert_allclose(c[k], want, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(m)) and np.all(np.isfinite(c))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_chunked_features_give_the_kept_matrix_results_bit_for_bit(covariance_type):
    """Issue 13: a feature matrix over the memory limit is rebuilt in chunks, with identical results."""
    from bayes_trainmap.inference import emissions

    rng = np.random.default_rng(11)
    n = 3 * emissions._CHUNK_ROWS + 777  # a ragged last chunk
    X, means, full, diag = _random_problem(rng, n=n, offset=3.0)
    covars = full if covariance_type == "full" else diag
    kept = QuadraticFeatures(X, covariance_type)
    chunked = QuadraticFeatures(X, covariance_type, max_feature_bytes=0)
    assert kept.F is not None and chunked.F is None
    log_b = chunked.log_likelihood(means, covars)
    np.testing.assert_array_equal(log_b, kept.log_likelihood(means, covars))
    np.testing.assert_allclose(log_b, gaussian_log_likelihood(X, means, covars, covariance_type), rtol=1e-10)
    W = rng.dirichlet(np.ones(means.shape[0]), size=n)
    for got, want in zip(chunked.weighted_moments(W), kept.weighted_moments(W)):
        np.testing.assert_array_equal(got, want)
