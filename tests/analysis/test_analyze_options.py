"""analyze() options with oracle parameters (planted paths), and the plot functions' contract."""

import numpy as np
import pytest

from bayes_trainmap.report import plots
from bayes_trainmap.analysis import analyze, compute_filtered
from bayes_trainmap.data import zscore_per_run
from bayes_trainmap.analysis.dissimilarity import trajectory_dissimilarity
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.inference.params import HMMParams


@pytest.fixture(scope="module")
def case():
    """Planted runs decoded with the planted paths and moment-matched parameters (no EM needed)."""
    sim = simulate_training_runs(16, n_checkpoints=150, path_dwell=(20, 25, 20), delay=30, random_state=2)
    Z, _ = zscore_per_run(sim.feature_matrix(), sim.lengths)
    k = sim.n_states
    paths = sim.true_paths
    params = HMMParams(
        start_prob=np.full(k, 1 / k),
        trans_mat=0.9 * np.eye(k) + 0.1 / k,
        means=np.stack([Z[paths == s].mean(0) for s in range(k)]),
        covars=np.stack([Z[paths == s].var(0) + 1e-3 for s in range(k)]),
        covariance_type="diag",
        feature_names=sim.feature_names,
        normalization={},
    )
    accuracy = sim.frame["eval_accuracy"].to_numpy().copy()
    last = sim.run_ids[-1]
    accuracy[(sim.frame["run"] == last).to_numpy()] = 0.5  # one run never converges
    return sim, Z, params, paths, accuracy, last


def _run(case, **kwargs):
    sim, Z, params, paths, accuracy, _ = case
    return analyze(
        params, Z, sim.lengths, sim.run_ids, sim.frame["step"].to_numpy(), {"eval_accuracy": accuracy},
        paths=paths, run_baselines=False, **kwargs,
    )


def test_never_converged_runs_are_listed_and_excluded_or_censored(case):
    sim, *_, last = case
    default = _run(case)
    assert default.convergence.never_converged == [last]
    assert default.regression.n_runs == len(sim.run_ids) - 1 and last not in default.regression.runs
    censored = _run(case, include_unconverged=True)
    assert censored.censored_runs == [last] and censored.regression.n_runs == len(sim.run_ids)
    assert censored.regression.step_mean > default.regression.step_mean


def test_filtered_posteriors_are_computed_when_omitted(case):
    sim, Z, params, paths, *_ = case
    filtered = compute_filtered(params, Z, sim.lengths)
    np.testing.assert_allclose(filtered.sum(1), 1.0)
    given = _run(case, filtered=filtered)
    omitted = _run(case)
    assert given.training_map.edges["label"].tolist() == omitted.training_map.edges["label"].tolist()


def test_means_ground_metric_and_outcome_errors(case):
    sim, Z, params, *_ = case
    res = _run(case, ground_metric="means")
    assert res.dissimilarity == pytest.approx(trajectory_dissimilarity(res.occupancy.to_numpy(), "means", params.means))
    assert res.settings["ground_metric"] == "means"
    with pytest.raises(ValueError, match="outcome 'eval_loss' not found"):
        _run(case, outcome="eval_loss")


def test_plots_draw_on_given_axes_and_return_artists(case):
    sim, *_ = case
    res = _run(case)
    fig, axes = plots.new_axes(ncols=3)
    unc = {"edges": [{"source": int(e.source), "target": int(e.target), "p_exists": 0.3} for e in res.training_map.edges.itertuples()]}
    unc["edges"].append({"source": 3, "target": 0, "p_exists": 0.05})  # only in posterior draws
    drawn = plots.plot_training_map(res.training_map, detour_states=res.detour_states, uncertainty=unc, ax=axes[0])
    assert drawn["nodes"].axes is axes[0] and len(drawn["edge_labels"]) == len(res.training_map.edges) + 1
    styles = [a.get_linestyle() for a in drawn["edges"]]
    assert styles.count(":") == 1 and all(st in ("--", "dashed", ":") for st in styles)
    bars = plots.plot_convergence_histogram(res.convergence.steps, n_never=1, ax=axes[1])
    assert sum(bars[0]) == len(sim.run_ids) - 1
    forest = plots.plot_regression_coefficients(res.regression.table(), ax=axes[2])
    assert len(forest) == res.regression.n_states - len(res.regression.dropped_states)
    # The layered layout puts the detour between the fork and the rejoin.
    layout = drawn["layout"]
    d = res.detour_states[0]
    xs = {s: layout.positions[s][0] for s in layout.positions}
    assert xs[1] < xs[d] < xs[2]
    assert (1, 2) in layout.routes  # the skip edge is routed around the detour
