"""Appendix A closed form against autograd through a differentiable forward pass."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bayes_trainmap.analysis.importance import importance_at, posterior_gradient


def _random_model(rng, n_states, n_features, covariance_type):
    means = rng.normal(size=(n_states, n_features))
    if covariance_type == "full":
        a = rng.normal(size=(n_states, n_features, n_features))
        covars = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(n_features)
        full = covars
    else:
        covars = rng.uniform(0.3, 2.0, size=(n_states, n_features))
        full = np.stack([np.diag(c) for c in covars])
    start = rng.dirichlet(np.ones(n_states))
    trans = rng.dirichlet(np.ones(n_states), size=n_states)
    params = SimpleNamespace(
        means=means, covars=covars, covariance_type=covariance_type, full_covars=lambda: full
    )
    return params, start, trans, full


def _log_filtered_torch(Z, start, trans, means, full):
    """log p(s_t | z_1:t) for one sequence by the forward recursion, differentiable in Z."""
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=full)
    log_emission = dist.log_prob(Z[:, None, :])  # (T, K)
    log_alpha = torch.log(start) + log_emission[0]
    out = [log_alpha - torch.logsumexp(log_alpha, 0)]
    log_trans = torch.log(trans)
    for t in range(1, Z.shape[0]):
        log_alpha = torch.logsumexp(log_alpha[:, None] + log_trans, 0) + log_emission[t]
        out.append(log_alpha - torch.logsumexp(log_alpha, 0))
    return torch.stack(out)  # (T, K)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_autograd(covariance_type, seed):
    rng = np.random.default_rng(seed)
    n_states, n_features, T = 3 + seed % 2, 4, 6
    params, start, trans, full = _random_model(rng, n_states, n_features, covariance_type)
    Z = rng.normal(scale=1.5, size=(T, n_features))

    tZ = torch.tensor(Z, dtype=torch.float64)
    args = [torch.tensor(a, dtype=torch.float64) for a in (start, trans, params.means, full)]
    log_filtered = _log_filtered_torch(tZ, *args)
    jac = torch.autograd.functional.jacobian(lambda z: _log_filtered_torch(z, *args), tZ)  # (T,K,T,d)
    expected = torch.stack([jac[t, :, t, :] for t in range(T)]).numpy()  # (T, K, d)

    filtered = log_filtered.exp().detach().numpy()
    got = posterior_gradient(params, Z, filtered)
    assert got.shape == (T, n_states, n_features)
    np.testing.assert_allclose(got, expected, atol=1e-8, rtol=1e-8)

    # The absolute-importance helper picks the right state row, per checkpoint or shared.
    ks = rng.integers(0, n_states, size=T)
    np.testing.assert_allclose(importance_at(params, Z, filtered, ks), np.abs(expected[np.arange(T), ks]), atol=1e-8)
    np.testing.assert_allclose(importance_at(params, Z, filtered, 1), np.abs(expected[:, 1]), atol=1e-8)


def test_gradient_is_orthogonal_to_posterior_weights():
    # sum_k p(s_t=k|z) * d log p(s_t=k|z)/dz = d/dz sum_k p = 0: a property independent of the formula.
    rng = np.random.default_rng(5)
    params, *_ = _random_model(rng, 4, 3, "full")
    Z = rng.normal(size=(10, 3))
    filtered = rng.dirichlet(np.ones(4), size=10)
    grad = posterior_gradient(params, Z, filtered)
    np.testing.assert_allclose(np.einsum("nk,nki->ni", filtered, grad), 0.0, atol=1e-10)


def test_shape_errors_name_the_problem():
    rng = np.random.default_rng(0)
    params, *_ = _random_model(rng, 3, 4, "diag")
    with pytest.raises(ValueError, match="features"):
        posterior_gradient(params, np.zeros((5, 3)), np.full((5, 3), 1 / 3))
    with pytest.raises(ValueError, match="filtered"):
        posterior_gradient(params, np.zeros((5, 4)), np.full((5, 2), 0.5))
