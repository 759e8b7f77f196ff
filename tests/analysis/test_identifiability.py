"""Rank-deficient occupancy designs: estimable coefficients only, never a spurious detour.

Oracles: the rank test ``rank([X; e_j]) == rank(X)`` for estimability, numpy
``lstsq`` on the reduced design, statsmodels-free hand formulas, and a planted
simulation whose decoded paths over-split a state.
"""

import numpy as np
import pytest

from bayes_trainmap.analysis.detours import RegressionResult, convergence_regression, occupancy
from bayes_trainmap.analysis.identifiability import identify_design
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.fitting.bayesian import _regression_draw


def _estimable_by_rank(X):
    r = np.linalg.matrix_rank(X)
    return np.array([np.linalg.matrix_rank(np.vstack([X, np.eye(X.shape[1])[j]])) == r for j in range(X.shape[1])])


@pytest.mark.parametrize("seed", range(12))
def test_identified_columns_are_exactly_the_estimable_ones(seed):
    rng = np.random.default_rng(seed)
    n, base = int(rng.integers(3, 12)), int(rng.integers(2, 5))
    B = rng.normal(size=(n, base))
    # Extra columns: copies, combinations of some base columns, or zeros.
    extra = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(3)
        if kind == 0:
            extra.append(B[:, rng.integers(base)] * rng.normal())
        elif kind == 1:
            w = rng.normal(size=base) * (rng.random(base) < 0.6)
            extra.append(B @ w)
        else:
            extra.append(np.zeros(n))
    X = np.column_stack([B] + extra)[:, rng.permutation(base + len(extra))]
    ident = identify_design(X)
    assert ident.rank == np.linalg.matrix_rank(X)
    np.testing.assert_array_equal(ident.identified, _estimable_by_rank(X))
    assert np.linalg.matrix_rank(X[:, ident.basis]) == ident.rank == ident.basis.size
    # Every identified coefficient is the same at every least-squares solution.
    y = rng.normal(size=n)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    shifted = beta + ident.null_space @ rng.normal(size=ident.null_space.shape[1])
    np.testing.assert_allclose(X @ shifted, X @ beta, atol=1e-9)
    np.testing.assert_allclose(shifted[ident.identified], beta[ident.identified], atol=1e-9)


def _collinear_case(seed=0, n=40):
    """States 0..2 vary freely; states 3 and 4 always share one stay half-and-half."""
    rng = np.random.default_rng(seed)
    free = rng.dirichlet(np.ones(4), size=n)  # states 0, 1, 2 and the combined 3+4
    occ = np.column_stack([free[:, :3], free[:, 3] / 2, free[:, 3] / 2])
    steps = 1000 + 800 * occ[:, 1] - 300 * occ[:, 0] + rng.normal(0, 20, n)
    return occ, steps


def test_collinear_states_are_not_identified_and_the_rest_match_lstsq_on_the_reduced_design():
    occ, steps = _collinear_case()
    res = convergence_regression(occ, steps)
    assert res.identified.tolist() == [True, True, True, False, False]
    assert np.all(np.isnan(res.coefficients[3:])) and np.all(np.isnan(res.ci_low[3:]))
    assert not res.detour[3:].any() and res.rank == 4
    assert "aliased with state(s) [3, 4]" in res.not_identified_reasons[3]
    assert "rank-deficient" in res.warning and res.not_identified_states == [3, 4]
    # Oracle: lstsq on [x0, x1, x2, x3 + x4] (same column space, full rank).
    y = (steps - steps.mean()) / steps.std(ddof=1)
    reduced = np.column_stack([occ[:, :3], occ[:, 3] + occ[:, 4]])
    beta, rss, *_ = np.linalg.lstsq(reduced, y, rcond=None)
    np.testing.assert_allclose(res.coefficients[:3], beta[:3], rtol=1e-9, atol=1e-10)
    n = len(y)
    assert res.r_squared == pytest.approx(1 - rss[0] / (y @ y), rel=1e-10)
    assert (res.df_model, res.df_resid) == (3.0, n - 4.0)
    f = ((y @ y - rss[0]) / 3) / (rss[0] / (n - 4))
    assert res.f_statistic == pytest.approx(f, rel=1e-9)
    se = np.sqrt(np.diag(rss[0] / (n - 4) * np.linalg.inv(reduced.T @ reduced)))[:3]
    np.testing.assert_allclose(res.std_errors[:3], se, rtol=1e-8)
    # The JSON round trip keeps the flags and reasons.
    back = RegressionResult.from_dict(res.to_dict())
    assert back.identified.tolist() == res.identified.tolist()
    assert back.not_identified_reasons == res.not_identified_reasons


