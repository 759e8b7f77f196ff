"""Trajectory dissimilarity on hand examples and the forking flag on paths and forks."""

import itertools

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.analysis.dissimilarity import is_forking, pairwise_wasserstein, trajectory_dissimilarity


def test_zero_one_metric_is_total_variation():
    occ = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])
    dist = pairwise_wasserstein(occ)
    tv = 0.5 * np.abs(occ[:, None, :] - occ[None, :, :]).sum(-1)
    np.testing.assert_allclose(dist, tv, atol=1e-12)
    # Equation 1: mean over the 3 distinct pairs (1.0, 0.5, 0.5).
    assert trajectory_dissimilarity(occ) == pytest.approx((1.0 + 0.5 + 0.5) / 3)


def test_means_metric_matches_one_dimensional_cdf_formula():
    means = np.array([[0.0], [1.0], [3.0]])
    rng = np.random.default_rng(0)
    occ = rng.dirichlet(np.ones(3), size=4)
    order = np.argsort(means[:, 0])
    gaps = np.diff(means[order, 0])
    cdf = np.cumsum(occ[:, order], axis=1)[:, :-1]
    expected = np.abs(cdf[:, None, :] - cdf[None, :, :]) @ gaps  # W1 = integral |F - G|
    np.testing.assert_allclose(pairwise_wasserstein(occ, "means", means), expected, atol=1e-10)
    assert trajectory_dissimilarity(occ, "means", means) == pytest.approx(expected[np.tril_indices(4, -1)].mean())


def test_invariant_to_state_relabelling():
    rng = np.random.default_rng(2)
    occ = rng.dirichlet(np.ones(4), size=6)
    means = rng.normal(size=(4, 3))
    perm = np.array([2, 0, 3, 1])
    for ground in ("zero_one", "means"):
        a = trajectory_dissimilarity(occ, ground, means)
        b = trajectory_dissimilarity(occ[:, perm], ground, means[perm])
        assert a == pytest.approx(b, abs=1e-12)


def test_identical_runs_have_zero_dissimilarity_and_errors():
    assert trajectory_dissimilarity(np.tile([0.2, 0.8], (5, 1))) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        trajectory_dissimilarity(np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="means"):
        trajectory_dissimilarity(np.eye(2), "means")
    with pytest.raises(ValueError, match="ground"):
        trajectory_dissimilarity(np.eye(2), "euclid")


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_labelling_of_a_path_is_linear(order):
    edges = [(order[i], order[i + 1]) for i in range(3)]
    assert not is_forking(edges, 4)
    # Self-loops are ignored.
    assert not is_forking(edges + [(order[0], order[0])], 4)


@pytest.mark.parametrize(
    "edges, visited",
    [
        ([(0, 1), (0, 2)], None),  # fork
        ([(0, 1), (1, 3), (0, 2), (2, 3)], None),  # fork that rejoins (detour)
        ([(0, 1), (1, 0)], None),  # cycle
        ([(0, 1), (2, 3)], None),  # two separate paths
        ([(0, 2), (1, 2)], None),  # two starts merging
        ([(0, 1), (1, 2)], [0, 1, 2, 3]),  # a visited state off the path
    ],
)
def test_forks_cycles_and_disconnected_maps_are_forking(edges, visited):
    assert is_forking(edges, 4, visited_states=visited)


def test_single_state_and_dataframe_input():
    assert not is_forking([], 1, visited_states=[0])
    frame = pd.DataFrame({"source": [0, 1, 1], "target": [1, 2, 3]})
    assert is_forking(frame, 4)
    with pytest.raises(ValueError, match="outside"):
        is_forking([(0, 5)], 3)
