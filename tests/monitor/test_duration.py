"""The explicit-duration (semi-Markov) convergence forecast: counts, filter, exact forecast."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_trainmap.inference.params import HMMParams
from bayes_trainmap.monitor.duration import (
    DurationFilter,
    DurationModel,
    duration_counts,
    estimate_duration_model,
    forecast_with_durations,
    jump_matrix,
)
from bayes_trainmap.monitor.forecast import forecast_convergence
from bayes_trainmap.monitor.streaming import StreamingFilter


def test_duration_counts_by_hand():
    #        run 0: 0 0 1 1 2 (crosses at 3)     run 1: 0 0 0 (never)
    paths = np.array([0, 0, 1, 1, 2, 0, 0, 0])
    lengths = np.array([5, 3])
    counts = duration_counts(paths, lengths, np.array([3, -1]), 3, max_duration=2)
    # durations (capped at 1): run 0: 0 1 0 1 0; run 1: 0 1 1
    # leave at risk: every checkpoint with a next one; exits after (0,1) and (1,1)
    np.testing.assert_array_equal(counts.leave_at_risk, [[1 + 1, 1 + 1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(counts.leave_events, [[0, 1], [0, 1], [0, 0]])
    # crossing at risk: t = 1..3 of run 0 -> (0,1), (1,0), (1,1); t = 1..2 of run 1 -> (0,1), (0,1)
    np.testing.assert_array_equal(counts.cross_at_risk, [[0, 3], [1, 1], [0, 0]])
    np.testing.assert_array_equal(counts.cross_events, [[0, 0], [0, 1], [0, 0]])
    model = estimate_duration_model(paths, lengths, np.array([3, -1]), np.full((3, 3), 1 / 3), np.ones(3) / 3,
                                    [0], 2, prior_weight=1.0)
    # state 0 leaves once in 4 checkpoints at risk: (1 + 1/4) / (2 + 1) at d = 1, (0 + 1/4) / 3 at d = 0
    np.testing.assert_allclose(model.leave[0], [0.25 / 3, 1.25 / 3])
    np.testing.assert_allclose(model.hazard[1], [(0 + 0.5) / 2, (1 + 0.5) / 2])
    assert model.leave[2].tolist() == [pytest.approx(2 / 3)] * 2  # never visited: 1 - A_kk


def _memoryless(trans, hazard, D):
    """The duration model that is the memoryless chain of forecast_convergence."""
    K = trans.shape[0]
    leave = np.repeat((1.0 - np.diag(trans))[:, None], D, axis=1)
    return DurationModel(start=np.ones(K) / K, jump=jump_matrix(trans)[None], leave=leave,
                         hazard=np.repeat(hazard[:, None], D, axis=1), stuck=[K - 1])


def test_constant_hazards_are_the_memoryless_chain():
    rng = np.random.default_rng(4)
    K, D, H = 4, 6, 50
    trans = rng.dirichlet(np.ones(K), size=K) + 3 * np.eye(K)
    trans /= trans.sum(1, keepdims=True)
    hazard = np.array([0.0, 0.1, 0.3, 0.0])
    model = _memoryless(trans, hazard, D)
    joint = rng.dirichlet(np.ones(K * D)).reshape(K, D)
    ours = forecast_with_durations(joint, model, H)
    chain = forecast_convergence(joint.sum(1), trans, hazard, H, [K - 1], condition_on_survival=False)
    np.testing.assert_allclose(ours.pmf, chain.pmf, rtol=0, atol=1e-13)
    assert ours.p_stuck == pytest.approx(chain.p_stuck, abs=1e-13)
    assert (ours.median, ours.interval) == (chain.median, chain.interval)


def test_duration_filter_with_constant_hazards_is_the_hmm_filter():
    rng = np.random.default_rng(5)
    K, d = 3, 2
    trans = np.array([[0.9, 0.1, 0.0], [0.05, 0.8, 0.15], [0.0, 0.0, 1.0]])
    params = HMMParams(np.array([0.7, 0.3, 0.0]), trans, rng.normal(size=(K, d)) * 2, np.stack([np.eye(d)] * K))
    model = DurationModel(start=params.start_prob, jump=jump_matrix(trans)[None],
                          leave=np.repeat((1 - np.diag(trans))[:, None], 5, axis=1), hazard=np.zeros((K, 5)),
                          stuck=[])
    hmm, semi = StreamingFilter(params), DurationFilter(model)
    for z in rng.normal(size=(20, d)):
        log_b = hmm.log_emission(z)
        np.testing.assert_allclose(semi.update(log_b).sum(1), hmm.update_log_emission(log_b), atol=1e-12)


def _simulate_semi_markov(model, start_state, start_duration, horizon, n, rng):
    """Monte Carlo that draws whole stays: the remaining dwell from the leave hazards, then the next state."""
    K, D = model.leave.shape
    remaining = np.zeros(n, dtype=np.int64)
    final = np.zeros(n, dtype=np.int64)
    for i in range(n):
        k, d, t = start_state, start_duration, 0
        while t < horizon and remaining[i] == 0:
            stay = 0  # checkpoints until the stay ends, drawn from the leave hazards
            while stay < horizon - t and rng.random() >= model.leave[k, min(d + stay, D - 1)]:
                stay += 1
            for extra in range(stay):  # the stay's later checkpoints, each at risk of crossing
                t += 1
                if t > horizon:
                    break
                if rng.random() < model.hazard[k, min(d + extra + 1, D - 1)]:
                    remaining[i] = t
                    break
            if remaining[i] or t >= horizon:
                break
            k, d = rng.choice(K, p=model.jump[0, k]), 0
            t += 1
            if rng.random() < model.hazard[k, 0]:
                remaining[i] = t
        final[i] = k
    return remaining, final


def test_forecast_equals_monte_carlo_of_the_semi_markov_process():
    rng = np.random.default_rng(11)
    K, D, H, n = 3, 8, 25, 10_000
    # non-geometric stays: state 0 leaves after about 4 checkpoints, state 1 after about 2
    leave = np.array([[0.0, 0.0, 0.1, 0.7, 0.9, 0.9, 0.9, 0.9],
                      [0.0, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
                      [0.0] * D])
    hazard = np.zeros((K, D))
    hazard[1] = [0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # converges as it enters state 1, if at all
    hazard[2, 3:] = 0.05
    jump = np.array([[0.0, 0.6, 0.4], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]])[None]
    model = DurationModel(start=np.array([1.0, 0.0, 0.0]), jump=jump, leave=leave, hazard=hazard, stuck=[2])
    joint = np.zeros((K, D))
    joint[0, 1] = 1.0  # in state 0 for one checkpoint already
    ours = forecast_with_durations(joint, model, H)
    remaining, final = _simulate_semi_markov(model, 0, 1, H, n, rng)
    pmf = np.bincount(remaining, minlength=H + 1)[1:] / n
    se = np.sqrt(ours.pmf * (1 - ours.pmf) / n)
    assert np.all(np.abs(ours.pmf - pmf) < 5 * se + 2e-3)
    p_stuck = np.mean((remaining == 0) & (final == 2))
    assert abs(ours.p_stuck - p_stuck) < 5 * np.sqrt(p_stuck * (1 - p_stuck) / n) + 2e-3
    # the durations matter: state 0 cannot be left after 2 checkpoints, so nothing converges at r = 1
    assert ours.pmf[0] == 0.0 and pmf[0] == 0.0 and ours.pmf[1] > 0.02


def test_forecast_mixes_over_jump_draws():
    rng = np.random.default_rng(2)
    K, D = 3, 4
    draws = jump_matrix(rng.dirichlet(np.ones(K), size=(6, K)))
    base = {"start": np.ones(K) / K, "leave": np.full((K, D), 0.3), "hazard": np.full((K, D), 0.05), "stuck": [0]}
    joint = rng.dirichlet(np.ones(K * D)).reshape(K, D)
    mixed = forecast_with_durations(joint, DurationModel(jump=draws, **base), 30)
    each = [forecast_with_durations(joint, DurationModel(jump=j[None], **base), 30) for j in draws]
    np.testing.assert_allclose(mixed.pmf, np.mean([f.pmf for f in each], 0), atol=1e-15)
    assert mixed.p_stuck == pytest.approx(np.mean([f.p_stuck for f in each]), abs=1e-15)
