"""The fast marginal likelihood against three oracles: Pyro enumeration, the engine's
forward algorithm and autograd through a plain torch forward recursion."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, infer_discrete

from _bayes_helpers import random_params
from bayes_trainmap.inference.bayes_likelihood import hmm_log_likelihood, pad_sequences, reference_log_likelihood
from bayes_trainmap.inference.bayes_model import (
    HMMPrior,
    emission_log_prob,
    enumerated_hmm_model,
    hmm_model,
    params_from_sites,
    sites_from_params,
)
from bayes_trainmap.inference.emissions import gaussian_log_likelihood
from bayes_trainmap.inference.forward_backward import forward_backward, viterbi

LENGTHS = [7, 3, 11, 1, 6]


def _data(params, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.5, size=(sum(LENGTHS), params.n_features))


def _empty_guide(*args, **kwargs):
    """No latent continuous sites: the ELBO is then the exact log-likelihood."""


@pytest.mark.parametrize("min_covar", [0.0, 5e-4])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fast_likelihood_equals_enumeration_and_engine(covariance_type, min_covar):
    params = random_params(3, 2, covariance_type, seed=4)
    Z = _data(params)
    prior = HMMPrior(min_covar=min_covar)
    # The sites describe the covariance above the model's floor, which adds it back.
    sites = sites_from_params(params, min_covar=min_covar)
    lengths = torch.tensor(LENGTHS)

    conditioned = poutine.condition(hmm_model, data=sites)
    fast = conditioned(torch.tensor(Z), lengths, 3, covariance_type, prior)

    Z_pad, mask = pad_sequences(torch.tensor(Z), LENGTHS)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        enumerated_hmm_model, _empty_guide, Z_pad, mask, 3, covariance_type, prior, sites
    )

    log_b = gaussian_log_likelihood(Z, params.means, params.covars, covariance_type)
    engine = forward_backward(
        log_b, np.log(params.start_prob), np.log(params.trans_mat), np.array(LENGTHS)
    ).log_likelihood.sum()

    assert float(fast) == pytest.approx(engine, abs=1e-8)
    assert -loss == pytest.approx(engine, abs=1e-8)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_covariance_floor_is_added_to_every_state_covariance(covariance_type):
    params = random_params(3, 3, covariance_type, seed=5)
    Z = _data(params)
    sites = sites_from_params(params)  # no floor: the sites are the covariances themselves
    floored = params_from_sites(sites, covariance_type, min_covar=0.2)
    shift = 0.2 * (np.eye(3) if covariance_type == "full" else np.ones(3))
    np.testing.assert_allclose(floored.covars, np.asarray(params.covars) + shift, atol=1e-12)
    ours = emission_log_prob(torch.tensor(Z), sites["means"], sites["scales"], sites.get("corr_chol"), 0.2)
    oracle = gaussian_log_likelihood(Z, params.means, floored.covars, covariance_type)
    np.testing.assert_allclose(ours.numpy(), oracle, atol=1e-10)
    # The inverse conversion is exact above the floor and stays in the model's support below it.
    back = params_from_sites(sites_from_params(floored, min_covar=0.2), covariance_type, min_covar=0.2)
    np.testing.assert_allclose(back.covars, floored.covars, atol=1e-10)
    tiny = params_from_sites(sites_from_params(params, min_covar=50.0), covariance_type, min_covar=50.0)
    assert np.all(np.isfinite(tiny.covars))
    with pytest.raises(ValueError, match="min_covar"):
        HMMPrior(min_covar=-1.0)


def test_site_round_trip_and_emission_density():
    params = random_params(3, 3, "full", seed=2)
    back = params_from_sites(sites_from_params(params), "full")
    np.testing.assert_allclose(back.covars, params.covars, atol=1e-12)
    np.testing.assert_allclose(back.trans_mat, params.trans_mat, atol=1e-12)
    Z = _data(params)
    sites = sites_from_params(params)
    ours = emission_log_prob(torch.tensor(Z), sites["means"], sites["scales"], sites["corr_chol"])
    np.testing.assert_allclose(
        ours.numpy(), gaussian_log_likelihood(Z, params.means, params.covars, "full"), atol=1e-10
    )


def test_fisher_gradients_equal_autograd_through_forward_recursion():
    torch.manual_seed(0)
    K = 4
    log_b = torch.randn(sum(LENGTHS), K, dtype=torch.float64, requires_grad=True)
    start_logits = torch.randn(K, dtype=torch.float64, requires_grad=True)
    trans_logits = torch.randn(K, K, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor(LENGTHS)
    inputs = (log_b, start_logits, trans_logits)

    def total(fn, normalise):
        ls, lt = start_logits, trans_logits
        if normalise:
            ls, lt = torch.log_softmax(ls, -1), torch.log_softmax(lt, -1)
        return fn(log_b, ls, lt, lengths).sum()

    for normalise in (True, False):  # log-probabilities and unnormalised potentials
        fast = total(hmm_log_likelihood, normalise)
        slow = total(reference_log_likelihood, normalise)
        assert fast.item() == pytest.approx(slow.item(), abs=1e-10)
        for g_fast, g_slow in zip(torch.autograd.grad(fast, inputs), torch.autograd.grad(slow, inputs)):
            np.testing.assert_allclose(g_fast.numpy(), g_slow.numpy(), atol=1e-10)


def test_model_gradient_matches_finite_differences():
    """End to end through the Pyro model: d log p / d means by central differences."""
    params = random_params(2, 2, "full", seed=5)
    Z = torch.tensor(_data(params))
    sites = sites_from_params(params)
    means = sites["means"].clone().requires_grad_(True)

    def loglik(m):
        data = dict(sites, means=m)
        return poutine.condition(hmm_model, data=data)(Z, torch.tensor(LENGTHS), 2, "full", HMMPrior())

    (grad,) = torch.autograd.grad(loglik(means), means)
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    for idx in np.ndindex(*means.shape):
        bump = torch.zeros_like(means)
        bump[idx] = eps
        numeric[idx] = (loglik(means.detach() + bump) - loglik(means.detach() - bump)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), numeric.numpy(), rtol=1e-5, atol=1e-6)


def test_infer_discrete_map_paths_equal_viterbi():
    params = random_params(3, 2, "full", seed=7)
    Z = _data(params, seed=3)
    Z_pad, mask = pad_sequences(torch.tensor(Z), LENGTHS)
    sites = sites_from_params(params)
    pyro.set_rng_seed(0)
    decoder = infer_discrete(enumerated_hmm_model, first_available_dim=-2, temperature=0)
    states = torch.stack(decoder(Z_pad, mask, 3, "full", None, sites), dim=1).numpy()
    ours = np.concatenate([states[i, :n] for i, n in enumerate(LENGTHS)])
    log_b = gaussian_log_likelihood(Z, params.means, params.covars, "full")
    expected, _ = viterbi(log_b, np.log(params.start_prob), np.log(params.trans_mat), np.array(LENGTHS))
    np.testing.assert_array_equal(ours, expected)


def test_likelihood_rejects_inconsistent_lengths():
    log_b = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="lengths sum to 4"):
        hmm_log_likelihood(log_b, torch.zeros(2), torch.zeros(2, 2), torch.tensor([4]))