def test_constant_occupancy_is_aliased_with_the_intercept_and_the_rest_is_estimated():
    """State 0 takes 20 % of every run: its coefficient is not identified (only the
    common level is lost), and each other state's coefficient is the estimable
    combination 0.2 beta_0 + 0.8 beta_k -- the same at every least-squares solution."""
    rng = np.random.default_rng(1)
    n = 30
    rest = rng.dirichlet(np.ones(3), size=n) * 0.8
    occ = np.column_stack([np.full(n, 0.2), rest])
    steps = 500 + 400 * occ[:, 1] + rng.normal(0, 10, n)
    res = convergence_regression(occ, steps)
    assert res.identified.tolist() == [False, True, True, True] and not res.detour[0]
    assert np.isnan(res.coefficients[0])
    assert "aliased with the intercept" in res.not_identified_reasons[0]
    assert "state 0: 0.2" in res.not_identified_reasons[0]
    y = (steps - steps.mean()) / steps.std(ddof=1)
    assert not _estimable_by_rank(occ).any()  # no single original coefficient is estimable ...
    beta = np.linalg.lstsq(occ, y, rcond=None)[0]
    other = beta + np.array([0.8, -0.2, -0.2, -0.2]) * 3.0  # ... shifting along the null space
    np.testing.assert_allclose(occ @ other, occ @ beta, atol=1e-12)
    for b in (beta, other):  # ... but 0.2 beta_0 + 0.8 beta_k is
        np.testing.assert_allclose(res.coefficients[1:], 0.2 * b[0] + 0.8 * b[1:], rtol=1e-9, atol=1e-10)
    assert res.rank == 3
    assert res.r_squared == pytest.approx(1 - np.sum((y - occ @ beta) ** 2) / (y @ y), rel=1e-9)
    # The planted effect (state 1 delays convergence) is what the estimable coefficients show.
    assert res.coefficients[1] > 0 > max(res.coefficients[2], res.coefficients[3])


def test_saturated_and_exact_fits_report_no_intervals():
    rng = np.random.default_rng(2)
    occ = rng.dirichlet(np.ones(4), size=4)
    sat = convergence_regression(occ, rng.normal(size=4))
    assert "saturated" in sat.warning and np.isnan(sat.r_squared) and np.isnan(sat.f_pvalue)
    assert not sat.identified.any() and not sat.detour.any()
    occ = rng.dirichlet(np.ones(3), size=20)
    exact = convergence_regression(occ, occ @ np.array([3.0, -1.0, 2.0]))
    assert "exact" in exact.warning and exact.r_squared == 1.0
    assert exact.identified.all() and np.all(np.isfinite(exact.coefficients))
    assert np.all(np.isnan(exact.std_errors)) and np.isnan(exact.f_pvalue)


