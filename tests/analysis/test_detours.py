"""Occupancy features and the convergence regression against a hand-computed least-squares fit."""

import numpy as np
import pytest
from scipy import stats

from bayes_trainmap.analysis.detours import convergence_regression, occupancy


def test_occupancy_counts_fractions_per_run():
    paths = np.array([0, 0, 1, 2, 2, 2, 1, 1])
    occ = occupancy(paths, np.array([5, 3]), 4)
    np.testing.assert_allclose(occ, [[0.4, 0.2, 0.4, 0.0], [0.0, 2 / 3, 1 / 3, 0.0]])
    with pytest.raises(ValueError, match="lengths"):
        occupancy(paths, np.array([5, 4]), 4)
    with pytest.raises(ValueError, match="outside"):
        occupancy(paths, np.array([5, 3]), 2)


def _hand_fit(occ, steps):
    """Least squares with numpy only: no-intercept fit on fractions, centred R^2, F-test."""
    y = (steps - steps.mean()) / steps.std(ddof=1)
    keep = occ.sum(0) > 0
    X = occ[:, keep]
    n, p = X.shape
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    ssr, sst = resid @ resid, ((y - y.mean()) ** 2).sum()
    r2 = 1 - ssr / sst
    df_model, df_resid = p - 1, n - p
    f = ((sst - ssr) / df_model) / (ssr / df_resid)
    sigma2 = ssr / df_resid
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ X)))
    q = stats.t.ppf(0.975, df_resid)
    return keep, beta, se, beta - q * se, beta + q * se, r2, f, stats.f.sf(f, df_model, df_resid)


def test_regression_matches_hand_least_squares():
    rng = np.random.default_rng(0)
    n_runs = 30
    occ = rng.dirichlet(np.ones(4), size=n_runs)
    occ[:10, 3] = 0.0  # state 3 optional
    occ[:, 2] = 0.0  # state 2 never visited: dropped
    occ /= occ.sum(1, keepdims=True)
    steps = 1000 + 3000 * occ[:, 3] - 500 * occ[:, 0] + rng.normal(0, 50, n_runs)

    res = convergence_regression(occ, steps, run_ids=[f"r{i}" for i in range(n_runs)])
    keep, beta, se, lo, hi, r2, f, p = _hand_fit(occ, steps)
    np.testing.assert_allclose(res.coefficients[keep], beta, rtol=1e-9)
    np.testing.assert_allclose(res.std_errors[keep], se, rtol=1e-9)
    np.testing.assert_allclose(res.ci_low[keep], lo, rtol=1e-9)
    np.testing.assert_allclose(res.ci_high[keep], hi, rtol=1e-9)
    assert res.r_squared == pytest.approx(r2, rel=1e-9)
    assert res.f_statistic == pytest.approx(f, rel=1e-9)
    assert res.f_pvalue == pytest.approx(p, rel=1e-6)
    assert res.dropped_states == [2] and np.isnan(res.coefficients[2])
    assert res.visited_by.tolist() == [30, 30, 0, 20]
    # State 3: positive coefficient and skipped by 10 converged runs -> detour; 0, 1 visited by all.
    assert res.detour.tolist() == [False, False, False, True]
    assert res.warning is None and res.n_runs == n_runs
    back = type(res).from_dict(res.to_dict())
    np.testing.assert_allclose(back.coefficients, res.coefficients, equal_nan=True)
    assert back.detour.tolist() == res.detour.tolist() and back.f_pvalue == res.f_pvalue


def test_unrelated_outcome_warns():
    rng = np.random.default_rng(1)
    occ = rng.dirichlet(np.ones(3), size=25)
    res = convergence_regression(occ, rng.normal(size=25))
    assert res.f_pvalue >= 0.05
    assert "not be interpreted" in res.warning


def test_degenerate_inputs_give_warnings_not_crashes():
    occ = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    same = convergence_regression(occ, np.array([10.0, 10.0, 10.0]))
    assert "same step" in same.warning and np.isnan(same.r_squared)
    tiny = convergence_regression(occ[:2], np.array([1.0, 2.0]))
    assert "degrees of freedom" in tiny.warning
    with pytest.raises(ValueError, match="finite"):
        convergence_regression(occ, np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="sum to one"):
        convergence_regression(occ * 2, np.array([1.0, 3.0, 2.0]))
