"""Decoding new runs, the streaming filter, online normalisation, the forecast and ``watch``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.cli import main
from bayes_trainmap.core.runlog import RunLogWriter
from bayes_trainmap.data import zscore_per_run
from bayes_trainmap.data.fitdir import load_fit_dir
from bayes_trainmap.fitting import pipeline
from bayes_trainmap.inference.forward_backward import filtered_posteriors
from bayes_trainmap.inference.params import HMMParams
from bayes_trainmap.monitor.forecast import (
    estimate_hazards,
    first_crossing_index,
    forecast_convergence,
    stuck_states,
)
from bayes_trainmap.monitor.model import load_map_model
from bayes_trainmap.monitor.normalize import (
    PrefixNormalizer,
    normalize_online,
    reference_from_fit,
)
from bayes_trainmap.monitor.streaming import StreamingFilter


@pytest.fixture(scope="module")
def fit_dir(planted_set, tmp_path_factory):
    result = pipeline.fit(planted_set, states=3, n_restarts=1, progress=False, window=40)
    return load_fit_dir(result.save(tmp_path_factory.mktemp("fit") / "fit", report=False))


def _log_emission(params, Z):
    from bayes_trainmap.inference.emissions import gaussian_log_likelihood

    return gaussian_log_likelihood(Z, params.means, params.covars, params.covariance_type)


# ---------------------------------------------------------------------------- decode
def test_decode_on_the_fitted_runs_reproduces_decoded_parquet(fit_dir, planted_set):
    result = fit_dir.decode(planted_set)
    saved = fit_dir.decoded
    frame = result.checkpoints
    assert frame["run"].tolist() == saved["run"].tolist() and frame["step"].tolist() == saved["step"].tolist()
    np.testing.assert_array_equal(result.states, saved["state"].to_numpy())
    # filtered/smoothed probabilities against hmmlearn on the saved z-scores
    from hmmlearn.hmm import GaussianHMM as ReferenceHMM

    p = fit_dir.params
    ref = ReferenceHMM(n_components=p.n_states, covariance_type=p.covariance_type)
    ref.n_features, ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = (
        p.n_features, p.start_prob, p.trans_mat, p.means, p.covars)
    runs = fit_dir.fitted_runs()
    Z, lengths = runs.Z, runs.lengths
    smoothed = frame[[f"smoothed_{k}" for k in range(p.n_states)]].to_numpy()
    np.testing.assert_allclose(smoothed, ref.predict_proba(Z, lengths), atol=1e-8)
    # every transition of the fitted runs is an edge of their own map
    assert result.edges["seen"].all() and not frame["new_edge"].any()


def test_decode_flags_edges_the_map_never_saw(fit_dir, planted_set):
    from bayes_trainmap.monitor.decode import decode_runs

    model = load_map_model(fit_dir)
    saved = fit_dir.decoded
    states, runs = saved["state"].to_numpy(), saved["run"].to_numpy()
    taken = [(int(a), int(b)) for a, b, r, q in zip(states[:-1], states[1:], runs[:-1], runs[1:]) if a != b and r == q]
    assert model.seen_edges == set(taken)
    hidden = taken[0]
    model.seen_edges = model.seen_edges - {hidden}  # pretend the fitted runs never took this edge
    result = decode_runs(model, planted_set)
    assert (~result.edges["seen"]).sum() == taken.count(hidden)
    flagged = result.edges.loc[~result.edges["seen"], ["source", "target"]].drop_duplicates()
    assert [tuple(map(int, row)) for row in flagged.to_numpy()] == [hidden]
    assert result.checkpoints["new_edge"].sum() == taken.count(hidden)
    new_rows = result.checkpoints[result.checkpoints["new_edge"]]
    assert (new_rows["state"] == hidden[1]).all()


def test_decode_cli_writes_the_table_and_refuses_a_bad_out(fit_dir, planted_set, tmp_path, capsys):
    from bayes_trainmap.data import save_trajectories

    save_trajectories(planted_set.subset(["run_03"]), tmp_path / "new")
    assert main(["decode", str(fit_dir.path), "--data", str(tmp_path / "new"), "--out", str(tmp_path / "d.csv")]) == 0
    table = pd.read_csv(tmp_path / "d.csv")
    assert table["state"].tolist() == fit_dir.decoded.query("run == 'run_03'")["state"].tolist()
    assert "run_03: " in capsys.readouterr().out
    assert main(["decode", str(fit_dir.path), "--data", str(tmp_path / "new"), "--out", str(tmp_path / "d.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out must end in .parquet or .csv")


# ------------------------------------------------------------------ streaming filter
def test_streaming_filter_equals_offline_filtered_posteriors(fit_dir):
    params = fit_dir.params
    runs = fit_dir.fitted_runs()
    Z, lengths = runs.Z, runs.lengths
    log_b = _log_emission(params, Z)
    with np.errstate(divide="ignore"):
        offline = filtered_posteriors(log_b, np.log(params.start_prob), np.log(params.trans_mat), lengths)
    start = 0
    for length in lengths:
        filt = StreamingFilter(params)
        online = np.array([filt.update(z) for z in Z[start : start + length]])
        np.testing.assert_allclose(online, offline[start : start + length], rtol=0, atol=1e-12)
        start += length


def test_streaming_filter_with_structural_zeros_matches_brute_force():
    rng = np.random.default_rng(3)
    K, d, T = 3, 2, 12
    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    params = HMMParams(np.array([1.0, 0.0, 0.0]), trans, rng.normal(size=(K, d)) * 3, np.stack([np.eye(d)] * K))
    Z = rng.normal(size=(T, d))
    b = np.exp(_log_emission(params, Z))
    # brute force: sum over all K^T paths of the joint, marginal at each t
    import itertools

    filt = StreamingFilter(params)
    for t in range(1, 7):
        probs = np.zeros(K)
        for path in itertools.product(range(K), repeat=t):
            w = params.start_prob[path[0]] * b[0, path[0]]
            for s in range(1, t):
                w *= trans[path[s - 1], path[s]] * b[s, path[s]]
            probs[path[-1]] += w
        np.testing.assert_allclose(filt.update(Z[t - 1]), probs / probs.sum(), rtol=1e-12, atol=1e-15)


# -------------------------------------------------------------- online normalisation
def test_prefix_normalizer_matches_brute_force_and_offline_after_the_window():
    rng = np.random.default_rng(1)
    X = rng.normal(5, 2, size=(25, 3))
    norm = PrefixNormalizer(window=10)
    Z = np.array([norm(x) for x in X])
    assert np.all(Z[0] == 0)  # one checkpoint has no spread
    for t in range(1, 10):
        head = X[: t + 1]
        np.testing.assert_allclose(Z[t], (X[t] - head.mean(0)) / head.std(0), rtol=1e-12)
    np.testing.assert_allclose(Z[9:], zscore_per_run(X, np.array([25]), window=10)[0][9:], rtol=1e-12, atol=1e-12)


def test_blend_shrinks_the_prefix_towards_the_reference(fit_dir, planted_set):
    from bayes_trainmap.monitor.normalize import BLEND_PRIOR_WEIGHT

    ref = reference_from_fit(fit_dir)
    X, lengths = planted_set.subset(["run_02"]).feature_matrix(ref.features)
    Z = normalize_online(X, lengths, "blend", ref)
    n0 = BLEND_PRIOR_WEIGHT
    for t in (1, 5, 39, 59):
        head = X[: min(t, ref.window) + 1] if t < ref.window else X[: ref.window]
        m = len(head)
        mean = (n0 * ref.mean + m * head.mean(0)) / (n0 + m)
        std = np.sqrt((n0 * ref.std**2 + m * head.var(0)) / (n0 + m))
        np.testing.assert_allclose(Z[t], (X[t] - mean) / std, rtol=1e-12)


def test_reference_pools_the_training_runs_windows(fit_dir, planted_set):
    ref = reference_from_fit(fit_dir)
    train = fit_dir.resolved["split"]["train"]
    heads = [planted_set.subset([r]).feature_matrix(ref.features)[0][:40] for r in train]
    pooled = np.vstack(heads)
    np.testing.assert_allclose(ref.mean, pooled.mean(0), rtol=1e-10)
    within = np.vstack([h - h.mean(0) for h in heads])
    np.testing.assert_allclose(ref.std, np.sqrt((within**2).mean(0)), rtol=1e-10)
    X, lengths = planted_set.feature_matrix(ref.features)
    np.testing.assert_allclose(normalize_online(X, lengths, "reference", ref), (X - ref.mean) / ref.std)


# --------------------------------------------------------------------------- forecast
def test_hazards_and_stuck_states_by_hand():
    #          run 0: crosses at index 3      run 1: never crosses    run 2: crosses at 0 (no risk)
    paths = np.array([0, 0, 1, 1, 2, 0, 0, 0, 2, 1])
    lengths = np.array([5, 3, 2])
    acc = np.array([0.1, 0.2, 0.3, 0.95, 0.99, 0.1, 0.1, 0.1, 0.97, 0.98])
    crossing = first_crossing_index(acc, lengths, 0.9, True)
    np.testing.assert_array_equal(crossing, [3, -1, 0])
    hz = estimate_hazards(paths, lengths, crossing, 3)
    # at risk: run 0 indices 1..3 -> states 0, 1, 1; run 1 indices 1..2 -> 0, 0
    np.testing.assert_array_equal(hz.at_risk, [3, 2, 0])
    np.testing.assert_array_equal(hz.events, [0, 1, 0])
    np.testing.assert_allclose(hz.hazard, [0.0, 0.5, 0.0])
    assert stuck_states(paths, lengths, crossing, 3) == [0]  # converged runs end in 2 and 1
    # per edge: run 0 moves 0->0, 0->1, 1->1 (crossing on the last); run 1 moves 0->0 twice
    edge = estimate_hazards(paths, lengths, crossing, 3, by="edge")
    expected_risk = np.zeros((3, 3), dtype=int)
    expected_risk[0, 0], expected_risk[0, 1], expected_risk[1, 1] = 3, 1, 1
    np.testing.assert_array_equal(edge.at_risk, expected_risk)
    assert edge.events.sum() == 1 and edge.events[1, 1] == 1 and edge.hazard[1, 1] == 1.0


def _simulate(pi, trans, hazard, horizon, stuck, n, rng):
    """Monte Carlo of the absorbing chain, conditioned on survival of the current checkpoint."""
    edge = hazard.ndim == 2
    u = pi * (1 - (np.diag(hazard) if edge else hazard))
    state = rng.choice(len(pi), size=n, p=u / u.sum())
    remaining = np.zeros(n, dtype=np.int64)  # 0: not converged yet
    cum = np.cumsum(trans, axis=1)
    for r in range(1, horizon + 1):
        alive = remaining == 0
        draw = rng.random(n)
        previous = state
        state = np.where(alive, (draw[:, None] > cum[state]).sum(1), state)
        crossed = alive & (rng.random(n) < (hazard[previous, state] if edge else hazard[state]))
        remaining[crossed] = r
    pmf = np.bincount(remaining, minlength=horizon + 1)[1:] / n
    p_stuck = np.mean((remaining == 0) & np.isin(state, stuck))
    return pmf, p_stuck


@pytest.mark.parametrize("by", ["state", "edge"])
def test_forecast_equals_monte_carlo_of_the_same_chain(by):
    rng = np.random.default_rng(7)
    K, H, n = 4, 40, 200_000
    trans = rng.dirichlet(np.ones(K) * 0.5, size=K) + np.eye(K) * 2
    trans /= trans.sum(1, keepdims=True)
    hazard = np.array([0.0, 0.05, 0.2, 0.0])
    if by == "edge":
        hazard = np.outer(np.array([0.5, 1.0, 0.2, 0.0]), hazard) + np.diag([0.0, 0.0, 0.0, 0.01])
    pi = rng.dirichlet(np.ones(K))
    forecast = forecast_convergence(pi, trans, hazard, H, stuck=[3])
    pmf, p_stuck = _simulate(pi, trans, hazard, H, [3], n, rng)
    se = np.sqrt(forecast.pmf * (1 - forecast.pmf) / n)
    assert np.all(np.abs(forecast.pmf - pmf) < 5 * se + 1e-4)
    assert abs(forecast.p_stuck - p_stuck) < 5 * np.sqrt(p_stuck * (1 - p_stuck) / n) + 1e-4
    assert abs(forecast.p_converge - pmf.sum()) < 0.005
    lo, hi = forecast.interval
    cdf = np.cumsum(pmf)
    assert cdf[lo - 1] >= 0.05 - 0.005 and (lo == 1 or cdf[lo - 2] < 0.05 + 0.005)
    if hi is not None:
        assert cdf[hi - 1] >= 0.95 - 0.005


def test_forecast_mixture_over_draws_and_closed_form_limit():
    rng = np.random.default_rng(0)
    K = 3
    draws = rng.dirichlet(np.ones(K), size=(5, K))
    hazard = np.array([0.1, 0.3, 0.05])
    pi = np.array([0.2, 0.5, 0.3])
    mixed = forecast_convergence(pi, draws, hazard, 400)
    each = [forecast_convergence(pi, t, hazard, 400).pmf for t in draws]
    np.testing.assert_allclose(mixed.pmf, np.mean(each, axis=0), atol=1e-15)
    # every state has a positive hazard: the run converges surely, E[R] from the fundamental matrix
    u = pi * (1 - hazard) / (pi * (1 - hazard)).sum()
    t = draws[0]
    expected_r = u @ np.linalg.solve(np.eye(K) - t * (1 - hazard)[None, :], np.ones(K))
    single = forecast_convergence(pi, t, hazard, 400)
    assert single.p_converge == pytest.approx(1.0, abs=1e-12)
    assert single.mean_given_converge() == pytest.approx(expected_r, rel=1e-9)


# ------------------------------------------------------------------------------ watch
def test_watch_once_on_a_growing_run_dir(fit_dir, planted_set, tmp_path, capsys):
    from bayes_trainmap.monitor.online import RunMonitor

    model = load_map_model(fit_dir)
    run = planted_set.frame.query("run == 'run_05'")
    rows = run.to_dict(orient="records")
    writer = RunLogWriter(tmp_path / "run-run_05.jsonl", {"task": "planted"})
    for row in rows[:20]:
        writer.append(row)
    assert main(["watch", str(tmp_path), "--model", str(fit_dir.path), "--once"]) == 0
    text = capsys.readouterr().out
    assert all(len(line) <= 80 for line in text.splitlines())
    monitor = RunMonitor(model, "blend")  # the default of watch
    for row in rows[:20]:
        status = monitor.update(np.array([row[f] for f in model.features]), row["step"], row["eval_accuracy"])
    line = next(line for line in text.splitlines() if "run_05*" in line)
    assert f"{rows[19]['step']:,}" in line and f"{status.state} ({status.filtered[status.state]:.2f})" in line
    for row in rows[20:]:
        writer.append(row)
    writer.close()
    assert main(["watch", str(tmp_path), "--model", str(fit_dir.path), "--once"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "run_05" in line)
    assert f"{rows[-1]['step']:,}" in line
    assert "done" in line  # the planted run reaches accuracy 0.95 > 0.9


def test_map_model_reads_posterior_draws_of_the_transition_matrix(fit_dir, tmp_path):
    import shutil

    import arviz as az

    copy = tmp_path / "fit"
    shutil.copytree(fit_dir.path, copy)
    K = fit_dir.params.n_states
    draws = np.random.default_rng(2).dirichlet(np.ones(K), size=(4, K))
    az.from_dict(posterior={"trans_mat": draws[None]}).to_netcdf(str(copy / "posterior.nc"))
    model = load_map_model(copy)
    np.testing.assert_allclose(model.trans_draws, draws, rtol=1e-12)
    pi = np.full(K, 1.0 / K)
    hz = model.hazards.hazard
    mixed = forecast_convergence(pi, model.trans_for_forecast, hz, 30)
    np.testing.assert_allclose(mixed.pmf, np.mean([forecast_convergence(pi, t, hz, 30).pmf for t in draws], 0),
                               atol=1e-15)
