"""Uncertainty through the analysis: label alignment, regression posterior, planted
truth inside the intervals, detour probabilities, ArviZ export."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bayes_trainmap.core.errors import BayesTrainmapError  # noqa: E402
from bayes_trainmap.fitting.bayesian import (  # noqa: E402
    _regression_draw,
    align_to_reference,
    fit_bayesian,
    propagate_draws,
    summarize,
)


@pytest.fixture(scope="module")
def svi_result(planted):
    return fit_bayesian(
        "svi",
        planted.Z,
        planted.lengths,
        planted.Z,
        planted.lengths,
        planted.mle().params_,
        convergence_steps=planted.convergence_steps,
        draws=100,
        steps=800,
        lr=0.02,
        seed=0,
        progress=False,
    )


def test_alignment_undoes_a_permuted_posterior():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 2, size=(4, 3))
    perms = np.stack([rng.permutation(4) for _ in range(30)])
    # Draw s lists the reference states in the order perms[s] (plus small noise).
    draws = reference[perms] + rng.normal(0, 0.05, size=(30, 4, 3))
    orders, ambiguous = align_to_reference(draws, reference)
    for s in range(30):
        np.testing.assert_allclose(draws[s][orders[s]], reference, atol=0.3)
        np.testing.assert_array_equal(perms[s][orders[s]], np.arange(4))
    assert not ambiguous.any()


def test_alignment_flags_nearly_exchangeable_states():
    reference = np.array([[0.0, 0.0], [3.0, 0.0], [3.1, 0.0]])
    rng = np.random.default_rng(1)
    draws = reference + rng.normal(0, 0.3, size=(50, 3, 2))
    _, ambiguous = align_to_reference(draws, reference)
    assert 0.2 < ambiguous.mean() <= 1.0
    with pytest.raises(BayesTrainmapError, match="draw_means must have shape"):
        align_to_reference(draws[:, :2], reference)


def test_propagation_is_invariant_to_the_labelling_of_the_draws(planted):
    rng = np.random.default_rng(2)
    truth = planted.truth
    draws = [truth.permute(rng.permutation(truth.n_states)) for _ in range(4)]
    aligned = propagate_draws(draws, truth, planted.Z, planted.lengths, planted.convergence_steps)
    plain = propagate_draws([truth] * 4, truth, planted.Z, planted.lengths, planted.convergence_steps)
    np.testing.assert_allclose(aligned.trans_mat, plain.trans_mat)
    np.testing.assert_array_equal(aligned.edge_runs, plain.edge_runs)
    np.testing.assert_allclose(aligned.coefficients, plain.coefficients)


def test_regression_draws_follow_the_multivariate_t_posterior():
    rng = np.random.default_rng(3)
    n, K = 30, 3
    occ = rng.dirichlet(np.ones(K), size=n)
    y_raw = occ @ np.array([5.0, 1.0, -2.0]) + rng.normal(0, 0.5, n)
    draws = np.stack([_regression_draw(occ, y_raw, rng)[0] for _ in range(3000)])
    y = (y_raw - y_raw.mean()) / y_raw.std(ddof=1)
    beta_hat, rss = np.linalg.lstsq(occ, y, rcond=None)[:2]
    nu = n - K
    cov = rss[0] / nu * np.linalg.inv(occ.T @ occ) * nu / (nu - 2)  # covariance of the t
    np.testing.assert_array_less(np.abs(draws.mean(0) - beta_hat), 4 * np.sqrt(np.diag(cov) / 3000))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.1, atol=1e-3 * np.abs(cov).max())


def test_intervals_contain_the_planted_truth(svi_result, planted):
    draws = svi_result.draws
    truth = planted.truth
    lo, hi = np.quantile(draws.trans_mat, [0.05, 0.95], axis=0)
    free = (truth.trans_mat > 0) & (truth.trans_mat < 1)
    inside = (lo <= truth.trans_mat) & (truth.trans_mat <= hi)
    assert inside[free].mean() >= 0.75
    # Boundary truths (structural zeros, the absorbing state's 1) cannot lie inside an
    # interval on the open simplex: the posterior hugs them instead.
    assert (hi[truth.trans_mat == 0] < 0.05).all()
    assert (lo[truth.trans_mat == 1] > 0.95).all()
    lo, hi = np.quantile(draws.means, [0.05, 0.95], axis=0)
    assert ((lo <= truth.means) & (truth.means <= hi)).mean() >= 0.75


def test_detour_probability_singles_out_the_planted_detour(svi_result, planted):
    states = svi_result.uncertainty["states"]
    p_detour = np.array([s["p_detour"] for s in states])
    detour = planted.detour_state
    assert p_detour[detour] >= 0.9
    assert np.delete(p_detour, detour).max() <= 0.1


def test_uncertainty_dict_has_the_report_structure(svi_result):
    u = svi_result.uncertainty
    assert set(u) == {
        "edges", "states", "r_squared", "interval", "n_draws", "alignment_ambiguous_rate", "elbo"
    }
    assert u["n_draws"] == 100 and u["interval"] == 0.9 and len(u["elbo"]) == svi_result.fit.n_steps
    for edge in u["edges"]:
        assert set(edge) == {
            "source", "target", "p_exists", "trans_prob_median", "trans_prob_lo",
            "trans_prob_hi", "n_runs_median", "n_runs_lo", "n_runs_hi",
        }
        assert edge["trans_prob_lo"] <= edge["trans_prob_median"] <= edge["trans_prob_hi"]
        assert 0 < edge["p_exists"] <= 1
    assert {s["state"] for s in u["states"]} == set(range(svi_result.params.n_states))
    assert 0 <= u["r_squared"]["lo"] <= u["r_squared"]["median"] <= u["r_squared"]["hi"] <= 1
    # The planted fork 0 -> detour and its return are edges with certainty.
    p_exists = {(e["source"], e["target"]): e["p_exists"] for e in u["edges"]}
    assert p_exists[(0, 3)] == 1.0 and p_exists[(3, 1)] == 1.0


def test_inference_data_has_named_dims_and_works_with_arviz(svi_result, tmp_path):
    idata = svi_result.inference_data()
    post = idata.posterior
    assert post["trans_mat"].dims == ("chain", "draw", "from_state", "to_state")
    assert post["means"].dims == ("chain", "draw", "state", "feature")
    assert post["coefficients"].dims == ("chain", "draw", "state")
    assert list(post["means"].coords["feature"].values) == list(svi_result.params.feature_names)
    summary = az.summary(idata, var_names=["coefficients", "r_squared"], kind="stats")
    assert len(summary) == svi_result.params.n_states + 1
    az.plot_forest(idata, var_names=["coefficients"], combined=True)
    az.plot_posterior(idata, var_names=["r_squared"])
    path = svi_result.write_posterior(tmp_path)
    assert path.name == "posterior.nc"
    loaded = az.from_netcdf(str(path))
    np.testing.assert_allclose(loaded.posterior["trans_mat"].values, post["trans_mat"].values)
    np.testing.assert_allclose(loaded.constant_data["elbo"].values, svi_result.elbo)


def test_map_mode_gives_a_point_estimate_only(planted):
    result = fit_bayesian(
        "map", planted.Z, planted.lengths, planted.Z, planted.lengths, planted.mle().params_,
        steps=50, progress=False,
    )
    assert result.uncertainty is None and result.draws is None
    result.params.validate()
    with pytest.raises(BayesTrainmapError, match="no posterior draws"):
        result.inference_data()
    with pytest.raises(BayesTrainmapError, match="mode must be one of"):
        fit_bayesian("mcmc", planted.Z, planted.lengths, planted.Z, planted.lengths, planted.truth)


def test_summary_rejects_a_bad_interval(svi_result):
    with pytest.raises(BayesTrainmapError, match="interval must be in"):
        summarize(svi_result.draws, interval=1.5)
