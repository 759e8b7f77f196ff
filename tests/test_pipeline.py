"""The fit pipeline and the fit directory."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from hmmlearn.hmm import GaussianHMM as ReferenceHMM

from bayes_trainmap.core.device import resolve_device
from bayes_trainmap.core.errors import (
    BayesTrainmapError,
    FitDirectoryError,
    ModelSelectionError,
    TrajectoryError,
)
from bayes_trainmap.data import TrajectorySet, zscore_per_run
from bayes_trainmap.data.fitdir import FIT_DIR_FORMAT, is_fit_dir, load_fit_dir
from bayes_trainmap.fitting import pipeline, steps
from bayes_trainmap.fitting.result import FitResult
from bayes_trainmap.report import render_summary


@pytest.fixture(scope="module")
def fitted(planted_set):
    return pipeline.fit(planted_set, states="1-4", n_restarts=1, progress=False, analyze=False)


def _reference_viterbi(params, Z, lengths):
    ref = ReferenceHMM(n_components=params.n_states, covariance_type=params.covariance_type)
    ref.n_features = params.n_features
    ref.startprob_, ref.transmat_ = params.start_prob, params.trans_mat
    ref.means_, ref.covars_ = params.means, params.covars
    return ref.predict(Z, lengths)


def test_fit_recovers_planted_states_and_decodes_every_run(fitted, planted_set):
    assert fitted.n_states == 3
    X, lengths = planted_set.feature_matrix()
    np.testing.assert_allclose(fitted.runs.Z, zscore_per_run(X, lengths)[0])
    np.testing.assert_array_equal(fitted.runs.paths, _reference_viterbi(fitted.params, fitted.runs.Z, lengths))
    assert fitted.params.feature_names == ["l1", "l2", "code_sparsity"]
    assert fitted.params.normalization == {"method": "zscore_per_run", "window": 1000, "ddof": 0}
    assert sorted(fitted.train_ids + fitted.val_ids) == planted_set.run_ids
    assert len(fitted.val_ids) == 2
    assert fitted.resolved["split"] == {"train": fitted.train_ids, "val": fitted.val_ids}
    # every run walks through the three planted states in order
    summary = fitted.summary()
    assert [len(r["states"]) for r in summary["runs"]] == [3] * 8
    assert len({tuple(r["states"]) for r in summary["runs"]}) == 1
    assert sum(o["fraction"] for o in summary["occupancy"]) == pytest.approx(1.0)
    for run, length in zip(summary["runs"], lengths):
        assert sum(seg[3] for seg in run["segments"]) == length


def test_render_summary_names_the_essentials(fitted):
    text = render_summary(fitted.summary())
    assert "Chosen K = 3" in text
    assert "*  3" in text  # the chosen row of the BIC table
    assert "8 run(s): " in text and "run_00 (" in text


def test_write_fit_dir_layout_and_read_back(fitted, tmp_path):
    out = fitted.save(tmp_path / "fit", report=False, cli={"states": "1-4"})
    names = {p.name for p in out.iterdir()}
    assert {"model.json", "config.json", "selection.csv", "selection_curve.csv", "zscored.parquet",
            "decoded.parquet", "zscore.json", "summary.json", "figures"} <= names
    assert (out / "figures" / "selection_curve.png").stat().st_size > 0
    assert (out / "figures" / "selection_curve.svg").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]  # no staging directory left
    fit_dir = load_fit_dir(out)
    assert fit_dir.config["format"] == FIT_DIR_FORMAT and fit_dir.config["cli"] == {"states": "1-4"}
    assert fit_dir.params.allclose(fitted.params, rtol=0)
    runs = fit_dir.fitted_runs()
    np.testing.assert_array_equal(runs.Z, fitted.runs.Z)
    np.testing.assert_array_equal(runs.lengths, fitted.runs.lengths)
    np.testing.assert_array_equal(runs.paths, fitted.runs.paths)
    np.testing.assert_array_equal(runs.split, fitted.runs.split)
    assert runs.run_ids == fitted.runs.run_ids and runs.outcomes.keys() == fitted.runs.outcomes.keys()
    decoded = fit_dir.decoded
    assert list(decoded.columns) == ["run", "step", "split", "state"]
    assert set(decoded.loc[decoded["split"] == "val", "run"]) == set(fitted.val_ids)
    assert "eval_accuracy" in fit_dir.zscored.columns
    pd.testing.assert_frame_equal(fit_dir.selection, fitted.selection.table, check_dtype=False)
    assert fit_dir.summary["n_states"] == 3
    assert json.loads((out / "zscore.json").read_text())["window"] == 1000


def test_fit_dir_is_replaced_only_if_it_is_one(fitted, tmp_path):
    out = fitted.save(tmp_path / "fit", report=False)
    fitted.save(out, report=False)  # our own fit directory: replaced
    assert is_fit_dir(out)
    (out / "notes.txt").write_text("a user's file")  # not in the manifest: never deleted
    with pytest.raises(FitDirectoryError, match="files that fit did not write .notes.txt"):
        fitted.save(out, report=False)
    assert (out / "notes.txt").read_text() == "a user's file"
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "config.json").write_text(json.dumps({"format": FIT_DIR_FORMAT}))  # no manifest: not provably ours
    with pytest.raises(FitDirectoryError, match="not a fit directory"):
        fitted.save(claims, report=False)
    assert [p.name for p in claims.iterdir()] == ["config.json"]
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(FitDirectoryError, match="not a fit directory"):
        fitted.save(other, report=False)
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    with pytest.raises(FitDirectoryError, match="not a directory"):
        fitted.save(other / "thesis.tex", report=False)


def test_failure_while_writing_leaves_nothing(fitted, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(FitResult, "_plot_selection_curve", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(tmp_path / "fit", report=False)
    assert list(tmp_path.iterdir()) == []


def test_constant_features_are_reported_and_dropped(planted_factory, caplog):
    ts = planted_factory(n_runs=5, n_checkpoints=40)
    frame = ts.frame.copy()
    frame["trace"] = 3.0  # constant in every run: dropped
    frame.loc[frame["run"] == "run_01", "l2"] = 1.5  # constant in one run: zeroed there
    with caplog.at_level("WARNING"):
        result = pipeline.fit(TrajectorySet(frame), states=2, n_restarts=1, progress=False, analyze=False)
    assert result.features == ["l1", "l2", "code_sparsity"] and result.dropped_features == ["trace"]
    assert "constant in every run" in caplog.text
    run1 = slice(40, 80)
    np.testing.assert_array_equal(result.runs.Z[run1, 1], 0.0)
    summary = result.summary()
    assert summary["constant_features"] == {"l2": ["run_01"], "trace": [f"run_0{i}" for i in range(5)]}
    assert "Left out (constant in every run): trace" in render_summary(summary)


def test_auto_states_are_capped_by_the_data(planted_factory, caplog):
    ts = planted_factory(n_runs=3, n_checkpoints=12, n_features=3)
    with caplog.at_level("WARNING"):
        result = pipeline.fit(ts, n_restarts=1, progress=False, analyze=False)
    # 2 training runs x 12 checkpoints x 3 features = 72 values; p(5) = 69, p(6) = 89
    assert result.resolved["states_searched"] == [1, 2, 3, 4, 5]
    assert "support at most K=5" in caplog.text
    with pytest.raises(ModelSelectionError, match="K=6"):
        pipeline.fit(ts, states="2-6", n_restarts=1, progress=False, analyze=False)


def test_bad_options(planted_set):
    with pytest.raises(BayesTrainmapError, match="unknown mode 'mcmc'"):
        pipeline.fit(planted_set, mode="mcmc")
    with pytest.raises(BayesTrainmapError, match="unknown covariance"):
        pipeline.fit(planted_set, covariance_type="tied")
    with pytest.raises(BayesTrainmapError, match="device"):
        pipeline.fit(planted_set, device="tpu")
    with pytest.raises(BayesTrainmapError, match="no threshold preset for task 'chess'"):
        pipeline.fit(planted_set, task="chess")
    with pytest.raises(TrajectoryError, match="outcome column 'bleu' not found"):
        pipeline.fit(planted_set, outcome="bleu", states=1, n_restarts=1, progress=False)


def test_threshold_resolution(planted_set):
    resolve = steps._resolve_threshold
    assert resolve(0.5, "mnist", planted_set) == 0.5
    assert resolve(None, "mnist", planted_set) == 0.97
    assert resolve(None, None, planted_set) == pipeline.DEFAULT_THRESHOLD  # task "planted" has no preset
    cifar = TrajectorySet(planted_set.frame, {"task": "cifar100", "variant": "destabilized"})
    assert resolve(None, None, cifar) == 0.4
    # --task names the data's own task: the recorded variant still picks its preset.
    assert resolve(None, "cifar100", cifar) == 0.4
    assert resolve(None, "cifar100", planted_set) == 0.6
    recorded = TrajectorySet(planted_set.frame, {"task": "cifar100", "threshold": 0.55})
    assert resolve(None, None, recorded) == 0.55
    assert resolve(None, "mnist", recorded) == 0.97


def test_analysis_runs_and_is_written(planted_set, tmp_path):
    result = pipeline.fit(planted_set, states="2-3", n_restarts=1, progress=False, threshold=0.9)
    assert result.analysis is not None
    assert result.analysis.settings["threshold"] == 0.9
    out = result.save(tmp_path / "fit", report=False)
    saved = json.loads((out / "analysis.json").read_text())
    assert saved == json.loads(json.dumps(result.analysis.to_dict()))


def test_k_at_the_top_of_the_search_range_warns_in_summary_and_report(planted_set, tmp_path, caplog):
    # The planted K is 3: searching 1..2, BIC is still falling at K = 2.
    with caplog.at_level("WARNING"):
        result = pipeline.fit(planted_set, states="1-2", n_restarts=1, progress=False, threshold=0.9,
                              features=["l1", "l2", "code_sparsity"])  # named: no absent-statistics note
    assert result.n_states == 2
    bic = result.selection.curve.set_index("n_states")["bic"]
    assert bic[2] < bic[1]
    summary = result.summary()
    assert len(summary["warnings"]) == 1 and "largest K searched (1..2)" in summary["warnings"][0]
    assert "largest K searched" in caplog.text
    assert "Warning: the chosen K=2" in pipeline.render_summary(summary)
    with pytest.warns(DeprecationWarning, match="result.save"):  # the 0.1 names still work for a release
        out = pipeline.write_fit_dir(result, tmp_path / "fit")
    assert json.loads((out / "summary.json").read_text())["warnings"] == summary["warnings"]
    with pytest.warns(DeprecationWarning, match="report.write_report"):
        pipeline.write_report(out)
    report = json.loads((out / "report.json").read_text())
    assert summary["warnings"][0] in report["warnings"]
    # A K inside the range gives no such warning.
    inside = pipeline.fit(planted_set, states="2-4", n_restarts=1, progress=False, analyze=False,
                          features=["l1", "l2", "code_sparsity"])
    assert inside.n_states == 3 and inside.summary()["warnings"] == []


def test_model_size_rule_flags_k_the_checkpoints_cannot_support(planted_factory, caplog):
    from bayes_trainmap.fitting.selection import (
        MIN_VALUES_PER_PARAMETER,
        model_size_warning,
        n_free_parameters,
    )

    # The case: K = 20 on 306 training checkpoints of the paper's 14 statistics.
    assert n_free_parameters(20, 14, "full") == 2779
    msg = model_size_warning(20, 306, 14, "full")
    assert "2,779 free parameters" in msg and "4,284 values" in msg
    # The rule is exactly "fewer than MIN_VALUES_PER_PARAMETER values per parameter".
    for k in range(1, 12):
        p = n_free_parameters(k, 14, "full")
        assert (model_size_warning(k, 306, 14, "full") is None) == (306 * 14 >= MIN_VALUES_PER_PARAMETER * p)
    # Through fit: 2 training runs x 12 checkpoints x 3 features = 72 values, K = 4 has 51 parameters.
    ts = planted_factory(n_runs=3, n_checkpoints=12, n_features=3)
    with caplog.at_level("WARNING"):
        result = pipeline.fit(ts, states=4, n_restarts=1, progress=False, analyze=False)
    assert any("51 free parameters" in w and "over-parametrised" in w for w in result.summary()["warnings"])
    assert "over-parametrised" in caplog.text


def test_outcome_direction_option_reaches_the_convergence_steps(planted_set):
    from bayes_trainmap.analysis.convergence import convergence_steps

    # planted_set's accuracy is 0.2, 0.5, 0.95 in states 0, 1, 2: "lower is better" at 0.3
    # converges at the first checkpoint (state 0), the name's guess (higher) only in state 1.
    result = pipeline.fit(
        planted_set, states=3, n_restarts=1, progress=False, threshold=0.3, outcome_direction="lower",
    )
    conv = result.analysis.convergence
    assert result.config.outcome_direction == "lower" and conv.higher_is_better is False
    oracle = convergence_steps(planted_set, "eval_accuracy", 0.3, higher_is_better=False)
    pd.testing.assert_series_equal(conv.steps, oracle.steps)
    assert conv.never_converged == [] and conv.steps.notna().all()
    guessed = convergence_steps(planted_set, "eval_accuracy", 0.3)  # the name's guess: >= 0.3
    assert guessed.higher_is_better and (guessed.steps > conv.steps).all()
    with pytest.raises(BayesTrainmapError, match="outcome direction"):
        pipeline.fit(planted_set, states=3, outcome_direction="up")


def test_analysis_refuses_the_outcome_as_a_feature(fitted, planted_set):
    from bayes_trainmap import analysis

    params = fitted.params
    renamed = type(params)(params.start_prob, params.trans_mat, params.means, params.covars,
                           params.covariance_type, ["l1", "eval_accuracy", "code_sparsity"])
    runs = dataclasses.replace(fitted.runs, features=["l1", "eval_accuracy", "code_sparsity"])
    with pytest.raises(BayesTrainmapError, match="also a model feature"):
        analysis.analyze(renamed, runs)


def test_all_nan_default_outcome_skips_the_analysis_and_says_why(planted_set, caplog):
    frame = planted_set.frame.copy()
    frame["eval_accuracy"] = np.nan
    with caplog.at_level("WARNING"):
        result = pipeline.fit(TrajectorySet(frame, {}), states=3, n_restarts=1, progress=False)
    assert result.analysis is None
    assert "'eval_accuracy' column has no finite value in any run" in caplog.text
    assert "never reach" not in caplog.text


def test_missing_default_outcome_skips_the_analysis(planted_set, caplog):
    ts = TrajectorySet(planted_set.frame.drop(columns="eval_accuracy"), {})
    with caplog.at_level("WARNING"):
        result = pipeline.fit(ts, states=3, n_restarts=1, progress=False)
    assert result.analysis is None and "no 'eval_accuracy' column" in caplog.text
    assert result.n_states == 3


def test_device_resolution():
    import torch

    assert str(resolve_device("cpu")) == "cpu"
    assert str(resolve_device("auto")) == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BayesTrainmapError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bayesian_mode_is_dispatched_and_its_posterior_written(planted_set, tmp_path):
    result = pipeline.fit(
        planted_set, mode="svi", states=3, n_restarts=1, progress=False, bayes_options={"steps": 20, "draws": 5},
        intervals="posterior", bootstrap=3,
    )
    assert result.bayesian is not None and result.bayesian.mode == "svi"
    assert result.params.n_states == 3 and result.runs.paths.shape == (planted_set.frame.shape[0],)
    assert result.analysis.uncertainty is result.bayesian.uncertainty
    assert result.config.bayes_options == {"steps": 20, "draws": 5}
    settings = result.resolved["bayes_settings"]
    assert settings["steps"] == 20 and settings["draws"] == 5 and settings["intervals"] == "posterior"
    assert settings["guide"] == result.bayesian.fit.guide_name and settings["steps_run"] <= 20
    assert result.resolved["resampling"]["fitter"] == "mle" and result.analysis.robustness["n_resamples"] == 3
    optimisation = settings["optimisation"]
    assert optimisation["window"] > 20 and optimisation["threads"] >= 1 and "map_steps" in optimisation
    assert settings["converged"] is False  # 20 steps cannot fill the convergence test's window
    out = result.save(tmp_path / "fit")
    assert (out / "posterior.nc").is_file()
    assert json.loads((out / "analysis.json").read_text())["uncertainty"] is not None
    # The not-converged SVI fit says so in config.json, report.json and the HTML.
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["bayes_settings"]["optimisation"] == optimisation
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert any("SVI" in w and "iteration limit" in w for w in warnings)
    assert "SVI fit stopped at its iteration limit" in (out / "report.html").read_text()


def test_shipped_demo_data_fits_end_to_end(tmp_path):
    from bayes_trainmap.data import demo_trajectories

    ts = demo_trajectories("default")
    result = pipeline.fit(ts, states=3, n_restarts=1, progress=False)
    assert result.n_states == 3 and len(result.runs.run_ids) == ts.n_runs
    assert result.resolved["threshold"] == ts.metadata.get("threshold", pipeline.DEFAULT_THRESHOLD)
    assert result.analysis is not None
    out = result.save(tmp_path / "demo", report=False)
    assert load_fit_dir(out).summary["n_runs"] == ts.n_runs