def test_bayesian_draws_on_a_rank_deficient_design_do_not_crash_and_match_the_reduced_posterior():
    occ, steps = _collinear_case(seed=3)
    rng = np.random.default_rng(4)
    draws = np.stack([_regression_draw(occ, steps, rng)[0] for _ in range(2000)])
    assert np.all(np.isnan(draws[:, 3:])) and np.all(np.isfinite(draws[:, :3]))
    y = (steps - steps.mean()) / steps.std(ddof=1)
    reduced = np.column_stack([occ[:, :3], occ[:, 3] + occ[:, 4]])
    beta, rss, *_ = np.linalg.lstsq(reduced, y, rcond=None)
    nu = len(y) - 4
    cov = rss[0] / nu * np.linalg.inv(reduced.T @ reduced) * nu / (nu - 2)
    np.testing.assert_array_less(np.abs(draws[:, :3].mean(0) - beta[:3]), 4 * np.sqrt(np.diag(cov)[:3] / 2000))
    # Whitened by the oracle's covariance the draws have identity covariance (Monte
    # Carlo SD about sqrt(2 / 2000) = 0.03 on the diagonal, 0.022 off it).
    white = np.linalg.solve(np.linalg.cholesky(cov[:3, :3]), (draws[:, :3] - beta[:3]).T)
    np.testing.assert_allclose(np.cov(white), np.eye(3), atol=0.13)
    # A constant occupancy: that state NaN, the others drawn; a saturated design: NaN, not an error.
    const = np.column_stack([np.full(10, 0.5), rng.dirichlet(np.ones(2), size=10) * 0.5])
    coef, detour, r2 = _regression_draw(const, rng.normal(size=10), rng)
    assert np.isnan(coef[0]) and np.all(np.isfinite(coef[1:])) and not detour[0] and np.isfinite(r2)
    coef, detour, r2 = _regression_draw(rng.dirichlet(np.ones(4), size=3), rng.normal(size=3), rng)
    assert np.all(np.isnan(coef)) and not detour.any() and np.isnan(r2)


def test_planted_detour_is_flagged_exactly_when_k_over_splits_a_path_state():
    """Decoded paths that over-split path state 0 into two states sharing each run's
    stay half-and-half (state 0, then the extra state K): the design is
    rank-deficient, the split states are not identified, and the detours flagged
    are exactly the planted one."""
    sim = simulate_training_runs(60, random_state=5, detour_prob=0.4)
    paths, lengths = sim.true_paths.copy(), sim.lengths
    extra = sim.n_states
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = []
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        stay = np.flatnonzero(paths[a:b] == 0)
        if stay.size % 2 == 0:  # an exact half-and-half split needs an even stay
            paths[a + stay[stay.size // 2 :]] = extra
            keep.append(i)
    assert len(keep) >= 20
    occ = occupancy(paths, lengths, extra + 1)[keep]
    steps = sim.convergence_steps[keep]
    np.testing.assert_allclose(occ[:, 0], occ[:, extra])
    res = convergence_regression(occ, steps)
    assert res.detour_states == sim.detour_states
    assert res.not_identified_states == [0, extra]
    assert res.identified[sim.detour_states].all()
    # The old pseudo-inverse answer gave the two halves one equal coefficient each.
    y = (steps - steps.mean()) / steps.std(ddof=1)
    pinv = np.linalg.pinv(occ) @ y
    assert pinv[0] == pytest.approx(pinv[extra], rel=1e-8)


def test_two_separate_aliased_pairs_are_reported_as_two_groups():
    rng = np.random.default_rng(7)
    free = rng.dirichlet(np.ones(3), size=30)  # state 0, pair {1, 2}, pair {3, 4}
    occ = np.column_stack([free[:, 0], free[:, 1] / 2, free[:, 1] / 2, free[:, 2] * 0.25, free[:, 2] * 0.75])
    ident = identify_design(occ)
    assert ident.alias_groups == [[1, 2], [3, 4]] and ident.identified.tolist() == [True] + [False] * 4
    steps = 100 + 30 * occ[:, 0] + rng.normal(size=30)
    res = convergence_regression(occ, steps)
    assert "aliased with state(s) [1, 2]" in res.not_identified_reasons[1]
    assert "aliased with state(s) [3, 4]" in res.not_identified_reasons[4]
    y = (steps - steps.mean()) / steps.std(ddof=1)
    reduced = np.column_stack([occ[:, 0], occ[:, 1] + occ[:, 2], occ[:, 3] + occ[:, 4]])
    beta = np.linalg.lstsq(reduced, y, rcond=None)[0]
    assert res.coefficients[0] == pytest.approx(beta[0], rel=1e-9)
