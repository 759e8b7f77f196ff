"""The fit pipeline and the fit directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hmmlearn.hmm import GaussianHMM as ReferenceHMM

from bayes_trainmap.fitting import pipeline
from bayes_trainmap.data import TrajectorySet, zscore_per_run
from bayes_trainmap.core.errors import BayesTrainmapError, FitDirectoryError, ModelSelectionError, TrajectoryError
from bayes_trainmap.data.fitdir import FIT_DIR_FORMAT, is_fit_dir, load_fit_dir


@pytest.fixture(scope="module")
def fitted(planted_set):
    return pipeline.fit(planted_set, states="1-4", restarts=1, progress=False, analyze=False)


def _reference_viterbi(params, Z, lengths):
    ref = ReferenceHMM(n_components=params.n_states, covariance_type=params.covariance_type)
    ref.n_features = params.n_features
    ref.startprob_, ref.transmat_ = params.start_prob, params.trans_mat
    ref.means_, ref.covars_ = params.means, params.covars
    return ref.predict(Z, lengths)


def test_fit_recovers_planted_states_and_decodes_every_run(fitted, planted_set):
    assert fitted.n_states == 3
    X, lengths = planted_set.feature_matrix()
    np.testing.assert_allclose(fitted.Z, zscore_per_run(X, lengths)[0])
    np.testing.assert_array_equal(fitted.paths, _reference_viterbi(fitted.params, fitted.Z, lengths))
    assert fitted.params.feature_names == ["l1", "l2", "code_sparsity"]
    assert fitted.params.normalization == {"method": "zscore_per_run", "window": 1000, "ddof": 0}
    assert sorted(fitted.train_ids + fitted.val_ids) == planted_set.run_ids
    assert len(fitted.val_ids) == 2
    assert fitted.config["split"] == {"train": fitted.train_ids, "val": fitted.val_ids}
    # every run walks through the three planted states in order
    summary = fitted.summary()
    assert [len(r["states"]) for r in summary["runs"]] == [3] * 8
    assert len({tuple(r["states"]) for r in summary["runs"]}) == 1
    assert sum(o["fraction"] for o in summary["occupancy"]) == pytest.approx(1.0)
    for run, length in zip(summary["runs"], lengths):
        assert sum(seg[3] for seg in run["segments"]) == length


def test_render_summary_names_the_essentials(fitted):
    text = pipeline.render_summary(fitted.summary())
    assert "Chosen K = 3" in text
    assert "*  3" in text  # the chosen row of the BIC table
    assert "8 run(s): " in text and "run_00 (" in text


def test_write_fit_dir_layout_and_read_back(fitted, tmp_path):
    out = pipeline.write_fit_dir(fitted, tmp_path / "fit", extra_config={"states": "1-4"})
    names = {p.name for p in out.iterdir()}
    assert {"model.json", "config.json", "selection.csv", "selection_curve.csv", "zscored.parquet",
            "decoded.parquet", "zscore.json", "summary.json", "figures"} <= names
    assert (out / "figures" / "selection_curve.png").stat().st_size > 0
    assert (out / "figures" / "selection_curve.svg").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]  # no staging directory left
    fit_dir = load_fit_dir(out)
    assert fit_dir.config["format"] == FIT_DIR_FORMAT and fit_dir.config["cli"] == {"states": "1-4"}
    assert fit_dir.params.allclose(fitted.params, rtol=0)
    Z, lengths, paths = fit_dir.arrays()
    np.testing.assert_array_equal(Z, fitted.Z)
    np.testing.assert_array_equal(lengths, fitted.lengths)
    np.testing.assert_array_equal(paths, fitted.paths)
    decoded = fit_dir.decoded
    assert list(decoded.columns) == ["run", "step", "split", "state"]
    assert set(decoded.loc[decoded["split"] == "val", "run"]) == set(fitted.val_ids)
    assert "eval_accuracy" in fit_dir.zscored.columns
    pd.testing.assert_frame_equal(fit_dir.selection, fitted.selection.table, check_dtype=False)
    assert fit_dir.summary["n_states"] == 3
    assert json.loads((out / "zscore.json").read_text())["window"] == 1000


def test_fit_dir_is_replaced_only_if_it_is_one(fitted, tmp_path):
    out = pipeline.write_fit_dir(fitted, tmp_path / "fit")
    (out / "stale.txt").write_text("from an older fit")
    pipeline.write_fit_dir(fitted, out)
    assert is_fit_dir(out) and not (out / "stale.txt").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(FitDirectoryError, match="not a fit directory"):
        pipeline.write_fit_dir(fitted, other)
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    with pytest.raises(FitDirectoryError, match="not a directory"):
        pipeline.write_fit_dir(fitted, other / "thesis.tex")


def test_failure_while_writing_leaves_nothing(fitted, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "_plot_selection_curve", broken)
    with pytest.raises(OSError, match="disk full"):
        pipeline.write_fit_dir(fitted, tmp_path / "fit")
    assert list(tmp_path.iterdir()) == []


def test_constant_features_are_reported_and_dropped(planted_factory, caplog):
    ts = planted_factory(n_runs=5, n_checkpoints=40)
    frame = ts.frame.copy()
    frame["trace"] = 3.0  # constant in every run: dropped
    frame.loc[frame["run"] == "run_01", "l2"] = 1.5  # constant in one run: zeroed there
    with caplog.at_level("WARNING"):
        result = pipeline.fit(TrajectorySet(frame), states=2, restarts=1, progress=False, analyze=False)
    assert result.features == ["l1", "l2", "code_sparsity"] and result.dropped_features == ["trace"]
    assert "constant in every run" in caplog.text
    run1 = slice(40, 80)
    np.testing.assert_array_equal(result.Z[run1, 1], 0.0)
    summary = result.summary()
    assert summary["constant_features"] == {"l2": ["run_01"], "trace": [f"run_0{i}" for i in range(5)]}
    assert "Left out (constant in every run): trace" in pipeline.render_summary(summary)


def test_auto_states_are_capped_by_the_data(planted_factory, caplog):
    ts = planted_factory(n_runs=3, n_checkpoints=12, n_features=3)
    with caplog.at_level("WARNING"):
        result = pipeline.fit(ts, restarts=1, progress=False, analyze=False)
    # 2 training runs x 12 checkpoints x 3 features = 72 values; p(5) = 69, p(6) = 89
    assert result.config["states_searched"] == [1, 2, 3, 4, 5]
    assert "support at most K=5" in caplog.text
    with pytest.raises(ModelSelectionError, match="K=6"):
        pipeline.fit(ts, states="2-6", restarts=1, progress=False, analyze=False)


def test_bad_options(planted_set):
    with pytest.raises(BayesTrainmapError, match="unknown mode 'mcmc'"):
        pipeline.fit(planted_set, mode="mcmc")
    with pytest.raises(BayesTrainmapError, match="unknown covariance"):
        pipeline.fit(planted_set, covariance="tied")
    with pytest.raises(BayesTrainmapError, match="device"):
        pipeline.fit(planted_set, device="tpu")
    with pytest.raises(BayesTrainmapError, match="no threshold preset for task 'chess'"):
        pipeline.fit(planted_set, task="chess")
    with pytest.raises(TrajectoryError, match="outcome column 'bleu' not found"):
        pipeline.fit(planted_set, outcome="bleu", states=1, restarts=1, progress=False)


def test_threshold_resolution(planted_set):
    resolve = pipeline._resolve_threshold
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
    result = pipeline.fit(planted_set, states="2-3", restarts=1, progress=False, threshold=0.9)
    assert result.analysis is not None
    assert result.analysis.settings["threshold"] == 0.9
    out = pipeline.write_fit_dir(result, tmp_path / "fit")
    saved = json.loads((out / "analysis.json").read_text())
    assert saved == json.loads(json.dumps(result.analysis.to_dict()))


def test_missing_default_outcome_skips_the_analysis(planted_set, caplog):
    ts = TrajectorySet(planted_set.frame.drop(columns="eval_accuracy"), {})
    with caplog.at_level("WARNING"):
        result = pipeline.fit(ts, states=3, restarts=1, progress=False)
    assert result.analysis is None and "no 'eval_accuracy' column" in caplog.text
    assert result.n_states == 3


def test_device_resolution():
    import torch

    assert pipeline.resolve_device("cpu") == "cpu"
    assert pipeline.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BayesTrainmapError, match="CUDA is not available"):
            pipeline.resolve_device("cuda")


def test_bayesian_mode_is_dispatched_and_its_posterior_written(planted_set, tmp_path):
    result = pipeline.fit(
        planted_set, mode="svi", states=3, restarts=1, progress=False, bayes_options={"steps": 20, "draws": 5},
        intervals="posterior", bootstrap=3,
    )
    assert result.bayesian is not None and result.bayesian.mode == "svi"
    assert result.params.n_states == 3 and result.paths.shape == (planted_set.frame.shape[0],)
    assert result.analysis.uncertainty is result.bayesian.uncertainty
    settings = result.config["bayes_options"]
    assert settings["steps"] == 20 and settings["draws"] == 5 and settings["intervals"] == "posterior"
    assert settings["guide"] == result.bayesian.fit.guide_name and settings["steps_run"] <= 20
    assert result.config["resampling"]["fitter"] == "mle" and result.analysis.robustness["n_resamples"] == 3
    out = pipeline.write_fit_dir(result, tmp_path / "fit")
    assert (out / "posterior.nc").is_file()
    assert json.loads((out / "analysis.json").read_text())["uncertainty"] is not None


def test_shipped_demo_data_fits_end_to_end(tmp_path):
    from bayes_trainmap.data import demo_trajectories

    ts = demo_trajectories("default")
    result = pipeline.fit(ts, states=3, restarts=1, progress=False)
    assert result.n_states == 3 and len(result.run_ids) == ts.n_runs
    assert result.config["threshold"] == ts.metadata.get("threshold", pipeline.DEFAULT_THRESHOLD)
    assert result.analysis is not None
    out = pipeline.write_fit_dir(result, tmp_path / "demo")
    assert load_fit_dir(out).summary["n_runs"] == ts.n_runs
