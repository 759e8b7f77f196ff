"""Predictive intervals of a new set's regression coefficients, against simulation."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from bayes_trainmap.analysis.detours import convergence_regression
from bayes_trainmap.fitting.robustness import coefficient_predictive, predictive_draws


def test_without_standard_errors_it_is_the_bag_predictive():
    rng = np.random.default_rng(0)
    T = rng.normal(size=(6, 3))
    np.testing.assert_allclose(
        coefficient_predictive(T, np.zeros_like(T), np.full(6, 10.0)), predictive_draws(T)
    )
    np.testing.assert_allclose(
        coefficient_predictive(T, np.full_like(T, np.nan), np.full(6, np.nan)), predictive_draws(T)
    )


def test_identical_bags_give_the_student_t_sampling_error():
    # All bags agree: the deviation is 0, so each draw is T + SE * t_df.
    B, se, df = 40, 2.0, 7.0
    T = np.full((B, 1), 3.0)
    draws = coefficient_predictive(T, np.full((B, 1), se), np.full(B, df), seed=1)[:, 0]
    q = np.quantile(draws, [0.05, 0.95])
    np.testing.assert_allclose(q, 3.0 + se * stats.t.ppf([0.05, 0.95], df), rtol=0.08)


def _regression(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = convergence_regression(X, y)
    return r.coefficients, r.std_errors, r.df_resid


def test_planted_regression_covers_a_new_sample_of_runs():
    # Oracle: occupancies of 16 runs over 4 states (one rarely visited), convergence
    # steps linear in them plus noise. A's 16 bags give 90% predictive intervals; a
    # fresh sample B of 16 runs is simulated from the same population and its
    # coefficients (SD units of its own steps) should fall inside about 90% of the time.
    rng = np.random.default_rng(3)
    N, B, reps = 16, 12, 60
    alpha = np.array([3.0, 2.0, 2.0, 0.4])
    beta = np.array([1000.0, 3000.0, 2000.0, 8000.0])

    def sample():
        X = rng.dirichlet(alpha, size=N)
        return X, X @ beta + 400.0 * rng.standard_normal(N)

    new, bags_only = [], []
    for _ in range(reps):
        XA, yA = sample()
        cB = _regression(*sample())[0]
        fits = [_regression(XA[i], yA[i]) for i in rng.integers(0, N, size=(B, N))]
        T, SE = np.array([f[0] for f in fits]), np.array([f[1] for f in fits])
        df = np.array([f[2] for f in fits])
        for out, draws in ((new, coefficient_predictive(T, SE, df, seed=int(rng.integers(1 << 30)))),
                           (bags_only, predictive_draws(T))):
            lo, hi = np.nanquantile(draws, [0.05, 0.95], axis=0)
            ok = np.isfinite(cB)
            out.extend(((lo <= cB) & (cB <= hi))[ok])
    assert 0.86 <= np.mean(new) <= 0.97
    # the bag deviations alone (the pairs bootstrap) under-cover a high-leverage design
    assert np.mean(bags_only) < np.mean(new) - 0.03
