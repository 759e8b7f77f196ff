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


def test_zero_one_closed_form_equals_exact_transport_solved_by_pot():
    """The closed form against POT's exact solver, with the 0/1 cost matrix, on
    dense and sparse random occupancies (zeros as in real bag-of-states rows)."""
    import ot

    rng = np.random.default_rng(11)
    occ = rng.dirichlet(np.full(5, 0.3), size=15)
    occ[rng.random(occ.shape) < 0.3] = 0.0
    occ[:, 0] += occ.sum(1) == 0
    occ /= occ.sum(1, keepdims=True)
    cost = 1.0 - np.eye(5)
    pot = np.array([[ot.emd2(p, q, cost) for q in occ] for p in occ])
    dist = pairwise_wasserstein(occ)
    np.testing.assert_allclose(dist, pot, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dist, dist.T)
    np.testing.assert_array_equal(np.diag(dist), 0.0)


def test_zero_one_dissimilarity_of_300_runs_is_one_vectorised_pass():
    # 300 runs (44,850 pairs) took ~49 s with one transport problem per pair; the
    # closed form must agree with the per-pair formula on a sample of pairs.
    rng = np.random.default_rng(12)
    occ = rng.dirichlet(np.ones(8), size=300)
    dist = pairwise_wasserstein(occ)
    i, j = rng.integers(300, size=(2, 50))
    np.testing.assert_allclose(dist[i, j], 0.5 * np.abs(occ[i] - occ[j]).sum(1), atol=1e-15)
    assert trajectory_dissimilarity(occ) == pytest.approx(dist[np.tril_indices(300, -1)].mean(), rel=1e-12)


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


def _forking_of(runs, n_states):
    from bayes_trainmap.analysis.dissimilarity import structural_edges

    paths = np.concatenate([np.asarray(r) for r in runs])
    edges, states = structural_edges(paths, np.array([len(r) for r in runs]))
    return is_forking(edges, n_states, visited_states=states), edges, states


def test_one_checkpoint_flicker_of_one_run_does_not_flip_the_forking_flag():
    linear = [[0, 0, 0, 1, 1, 1, 2, 2]] * 4
    assert _forking_of(linear, 4)[0] is False
    # One run wavers for a single checkpoint back to 0, another into the unused state 3.
    flicker = linear[:2] + [[0, 0, 0, 1, 0, 1, 2, 2], [0, 0, 0, 1, 1, 3, 1, 2]]
    forking, edges, states = _forking_of(flicker, 4)
    assert forking is False
    assert edges == [(0, 1), (1, 2)] and states == [0, 1, 2]
    # The raw edges of the same paths do fork (1 -> 0 back edge, 1 -> 3 branch).
    raw = {(a, b) for r in flicker for a, b in zip(r[:-1], r[1:]) if a != b}
    assert is_forking(sorted(raw), 4)


@pytest.mark.parametrize(
    "runs",
    [
        [[0, 0, 1, 1, 2, 2], [0, 0, 3, 3, 2, 2]],  # a two-checkpoint detour through 3
        [[0, 0, 1, 1, 2, 2], [0, 0, 3, 2, 2, 2]],  # one checkpoint in 3 but no return to 0: a real route
        [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 0, 0]],  # a return that lasts
        [[0, 0, 1, 1], [1, 1, 0, 0]],  # opposite directions
    ],
)
def test_real_branches_still_fork(runs):
    assert _forking_of(runs, 4)[0] is True


def test_flicker_rule_at_the_ends_and_across_run_boundaries():
    # A one-checkpoint first or last stay is no flicker (no state on both sides).
    assert _forking_of([[3, 1, 1], [0, 0, 1, 1]], 4)[0] is True
    assert _forking_of([[0, 0, 1, 1, 3], [0, 0, 1, 1, 2]], 4)[0] is True
    # Two runs [0, 1] and [0, ...] concatenated do not form a flicker 0, 1, 0.
    forking, edges, _ = _forking_of([[0, 0, 1], [0, 1, 1]], 2)
    assert edges == [(0, 1)] and forking is False
    # Alternating single checkpoints collapse to the state around them.
    assert _forking_of([[0, 0, 1, 0, 1, 0, 2, 2]], 3)[1] == [(0, 2)]
