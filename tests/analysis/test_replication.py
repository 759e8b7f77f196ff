"""Split-half scoring: coverage and width ratios against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.fitting.replication import IntervalDraws, score_split, split_half
from bayes_trainmap.fitting.robustness import MapQuantities


def _quantities(edge_runs, trans, means, coefs, r2, detour, n_runs=10):
    K = len(coefs)
    return MapQuantities(
        n_runs=n_runs, edge_runs=np.asarray(edge_runs), trans_mat=np.asarray(trans, dtype=float),
        means=np.asarray(means, dtype=float), occupancy=np.full(K, 1 / K), position=np.linspace(0, 1, K),
        coefficients=np.asarray(coefs, dtype=float), r_squared=r2, detour=np.asarray(detour), forking=False,
    )


def test_score_split_counts_what_lies_inside():
    # Draws 0, 1, ..., 100 of every quantity: the 90% interval is [5, 95].
    S, K = 101, 2
    ramp = np.arange(S, dtype=float)
    draws = IntervalDraws(
        edge_fraction=np.tile(ramp[:, None, None], (1, K, K)) / 100,
        trans_prob=np.tile(ramp[:, None, None], (1, K, K)) / 100,
        means=np.tile(ramp[:, None, None], (1, K, 1)),
        coefficients=np.tile(ramp[:, None], (1, K)),
        r_squared=ramp / 100,
        detour=np.column_stack([ramp < 97, ramp < 50]),  # P(detour) 0.96 and 0.50
        label="ramp",
    )
    half = IntervalDraws(
        draws.edge_fraction, draws.trans_prob, draws.means / 2, draws.coefficients, draws.r_squared,
        draws.detour, "narrow",
    )
    ref_a = _quantities([[0, 3], [0, 0]], [[0.9, 0.1], [0, 1]], [[1.0], [2.0]], [1.0, np.nan], 0.5, [True, False])
    q_b = _quantities(
        [[0, 5], [1, 0]], [[0.5, 0.97], [0, 1]], [[50.0], [99.0]], [40.0, 3.0], 0.99, [False, True]
    )
    scored = score_split(draws, half, ref_a, q_b, level=0.9)
    # Edges of A's or B's map: 0 -> 1 (B: 0.5, inside) and 1 -> 0 (B: 0.1, inside).
    np.testing.assert_array_equal(scored["edge_fraction"]["covered"], [True, True])
    # A's map edge 0 -> 1 only: B's 0.97 is outside [0.05, 0.95].
    np.testing.assert_array_equal(scored["trans_prob"]["covered"], [False])
    np.testing.assert_array_equal(scored["means"]["covered"], [True, False])
    np.testing.assert_allclose(scored["means"]["width_ratio"], [2.0, 2.0])
    # Coefficient of state 1 is not estimable on A: not scored.
    np.testing.assert_array_equal(scored["coefficients"]["covered"], [True])
    np.testing.assert_array_equal(scored["r_squared"]["covered"], [False])
    # P = 0.96 excludes "no detour" from the 90% set; P = 0.5 keeps both answers.
    np.testing.assert_array_equal(scored["detour"]["covered"], [False, True])


def test_split_half_on_planted_data_predictive_beats_percentile():
    sim = simulate_training_runs(12, n_checkpoints=200, n_features=3, random_state=2)
    planted = sim.planted
    Z = (sim.feature_matrix() - planted["feature_offsets"]) / planted["feature_scales"]
    covered = {"bootstrap": [], "bootstrap predictive": []}
    ratios = []
    for seed in range(3):
        scored = split_half(
            Z, sim.lengths, sim.convergence_steps, sim.n_states, seed=seed, methods={}, n_bags=12, restarts=1,
            covariance="diag",
        )
        assert set(scored) == {"bootstrap", "bootstrap predictive"}
        for name, pooled in covered.items():
            pooled.extend(scored[name]["means"]["covered"])
        ratios.extend(scored["bootstrap predictive"]["means"]["width_ratio"])
    # The other half's estimate differs from this half's by two estimation errors, so the
    # percentile interval of this half's estimate under-covers and the predictive one
    # (about sqrt(2) wider) covers more.
    assert np.mean(covered["bootstrap predictive"]) > np.mean(covered["bootstrap"])
    assert 1.2 < np.median(ratios) < 1.7
    with pytest.raises(BayesTrainmapError, match="at least 4 runs"):
        split_half(Z[: sim.lengths[:3].sum()], sim.lengths[:3], sim.convergence_steps[:3], 2, seed=0, methods={})
