"""MAP and SVI fits: MAP with flat priors is the MLE; fits are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.bayes_fit import elbo_converged, fit_map, fit_svi
from bayes_trainmap.inference.bayes_model import HMMPrior


def _score(params, planted):
    return GaussianHMM.from_params(params).score(planted.Z, planted.lengths)


def test_flat_map_reaches_the_mle_from_the_same_start(planted):
    mle = planted.mle()
    start = planted.mle_start()  # EM's starting point
    map_fit = fit_map(planted.Z, planted.lengths, start, prior=HMMPrior.flat(), progress=False)
    mle_ll, map_ll = mle.log_likelihood_, _score(map_fit.params, planted)
    assert abs(map_ll - mle_ll) <= 1e-3 * abs(mle_ll)
    # ... and MAP started at the MLE does not move away from it.
    at_mle = fit_map(planted.Z, planted.lengths, mle.params_, prior=HMMPrior.flat(), progress=False)
    assert _score(at_mle.params, planted) >= mle_ll - 1e-6 * abs(mle_ll)


def test_default_prior_map_stays_close_on_well_determined_data(planted):
    mle = planted.mle()
    map_fit = fit_map(planted.Z, planted.lengths, mle.params_, progress=False)
    assert map_fit.converged
    assert abs(_score(map_fit.params, planted) - mle.log_likelihood_) <= 1e-2 * abs(mle.log_likelihood_)
    np.testing.assert_allclose(map_fit.params.means, mle.params_.means, atol=0.1)
    # The log joint never decreases along L-BFGS-B's accepted iterates' best value.
    assert map_fit.elbo_history.max() == pytest.approx(map_fit.elbo_history[-1], rel=1e-9)


def test_svi_is_reproducible_and_samples_valid_parameters(planted):
    kwargs = {"steps": 30, "window": 10, "map_steps": 10, "progress": False, "guide": "normal", "seed": 3}
    first = fit_svi(planted.Z, planted.lengths, planted.truth, **kwargs)
    second = fit_svi(planted.Z, planted.lengths, planted.truth, **kwargs)
    np.testing.assert_array_equal(first.elbo_history, second.elbo_history)
    draws = first.sample_params(5, seed=1)
    again = first.sample_params(5, seed=1)
    assert len(draws) == 5
    for a, b in zip(draws, again):
        assert a.allclose(b)
        a.validate()
        assert a.n_states == planted.truth.n_states
    assert not draws[0].allclose(draws[1])


def test_map_fit_has_no_posterior_and_bad_options_are_rejected(planted):
    fit = fit_map(planted.Z, planted.lengths, planted.truth, steps=3, progress=False)
    with pytest.raises(ValueError, match="no posterior"):
        fit.sample_params(2)
    with pytest.raises(ValueError, match="guide must be one of"):
        fit_svi(planted.Z, planted.lengths, planted.truth, guide="flows")
    with pytest.raises(ValueError, match="lengths must be positive"):
        fit_map(planted.Z, planted.lengths[:-1], planted.truth)


def test_tail_average_keeps_the_mean_of_the_last_complete_window():
    import torch

    from bayes_trainmap.inference.bayes_fit import _TailAverage

    module = torch.nn.Linear(2, 1)
    tail = _TailAverage(window=3)
    tail.apply(module)  # before a full window: nothing to apply
    iterates = [float(v) for v in range(1, 9)]  # windows (1, 2, 3), (4, 5, 6); 7, 8 incomplete
    for value in iterates:
        with torch.no_grad():
            module.weight.fill_(value)
            module.bias.fill_(-value)
        tail.add(module)
    tail.apply(module)
    assert torch.all(module.weight == 5.0) and torch.all(module.bias == -5.0)


def test_elbo_trend_test_stops_on_a_flat_elbo_and_not_on_a_rising_or_noisy_one():
    rng = np.random.default_rng(0)
    window, tol = 300, 1e-3  # tolerance 5 nats per window at |ELBO| = 5000
    steps = np.arange(window)
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0.0, 3.0, window)
        assert elbo_converged(-5000.0 + noise, window, tol)
        # Rising by 30 nats per window: a clear trend, above the tolerance.
        assert not elbo_converged(-5000.0 + 0.1 * steps + noise, window, tol)
        # Flat but so noisy that a change of 5 nats per window cannot be ruled out.
        assert not elbo_converged(-5000.0 + 20 * noise, window, tol)
    assert not elbo_converged(rng.normal(size=window - 1), window, tol)  # window not yet filled


def test_svi_stops_before_its_step_limit_on_a_converged_toy_problem(planted):
    fit = fit_svi(planted.Z, planted.lengths, planted.mle().params_, steps=1500, window=100, tol=1e-3, progress=False, seed=0)
    assert fit.converged and fit.n_steps < 1500
    assert fit.settings["steps"] == 1500 and fit.settings["window"] == 100 and fit.settings["threads"] >= 1
    # The stop was earned: the ELBO's last window is flat within the tolerance.
    assert elbo_converged(fit.elbo_history, fit.settings["window"], fit.settings["tol"])


def test_svi_keeps_going_while_the_elbo_still_rises(planted):
    import dataclasses

    far = dataclasses.replace(planted.truth, means=planted.truth.means + 1.5)
    fit = fit_svi(
        planted.Z, planted.lengths, far, steps=200, window=50, lr=1e-3, lr_decay=1.0, map_steps=0,
        guide="normal", progress=False, seed=0,
    )
    assert not fit.converged and fit.n_steps == 200
    assert fit.elbo_history[-50:].mean() > fit.elbo_history[:50].mean()


def test_thread_budget_is_set_for_the_fit_and_restored():
    import numba
    import torch

    from bayes_trainmap.inference.threads import thread_budget

    before = torch.get_num_threads(), numba.get_num_threads()
    with thread_budget(1) as n:
        assert n == 1 and torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    with thread_budget(10_000) as n:  # capped at numba's configured maximum
        assert n == numba.config.NUMBA_NUM_THREADS
    assert (torch.get_num_threads(), numba.get_num_threads()) == before


def test_lbfgs_stops_converged_once_the_parameters_settle(planted):
    """The parameter test ends L-BFGS where the log joint only creeps (tol=1e-15 never
    fires); what it returns equals the point that running on reaches."""
    kwargs = {"em_steps": 0, "steps": 500, "tol": 1e-15, "progress": False}
    settled = fit_map(planted.Z, planted.lengths, planted.mle_start(), param_tol=1e-4, **kwargs)
    running = fit_map(planted.Z, planted.lengths, planted.mle_start(), param_tol=0.0, **kwargs)
    assert settled.converged and settled.settings["param_tol"] == 1e-4
    assert len(settled.elbo_history) < len(running.elbo_history)
    assert settled.elbo_history[-1] == pytest.approx(running.elbo_history[-1], abs=1e-3)
    for name in ("start_prob", "trans_mat", "means", "covars"):
        np.testing.assert_allclose(getattr(settled.params, name), getattr(running.params, name), atol=1e-4)
