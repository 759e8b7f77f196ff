"""Training-map construction on hand-built decoded runs."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.analysis.importance import posterior_gradient
from bayes_trainmap.analysis.training_map import TrainingMap, build_training_map, format_change


def _model():
    means = np.array([[0.0, 0.0, 0.0], [2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])
    covars = np.array([[1.0, 0.5, 2.0], [0.5, 1.0, 1.0], [2.0, 1.0, 0.3]])
    trans = np.array([[0.8, 0.15, 0.05], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    full = np.stack([np.diag(c) for c in covars])
    return SimpleNamespace(
        means=means, covars=covars, covariance_type="diag", full_covars=lambda: full, trans_mat=trans,
        feature_names=["l2", "l1", "trace"], n_states=3,
    )


def test_edges_states_and_labels():
    params = _model()
    rng = np.random.default_rng(0)
    # run a: 0 0 1 1 2 ; run b: 0 2 2 ; run c: 0 0 1 1 1 (ends in 1)
    paths = np.array([0, 0, 1, 1, 2, 0, 2, 2, 0, 0, 1, 1, 1])
    lengths = np.array([5, 3, 5])
    Z = rng.normal(size=(13, 3))
    filtered = rng.dirichlet(np.ones(3), size=13)
    conv = pd.Series({"a": 100.0, "b": 50.0, "c": np.nan})
    tmap = build_training_map(params, Z, lengths, paths, filtered, ["a", "b", "c"], conv)

    edges = tmap.edges.set_index(["source", "target"])
    assert sorted(edges.index) == [(0, 1), (0, 2), (1, 2)]
    assert edges.loc[(0, 1), "n_runs"] == 2 and edges.loc[(0, 1), "runs"] == ["a", "c"]
    # Runs a and c use 0->1 but c never converged: the mean is over a only, SD undefined.
    assert edges.loc[(0, 1), "conv_mean"] == 100.0 and np.isnan(edges.loc[(0, 1), "conv_sd"])
    assert edges.loc[(0, 2), "conv_mean"] == 50.0 and edges.loc[(0, 2), "trans_prob"] == 0.05

    # Label of 0->1: |gradient for state 1| at the first checkpoint in 1 after each use (t=2 and t=10), averaged.
    grad = posterior_gradient(params, Z, filtered)
    imp = (np.abs(grad[2, 1]) + np.abs(grad[10, 1])) / 2
    order = np.argsort(-imp)
    assert edges.loc[(0, 1), "top_features"] == [params.feature_names[i] for i in order]
    np.testing.assert_allclose(edges.loc[(0, 1), "importance"], imp[order])
    delta = params.means[1] - params.means[0]
    np.testing.assert_allclose(edges.loc[(0, 1), "mean_change"], delta[order])
    assert edges.loc[(0, 1), "label"].startswith(format_change(params.feature_names[order[0]], delta[order[0]]))

    states = tmap.states.set_index("state")
    np.testing.assert_allclose(states["occupancy"], [5 / 13, 5 / 13, 3 / 13])
    assert states.loc[1, "n_runs"] == 2 and states.loc[2, "runs"] == ["a", "b"]
    assert states.loc[1, "mean_dwell"] == pytest.approx(2.5)
    assert tmap.initial_states == [0] and tmap.final_states == [1, 2]
    assert bool(states.loc[1, "is_final"]) and not bool(states.loc[1, "is_initial"])

    back = TrainingMap.from_dict(tmap.to_dict())
    assert back.edges[["source", "target", "n_runs"]].equals(tmap.edges[["source", "target", "n_runs"]])
    assert back.initial_states == [0] and back.edges["label"].tolist() == tmap.edges["label"].tolist()


def test_transitions_never_cross_run_boundaries():
    params = _model()
    paths = np.array([0, 1, 2, 0])  # run 1 ends in 2, run 2 starts in 0: no 2->0 edge
    tmap = build_training_map(params, np.zeros((4, 3)), np.array([3, 1]), paths, np.full((4, 3), 1 / 3), ["a", "b"])
    assert list(zip(tmap.edges["source"], tmap.edges["target"])) == [(0, 1), (1, 2)]


def test_format_change_matches_paper_notation():
    assert format_change("l2", -0.594) == "L2 ↓ 0.59"
    assert format_change("spectral", 1.2) == "lambda_max ↑ 1.20"


def test_shape_errors():
    params = _model()
    with pytest.raises(ValueError, match="inconsistent"):
        build_training_map(params, np.zeros((4, 3)), np.array([3]), np.zeros(4, int), np.full((4, 3), 1 / 3), ["a"])
