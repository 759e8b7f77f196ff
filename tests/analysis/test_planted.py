"""End to end on planted simulations: GaussianHMM + the analysis recover the planted map.

The detour simulation has a shared path 0 -> 1 -> 2 -> 3 and an optional
state entered from 1 that delays convergence; the linear one has the path only.
The HMM is fitted with the planted number of states (selection is tested with
the backbone's pipeline); fitted states are matched to planted ones by the
majority of checkpoints.
"""

import numpy as np
import pytest

from bayes_trainmap.analysis import Analysis, analyze
from bayes_trainmap.data import zscore_per_run
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.inference.baum_welch import GaussianHMM

SIM = dict(n_runs=30, n_checkpoints=150, path_dwell=(20, 25, 20), delay=30, random_state=1)


def _fit_and_analyze(detour: bool, baselines: bool):
    sim = simulate_training_runs(detour=detour, **SIM)
    Z, _ = zscore_per_run(sim.feature_matrix(), sim.lengths)
    model = GaussianHMM(sim.n_states, n_restarts=2, random_state=0, feature_names=sim.feature_names).fit(Z, sim.lengths)
    paths = model.predict(Z, sim.lengths)
    split = ["val" if i % 5 == 0 else "train" for i in range(len(sim.run_ids))]
    analysis = analyze(
        model.params_,
        Z,
        sim.lengths,
        sim.run_ids,
        sim.frame["step"].to_numpy(),
        {"eval_accuracy": sim.frame["eval_accuracy"].to_numpy()},
        paths=paths,
        split=split,
        threshold=sim.planted["threshold"],
        states_range=range(1, 8),
        run_baselines=baselines,
        baseline_options={"n_restarts": 1, "n_iter": 25},
    )
    confusion = np.zeros((sim.n_states, sim.n_states))
    np.add.at(confusion, (paths, sim.true_paths), 1)
    to_planted = confusion.argmax(axis=1)
    return sim, analysis, to_planted, confusion


@pytest.fixture(scope="module")
def detour_case():
    return _fit_and_analyze(True, baselines=True)


@pytest.fixture(scope="module")
def linear_case():
    return _fit_and_analyze(False, baselines=False)


def test_detour_map_forks_and_flags_exactly_the_planted_state(detour_case):
    sim, analysis, to_planted, confusion = detour_case
    assert sorted(to_planted.tolist()) == list(range(sim.n_states)), "fitted states must match planted ones 1:1"
    assert confusion.max(axis=1).sum() / confusion.sum() > 0.95
    assert analysis.forking
    assert [int(to_planted[k]) for k in analysis.detour_states] == sim.detour_states
    # Convergence is explained by occupancy: high R^2, tiny p-value, positive detour coefficient.
    assert analysis.regression.r_squared > 0.9 and analysis.regression.f_pvalue < 1e-6
    detour = analysis.detour_states[0]
    assert analysis.regression.ci_low[detour] > 0
    # The map has the fork (from planted 1) and the rejoin (into planted 2).
    planted_edges = {(int(to_planted[a]), int(to_planted[b])) for a, b in zip(analysis.training_map.edges["source"], analysis.training_map.edges["target"])}
    d = sim.planted["detour_state"]
    assert {(0, 1), (1, 2), (2, 3), (1, d), (d, 2)} <= planted_edges
    edges = analysis.training_map.edges
    into_detour = edges[[to_planted[t] == d for t in edges["target"]]].iloc[0]
    assert into_detour["n_runs"] == sim.visits_detour.sum()
    # Runs through the detour converge later than those that skip it.
    skip = edges[[(to_planted[s], to_planted[t]) == (1, 2) for s, t in zip(edges["source"], edges["target"])]].iloc[0]
    assert into_detour["conv_mean"] > skip["conv_mean"]
    # The planted dissimilarity is larger than the linear map's (checked in the next test too).
    assert analysis.dissimilarity > 0.1


def test_linear_map_has_no_fork_and_no_detours(linear_case, detour_case):
    sim, analysis, to_planted, _ = linear_case
    assert not analysis.forking
    assert analysis.detour_states == []
    assert analysis.training_map.initial_states == [int(np.flatnonzero(to_planted == 0)[0])]
    assert analysis.dissimilarity < detour_case[1].dissimilarity


def test_baselines_table_shape_and_sensible_choices(detour_case):
    sim, analysis, *_ = detour_case
    models = [b.model for b in analysis.baselines]
    assert models == ["k-means", "HMM-1"]
    for b in analysis.baselines:
        assert b.curve["n_components"].tolist() == list(range(1, 8))
        assert b.best_bic == pytest.approx(b.curve["bic"].min())
        assert b.best_n_components == int(b.curve.loc[b.curve["bic"].idxmin(), "n_components"])
    kmeans, hmm1 = analysis.baselines
    # Five well-separated planted clusters: k-means needs at least that many; HMM-1 more than one.
    assert kmeans.best_n_components >= sim.n_states
    assert hmm1.best_n_components >= 2


def test_analysis_json_round_trip(detour_case):
    import json

    analysis = detour_case[1]
    text = json.dumps(analysis.to_dict(), allow_nan=False)
    back = Analysis.from_dict(json.loads(text))
    assert back.table1["forking"] == analysis.table1["forking"]
    assert back.detour_states == analysis.detour_states
    np.testing.assert_allclose(back.occupancy.to_numpy(), analysis.occupancy.to_numpy())
    assert back.regression.r_squared == pytest.approx(analysis.regression.r_squared)
    assert [b.best_n_components for b in back.baselines] == [b.best_n_components for b in analysis.baselines]
    assert back.to_dict() == analysis.to_dict()
