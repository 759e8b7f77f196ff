"""Resampling over runs: role matching, predictive draws, bags on planted data, report sections."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import betaln, gammaln
from scipy.stats import binom

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.fitting import pipeline
from bayes_trainmap.fitting.robustness import (
    count_predictive,
    map_quantities,
    match_by_role,
    predictive_draws,
    quantities_from_paths,
    resample_fits,
    resample_runs,
    robustness_section,
    summarize_bags,
)
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.params import HMMParams


def _params(K=3, d=2, seed=0):
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.ones(K) * 0.3, size=K) + np.eye(K) * 5
    return HMMParams(
        start_prob=np.full(K, 1 / K),
        trans_mat=trans / trans.sum(1, keepdims=True),
        means=rng.normal(size=(K, d)) * 3,
        covars=np.ones((K, d)),
        covariance_type="diag",
        feature_names=[f"f{i}" for i in range(d)],
    )


def test_quantities_from_paths_against_a_loop():
    rng = np.random.default_rng(1)
    K, lengths = 4, np.array([7, 1, 12, 5])
    paths = rng.integers(0, K, lengths.sum())
    q = quantities_from_paths(_params(K), paths, lengths)
    counts = np.zeros((K, K), dtype=int)
    pos_sum, pos_n = np.zeros(K), np.zeros(K)
    start = 0
    for n in lengths:
        run = paths[start : start + n]
        used = {(a, b) for a, b in itertools.pairwise(run) if a != b}
        for a, b in used:
            counts[a, b] += 1
        for t, s in enumerate(run):
            pos_sum[s] += t / max(n - 1, 1)
            pos_n[s] += 1
        start += n
    np.testing.assert_array_equal(q.edge_runs, counts)
    np.testing.assert_allclose(q.position[pos_n > 0], (pos_sum / np.maximum(pos_n, 1))[pos_n > 0])
    assert q.n_runs == 4


def test_match_by_role_undoes_a_relabelling():
    sim = simulate_training_runs(12, n_checkpoints=200, n_features=4, random_state=3)
    Z, lengths = sim.feature_matrix(), sim.lengths
    truth = sim.true_params
    reference = map_quantities(truth, Z, lengths)
    for order in itertools.permutations(range(truth.n_states)):
        relabelled = map_quantities(truth.permute(np.array(order)), Z, lengths)
        back = relabelled.permute(match_by_role(reference, relabelled))
        np.testing.assert_allclose(back.means, reference.means)
        np.testing.assert_array_equal(back.edge_runs, reference.edge_runs)


def test_predictive_draws_double_the_variance_and_skip_self_pairs():
    rng = np.random.default_rng(0)
    bags = rng.normal(2.0, 1.5, size=(60, 3))
    draws = predictive_draws(bags)
    assert draws.shape == (60 * 59, 3)
    # T_b + T_b' - median(T) with independent b, b': variance 2 sigma^2 (Monte Carlo oracle);
    # over all ordered pairs the mean is exactly 2 mean(T) - median(T).
    np.testing.assert_allclose(draws.var(axis=0) / bags.var(axis=0), 2.0, rtol=0.1)
    np.testing.assert_allclose(draws.mean(axis=0), 2 * bags.mean(axis=0) - np.median(bags, axis=0), atol=1e-9)
    # No pair of a bag with itself: 2 T_b - median(T) never appears as a draw.
    centre = np.median(bags[:, 0])
    assert not np.isin(np.round(2 * bags[:, 0] - centre, 12), np.round(draws[:, 0], 12)).any()
    assert predictive_draws(bags, lower=0, upper=3).min() >= 0


def test_count_predictive_is_the_jeffreys_beta_binomial():
    N, x = 20, 3
    draws = count_predictive(np.full((400, 1), x), N, per_bag=100, seed=1)[:, 0]
    k = np.arange(N + 1)
    a, b = x + 0.5, N - x + 0.5
    pmf = np.exp(gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1) + betaln(k + a, N - k + b) - betaln(a, b))
    freq = np.bincount(draws.astype(int), minlength=N + 1) / draws.size
    se = np.sqrt(pmf * (1 - pmf) / draws.size)
    assert np.all(np.abs(freq - pmf) <= 5 * se + 1e-3)
    # An edge no run used still has a chance in a new set of seeds.
    assert count_predictive(np.zeros((50, 1)), N, seed=2).max() >= 1


def test_resample_runs_concatenates_the_drawn_runs():
    Z = np.arange(10.0)[:, None]
    Zb, lb = resample_runs(Z, np.array([3, 2, 5]), np.array([2, 0, 2]))
    np.testing.assert_array_equal(lb, [5, 3, 5])
    np.testing.assert_array_equal(Zb[:, 0], [5, 6, 7, 8, 9, 0, 1, 2, 5, 6, 7, 8, 9])


@pytest.fixture(scope="module")
def planted_bags():
    sim = simulate_training_runs(24, n_checkpoints=200, n_features=4, detour_prob=0.5, random_state=5)
    from bayes_trainmap.inference.baum_welch import GaussianHMM

    Z = sim.feature_matrix()
    fit = GaussianHMM(sim.n_states, "diag", n_restarts=3, random_state=0).fit(Z, sim.lengths).params_
    return sim, resample_fits(fit, Z, sim.lengths, sim.convergence_steps, n_bags=12, fitter="mle", seed=0)


def test_bags_reproduce_the_planted_map(planted_bags):
    sim, bags = planted_bags
    section = robustness_section(bags, k_choices=[5, 5, 4], chosen_k=5)
    # Fitted state of each planted state (Hungarian on the means), then the planted
    # path 0 -> 1 -> 2 -> 3 and the way into the detour, 1 -> 4 (the way back is
    # blurred by the simulator's smoothing of the means).
    cost = ((sim.true_params.means[:, None] - bags.reference.means[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    fitted = dict(zip(rows, cols))
    planted = {(fitted[a], fitted[b]) for a, b in ((0, 1), (1, 2), (2, 3), (1, 4))}
    share = {(e["source"], e["target"]): e["share"] for e in section["edges"]}
    assert all(share.get(edge, 0.0) >= 0.9 for edge in planted)
    assert section["forking"] == {"in_map": True, "share": 1.0}
    assert section["k"]["share_same"] == pytest.approx(2 / 3)
    assert section["detours"][fitted[4]]["share"] >= 0.5
    unc = summarize_bags(bags, interval=0.9)
    N = sim.lengths.size
    for e in unc["edges"]:
        assert 0 <= e["n_runs_lo"] <= e["n_runs_hi"] <= N
        assert e["trans_prob_pred_lo"] <= e["trans_prob_lo"] + 1e-12
        assert e["trans_prob_hi"] <= e["trans_prob_pred_hi"] + 1e-12
    # The way into the detour: a new set of N seeds varies at least as a binomial count
    # around this set's count does (runs are exchangeable), and contains this set's count.
    entry = next(e for e in unc["edges"] if (e["source"], e["target"]) == (fitted[1], fitted[4]))
    x = bags.reference.edge_runs[fitted[1], fitted[4]]
    lo, hi = binom.ppf([0.05, 0.95], N, x / N)
    assert entry["n_runs_lo"] <= x <= entry["n_runs_hi"]
    assert entry["n_runs_hi"] - entry["n_runs_lo"] >= hi - lo
    assert unc["method"].startswith("bagged") and "new set of 24 seeds" in unc["labels"]["n_runs"]


def test_given_resamples_are_refitted_as_drawn(planted_bags):
    """``indices`` refits another result's bags: the same runs, and with the same fitter
    the same quantities; the EM MAP bags stay next to the Baum-Welch ones."""
    sim, bags = planted_bags
    Z = sim.feature_matrix()
    reference = GaussianHMM(sim.n_states, "diag", n_restarts=3, random_state=0).fit(Z, sim.lengths).params_
    again = resample_fits(reference, Z, sim.lengths, sim.convergence_steps, fitter="mle", seed=7,
                          indices=bags.indices[:4])
    np.testing.assert_array_equal(again.indices, bags.indices[:4])
    for a, b in zip(again.bags, bags.bags[:4]):
        np.testing.assert_allclose(a.means, b.means, atol=1e-8)
        np.testing.assert_array_equal(a.edge_runs, b.edge_runs)
    em = resample_fits(reference, Z, sim.lengths, sim.convergence_steps, fitter="map", indices=bags.indices[:4])
    assert em.converged.all()
    for a, b in zip(em.bags, bags.bags[:4]):
        np.testing.assert_allclose(a.means, b.means, atol=0.05)
    with pytest.raises(BayesTrainmapError, match="indices must have shape"):
        resample_fits(reference, Z, sim.lengths, indices=bags.indices[:, :3])


def test_bad_arguments_are_rejected():
    p = _params()
    Z, lengths = np.zeros((10, 2)), np.array([10])
    with pytest.raises(BayesTrainmapError, match="fitter"):
        resample_fits(p, Z, lengths, fitter="nuts")
    with pytest.raises(BayesTrainmapError, match="bags"):
        resample_fits(p, Z, lengths, n_bags=0)


def test_robustness_section_in_every_mode(planted_set, tmp_path):
    for mode, options in (("mle", {}), ("map", {"steps": 30, "bag_steps": 15})):
        result = pipeline.fit(
            planted_set, mode=mode, states="2-3", n_restarts=1, progress=False, bootstrap=4, k_resamples=2,
            bayes_options=options,
        )
        out = result.save(tmp_path / mode)
        report = json.loads((out / "report.json").read_text())
        rob = report["robustness"]
        assert rob["n_resamples"] == 4 and len(rob["k"]["choices"]) == 2
        assert {(e["source"], e["target"]) for e in rob["edges"] if e["in_map"]} == {
            (e["source"], e["target"]) for e in report["edges"]
        }
        assert "Robustness to the choice of seeds" in (out / "report.md").read_text()
        assert 'id="robustness"' in (out / "report.html").read_text()
        config = json.loads((out / "config.json").read_text())
        assert config["config"]["bootstrap"] == 4 and config["config"]["interval"] == 0.9
        if mode == "map":
            assert report["uncertainty"]["method"].startswith("bagged")
            settings = config["resolved"]["bayes_settings"]
            assert settings["intervals"] == "bagged" and settings["bag_steps"] == 15 and "converged" in settings
            # 30 L-BFGS iterations do not converge here: the warning reaches report.json and the HTML.
            if not settings["converged"]:
                assert any("iteration limit" in w for w in report["warnings"])
                assert "iteration limit" in (out / "report.html").read_text()
        else:
            assert report["uncertainty"] is None and config["resolved"]["resampling"]["fitter"] == "mle"


def test_sampled_paths_give_the_posterior_probability_of_using_an_edge():
    """FFBS decoding in map_quantities against brute-force enumeration of every path."""
    from scipy.special import logsumexp

    from bayes_trainmap.inference.emissions import gaussian_log_likelihood

    params = HMMParams(
        start_prob=np.array([0.7, 0.3]),
        trans_mat=np.array([[0.8, 0.2], [0.3, 0.7]]),
        means=np.array([[0.0], [1.0]]),
        covars=np.array([[0.6], [0.6]]),
        covariance_type="diag",
        feature_names=["x"],
    )
    z = np.array([[0.1], [0.6], [0.4], [0.9], [0.3]])
    T, K = z.shape[0], 2
    log_b = gaussian_log_likelihood(z, params.means, params.covars, "diag")
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    joint = np.log(params.start_prob[paths[:, 0]]) + log_b[0, paths[:, 0]]
    for t in range(1, T):
        joint += np.log(params.trans_mat[paths[:, t - 1], paths[:, t]]) + log_b[t, paths[:, t]]
    post = np.exp(joint - logsumexp(joint))
    uses = np.array([[np.any((p[:-1] == j) & (p[1:] == k)) for p in paths] for j in range(K) for k in range(K)])
    exact = (uses * post).sum(axis=1).reshape(K, K)

    n = 20000  # the same run repeated: edge_runs / n estimates P(the run's path uses the edge)
    q = map_quantities(params, np.tile(z, (n, 1)), np.full(n, T), decode="sample", rng=np.random.default_rng(0))
    freq = q.edge_runs / n
    se = np.sqrt(exact * (1 - exact) / n)
    off = ~np.eye(K, dtype=bool)
    assert np.all(np.abs(freq - exact)[off] <= 4.5 * se[off] + 1e-3)
    # Viterbi gives one path: every edge used by all copies or by none.
    viterbi = map_quantities(params, np.tile(z, (50, 1)), np.full(50, T)).edge_runs
    assert set(np.unique(viterbi)) <= {0, 50}


def test_cli_resampling_options_reach_the_fit_directory(planted_dir, tmp_path, capsys):
    from bayes_trainmap.cli import main

    out = tmp_path / "fit"
    status = main(["fit", "--data", planted_dir, "--states", "3", "--restarts", "1", "--bootstrap", "0",
                   "--interval", "0.8", "--out", str(out), "--quiet"])
    assert status == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["bootstrap"] == 0 and config["config"]["interval"] == 0.8
    assert config["resolved"]["bayes_settings"] == {}  # the intervals method applies to map/svi only
    assert json.loads((out / "report.json").read_text())["robustness"] is None
    assert "Robustness to the choice of seeds" not in (out / "report.md").read_text()
    status = main(["fit", "--data", planted_dir, "--states", "3", "--bootstrap", "-1", "--out", str(out), "--quiet"])
    assert status == 2 and "error: bootstrap must be a non-negative number of resamples" in capsys.readouterr().err
