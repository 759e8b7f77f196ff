"""SVI against Pyro's NUTS on a tiny problem, the same model and priors.

The data come from a left-to-right 2-state HMM (its second state is never left), so
the maximum-likelihood fit has an exact zero transition: the case in which SVI used to
collapse (its 90% interval was [0, 0] where NUTS gives [0.0002, 0.0096]; without
``off_the_boundary`` this test fails on that entry's posterior SD).
"""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC, NUTS

from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.bayes_fit import fit_svi
from bayes_trainmap.inference.bayes_model import HMMPrior, hmm_model
from bayes_trainmap.inference.params import HMMParams


@pytest.mark.slow
def test_svi_matches_nuts_including_a_small_transition_probability():
    truth = HMMParams(
        start_prob=np.array([1.0, 0.0]),
        trans_mat=np.array([[0.96, 0.04], [0.0, 1.0]]),
        means=np.array([[0.0], [2.5]]),
        covars=np.array([[1.0], [1.0]]),
        covariance_type="diag",
        feature_names=["x"],
    )
    rng = np.random.default_rng(0)
    sampler = GaussianHMM.from_params(truth)
    Z = np.concatenate([sampler.sample(80, random_state=int(rng.integers(1e6)))[0] for _ in range(6)])
    lengths = np.full(6, 80)
    mle = GaussianHMM(2, "diag", n_restarts=3, random_state=0).fit(Z, lengths).params_
    small = np.unravel_index(np.argmin(mle.trans_mat), (2, 2))
    assert mle.trans_mat[small] < 1e-6  # the case under test: an exact zero in the MLE

    svi = fit_svi(Z, lengths, mle, steps=1500, progress=False, seed=0).sample_sites(3000, seed=1)
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(hmm_model, max_tree_depth=6), num_samples=400, warmup_steps=300, disable_progbar=True)
    mcmc.run(torch.tensor(Z), torch.tensor(lengths), 2, "diag", HMMPrior())
    nuts = {k: v.numpy() for k, v in mcmc.get_samples().items()}

    for name in ("means", "scales", "trans_mat"):
        s_mean, s_sd = svi[name].mean(0), svi[name].std(0)
        n_mean, n_sd = nuts[name].mean(0), nuts[name].std(0)
        free = n_sd > 0
        # Posterior SDs within 20%; posterior means within 20% of the larger of the NUTS
        # mean's size and its SD (means near 0 have no relative scale of their own).
        np.testing.assert_array_less(np.abs(s_sd - n_sd)[free], 0.2 * n_sd[free])
        np.testing.assert_array_less(np.abs(s_mean - n_mean)[free], 0.2 * np.maximum(np.abs(n_mean), n_sd)[free])
    # The small transition probability itself: a posterior below 0.05, not collapsed to 0.
    assert nuts["trans_mat"][(slice(None), *small)].mean() < 0.05
    assert np.quantile(svi["trans_mat"][(slice(None), *small)], 0.05) > 1e-5
