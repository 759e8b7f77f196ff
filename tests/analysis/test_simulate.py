"""The planted-structure generator: determinism, planted convergence and detours."""

import numpy as np
import pytest

from bayes_trainmap.analysis.convergence import convergence_steps
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.data.simulate import simulate_training_runs


def test_deterministic_and_well_formed():
    a = simulate_training_runs(12, random_state=3)
    b = simulate_training_runs(12, random_state=3)
    c = simulate_training_runs(12, random_state=4)
    assert a.frame.equals(b.frame) and not a.frame.equals(c.frame)
    assert list(a.feature_names) == list(STATISTIC_NAMES)
    assert a.frame.shape[0] == a.lengths.sum() == a.true_paths.size
    ts = a.trajectories
    assert ts.run_ids == a.run_ids and np.array_equal(ts.lengths, a.lengths)
    assert a.true_params.n_states == a.n_states == 5


def test_planted_convergence_and_detour_delay():
    sim = simulate_training_runs(60, delay=50, detour_prob=0.5, random_state=0)
    conv = convergence_steps(sim.frame, "eval_accuracy", sim.planted["threshold"])
    np.testing.assert_array_equal(conv.steps.to_numpy(), sim.convergence_steps)
    detour = sim.planted["detour_state"]
    offsets = np.concatenate([[0], np.cumsum(sim.lengths)])
    visits = np.array([np.any(sim.true_paths[offsets[i] : offsets[i + 1]] == detour) for i in range(60)])
    np.testing.assert_array_equal(visits, sim.visits_detour)
    assert 0 < visits.sum() < 60
    # Detour runs converge later by about `delay` checkpoints (x step_interval).
    gap = sim.convergence_steps[visits].mean() - sim.convergence_steps[~visits].mean()
    assert gap == pytest.approx(50 * 10, rel=0.25)


def test_linear_variant_and_ragged_lengths():
    sim = simulate_training_runs(10, detour=False, ragged=True, n_features=5, random_state=1)
    assert sim.detour_states == [] and sim.n_states == 4 and not sim.visits_detour.any()
    assert sim.frame.shape[1] == 3 + 5 + 3 and len(set(sim.lengths.tolist())) > 1
    assert np.all(np.isfinite(sim.convergence_steps))


def test_exact_hmm_samples_option_and_errors():
    sim = simulate_training_runs(5, dwell="geometric", smoothing=1.0, random_state=2)
    trans = sim.planted["trans_mat"]
    p = sim.true_paths
    same_run = np.repeat(np.arange(5), sim.lengths)
    steps = (same_run[1:] == same_run[:-1])
    assert np.all(trans[p[:-1][steps], p[1:][steps]] > 0)  # every planted move has positive probability
    with pytest.raises(ValueError, match="n_features"):
        simulate_training_runs(5, n_features=15)
    with pytest.raises(ValueError, match="too short"):
        simulate_training_runs(5, n_checkpoints=50)


def test_smooth_drift_is_the_planted_relaxation():
    # Noise-free features follow m_t = m_{t-1} + a (mu_{s_t} - m_{t-1}) from m_0 = mu_{s_0}, per run.
    a = 0.3
    sim = simulate_training_runs(3, noise=0.0, smoothing=a, random_state=5)
    p = sim.planted
    latent = (sim.feature_matrix() - p["feature_offsets"]) / p["feature_scales"]
    start = 0
    for length in sim.lengths:
        target = p["latent_means"][sim.true_paths[start : start + length]]
        m = target[0].copy()
        expected = [m.copy()]
        for t in range(1, length):
            m = m + a * (target[t] - m)
            expected.append(m.copy())
        np.testing.assert_allclose(latent[start : start + length], np.array(expected), atol=1e-9)
        start += length
