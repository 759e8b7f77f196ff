"""Trajectory data model: I/O round trips, validation, z-scoring, run split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bayes_trainmap import data
from bayes_trainmap.core import storage
from bayes_trainmap.core.errors import TrajectoryError
from bayes_trainmap.core.schema import PARQUET_METADATA_KEY, STATISTIC_NAMES
from bayes_trainmap.data import (
    TrajectorySet,
    import_paper_csvs,
    load_trajectories,
    save_trajectories,
    split_runs,
    validate,
    zscore_per_run,
)


def _assert_same_set(a: TrajectorySet, b: TrajectorySet) -> None:
    assert a.run_ids == b.run_ids
    np.testing.assert_array_equal(a.lengths, b.lengths)
    pd.testing.assert_frame_equal(a.frame, b.frame, check_dtype=False)


# ---------------------------------------------------------------- the model itself
def test_runs_in_natural_order_and_ragged_lengths(frame_factory):
    frame = frame_factory(lengths=(5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16))
    ts = TrajectorySet(frame.sample(frac=1.0, random_state=0).sort_values("step", kind="stable"))
    assert ts.run_ids == [f"run_{i}" for i in range(12)]  # run_2 before run_10
    np.testing.assert_array_equal(ts.lengths, np.arange(5, 17))
    X, lengths = ts.feature_matrix()
    assert X.shape == (lengths.sum(), 3) and X.dtype == np.float64
    expected = frame.loc[frame["run"] == "run_10", ["l1", "l2", "code_sparsity"]].to_numpy()
    start = lengths[:10].sum()
    np.testing.assert_array_equal(X[start : start + 15], expected)


def test_default_features_are_the_statistics_present_in_schema_order(frame_factory):
    frame = frame_factory(n_features=5)[["run", "seed", "step", "mean_w", "l1", "l2", "eval_accuracy"]]
    ts = TrajectorySet(frame)
    assert ts.feature_columns == ["l1", "l2", "mean_w"]
    assert ts.outcome_columns == ["eval_accuracy"]
    assert validate(ts) == ["l1", "l2", "mean_w"]
    assert validate(ts, ["eval_accuracy", "l2"]) == ["eval_accuracy", "l2"]
    X, _ = ts.feature_matrix(["eval_accuracy"])
    np.testing.assert_array_equal(X[:, 0], ts.outcome("eval_accuracy"))


def test_subset_and_steps(ragged_set):
    sub = ragged_set.subset(["run_3", "run_1"])
    assert sub.run_ids == ["run_1", "run_3"]
    assert sub.metadata == ragged_set.metadata
    np.testing.assert_array_equal(sub.steps()[: sub.lengths[0]], np.arange(sub.lengths[0]) * 10)
    with pytest.raises(TrajectoryError, match="unknown run id"):
        ragged_set.subset(["nope"])


# ---------------------------------------------------------------- round trips
def test_directory_of_parquet_round_trip_keeps_metadata(tmp_path, ragged_set):
    written = save_trajectories(ragged_set, tmp_path / "traj")
    assert sorted(p.name for p in written) == [f"run_{i}.parquet" for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "traj").iterdir()) == sorted(p.name for p in written)
    raw = pq.read_schema(written[0]).metadata[PARQUET_METADATA_KEY]
    assert json.loads(raw) == {"task": "toy", "hyperparameters": {"lr": 0.01}}
    loaded = load_trajectories(tmp_path / "traj")
    _assert_same_set(ragged_set, loaded)
    assert loaded.metadata["task"] == "toy" and loaded.metadata["hyperparameters"] == {"lr": 0.01}


@pytest.mark.parametrize("name", ["all.parquet", "all.csv"])
def test_single_file_round_trip(tmp_path, ragged_set, name):
    save_trajectories(ragged_set, tmp_path / name)
    loaded = load_trajectories(tmp_path / name)
    _assert_same_set(ragged_set, loaded)
    if name.endswith(".parquet"):
        assert loaded.metadata["task"] == "toy"


def test_failed_write_leaves_nothing_behind(tmp_path, ragged_set, monkeypatch):
    def broken(fd):  # the temporary file is written, then the disk fills before it is synced
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        save_trajectories(ragged_set, tmp_path / "one.parquet")
    assert list(tmp_path.iterdir()) == []


def test_paper_csv_layout_is_imported(tmp_path, frame_factory):
    frame = frame_factory(n_features=14, lengths=(12, 9, 15))
    columns = ["l1", "l2", "trace", "spectral", "code_sparsity", "computational_sparsity", "mean_lambda",
               "variance_lambda", "mean_w", "median_w", "var_w", "mean_b", "median_b", "var_b"]
    for i, run in enumerate(["run_0", "run_1", "run_2"]):
        part = frame.loc[frame["run"] == run, columns].reset_index(drop=True)
        part.insert(0, "epoch", np.arange(len(part)) * 2)
        part.to_csv(tmp_path / f"seed{i + 7}.csv")  # with the pandas index column, as authors' files have
    for ts in (import_paper_csvs(tmp_path), load_trajectories(tmp_path)):
        assert ts.run_ids == ["seed7", "seed8", "seed9"]
        np.testing.assert_array_equal(ts.lengths, [12, 9, 15])
        assert ts.feature_columns == list(STATISTIC_NAMES)
        assert sorted(ts.frame["seed"].unique()) == [7, 8, 9]
        np.testing.assert_array_equal(ts.steps()[:12], np.arange(12) * 2)
        X, _ = ts.feature_matrix()
        expected = frame.loc[frame["run"] == "run_1", list(STATISTIC_NAMES)].to_numpy()
        np.testing.assert_allclose(X[12:21], expected, rtol=1e-15)
        assert validate(ts) == list(STATISTIC_NAMES)


# ---------------------------------------------------------------- bad input
def _bad(frame_factory, **changes) -> TrajectorySet:
    frame = frame_factory()
    for (row, column), value in changes.get("set", {}).items():
        frame.loc[row, column] = value
    return TrajectorySet(frame)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(frame_factory, value):
    ts = _bad(frame_factory, set={(40, "l2"): value})
    with pytest.raises(TrajectoryError, match=r"non-finite.*run 'run_1' at step 100, column 'l2'"):
        validate(ts)


@pytest.mark.parametrize("kind, new_step", [("duplicate", 10), ("unsorted", 0)])
def test_duplicate_and_unsorted_steps_are_rejected(frame_factory, kind, new_step):
    frame = frame_factory()
    frame.loc[32, "step"] = new_step  # run_1, third checkpoint (steps 0, 10, 20 -> 0, 10, new)
    with pytest.raises(TrajectoryError, match=rf"{kind} steps in run 'run_1'"):
        validate(TrajectorySet(frame))


def test_short_runs_missing_and_non_numeric_columns(frame_factory):
    ts = TrajectorySet(frame_factory(lengths=(30, 1, 30)))
    with pytest.raises(TrajectoryError, match=r"'run_1' \(1\) have fewer than 2 checkpoints"):
        validate(ts)
    with pytest.raises(TrajectoryError, match=r"\['var_b'\] not found"):
        validate(TrajectorySet(frame_factory()), ["l1", "var_b"])
    frame = frame_factory()
    frame["l2"] = frame["l2"].astype(object)
    frame.loc[3, "l2"] = "oops"
    with pytest.raises(TrajectoryError, match=r"'l2' is not numeric .*'oops'"):
        validate(TrajectorySet(frame))
    with pytest.raises(TrajectoryError, match="no feature columns"):
        validate(TrajectorySet(frame_factory()[["run", "step", "eval_accuracy"]]))
    with pytest.raises(TrajectoryError, match="missing required column"):
        TrajectorySet(frame_factory().drop(columns="step"))


def test_unreadable_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trajectories(tmp_path / "absent")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TrajectoryError, match="is empty"):
        load_trajectories(tmp_path / "empty.csv")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(TrajectoryError, match="is empty"):
        load_trajectories(tmp_path / "empty.parquet")
    (tmp_path / "header.csv").write_text("run,step,l1\n")
    with pytest.raises(TrajectoryError, match="no checkpoints"):
        load_trajectories(tmp_path / "header.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(TrajectoryError, match="cannot read Parquet"):
        load_trajectories(tmp_path / "junk.parquet")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TrajectoryError, match="unsupported"):
        load_trajectories(tmp_path / "notes.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(TrajectoryError, match="no .parquet or .csv"):
        load_trajectories(tmp_path / "nothing")
    (tmp_path / "frac.csv").write_text("run,step,l1\na,0.5,1\n")
    with pytest.raises(TrajectoryError, match="'step' must hold integers"):
        load_trajectories(tmp_path / "frac.csv")


# ---------------------------------------------------------------- z-scoring
def _zscore_oracle(X, lengths, window):
    out, start = [], 0
    for length in lengths:
        run = X[start : start + length]
        head = run[: min(length, window)]
        mu = np.array([np.mean(head[:, j]) for j in range(X.shape[1])])
        sd = np.array([np.sqrt(np.mean((head[:, j] - mu[j]) ** 2)) for j in range(X.shape[1])])
        out.append((run - mu) / sd)
        start += length
    return np.concatenate(out)


@pytest.mark.parametrize("window", [1000, 7])
def test_zscore_matches_numpy_oracle(window):
    rng = np.random.default_rng(3)
    lengths = np.array([20, 5, 13])
    X = rng.normal(size=(lengths.sum(), 4)) * [1, 10, 0.01, 3] + [0, 5, -2, 100]
    Z, info = zscore_per_run(X, lengths, window=window)
    np.testing.assert_allclose(Z, _zscore_oracle(X, lengths, window), rtol=1e-12, atol=1e-12)
    assert info.means.shape == info.stds.shape == (3, 4)
    assert not info.constant.any() and info.constant_features == []
    # the first min(T, window) checkpoints of each run are standardised exactly
    head = Z[: min(20, window)]
    np.testing.assert_allclose(head.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(head.std(axis=0), 1, rtol=1e-12)


def test_constant_feature_is_zeroed_and_reported(caplog):
    rng = np.random.default_rng(4)
    lengths = np.array([6, 8])
    X = rng.normal(size=(14, 3))
    X[:6, 1] = 0.1  # constant in the first run only (0.1 is not exact in binary)
    X[:, 2] = 7.0  # constant everywhere
    X[10:, 2] = 9.0  # ... but only over the window of 2 checkpoints in run 2 -- changes later
    with caplog.at_level("WARNING", logger="bayes_trainmap.data"):
        Z, info = zscore_per_run(X, lengths, window=4, feature_names=["a", "b", "c"], run_ids=["r0", "r1"])
    assert np.isfinite(Z).all()
    np.testing.assert_array_equal(Z[:6, 1], 0.0)
    np.testing.assert_array_equal(Z[:, 2], 0.0)
    np.testing.assert_allclose(Z[6:, 1], _zscore_oracle(X[6:, 1:2], [8], 4)[:, 0])
    assert info.constant.tolist() == [[False, True, True], [False, False, True]]
    assert info.constant_features == ["b", "c"]
    assert info.fully_constant_features == ["c"]
    assert info.constant_runs() == {"b": ["r0"], "c": ["r0", "r1"]}
    assert "'b' in 1 of 2 run(s)" in caplog.text
    assert json.loads(json.dumps(info.to_dict()))["constant_runs"] == {"b": ["r0"], "c": ["r0", "r1"]}


def test_zscore_rejects_bad_lengths():
    with pytest.raises(TrajectoryError, match="sum to the number of rows"):
        zscore_per_run(np.zeros((5, 2)), np.array([2, 2]))
    with pytest.raises(TrajectoryError, match="window"):
        zscore_per_run(np.zeros((4, 2)), np.array([2, 2]), window=0)


# ---------------------------------------------------------------- splitting
def test_split_is_reproducible_disjoint_and_order_free():
    ids = [f"run_{i}" for i in range(40)]
    train, val = split_runs(ids, seed=5)
    assert len(val) == 8 and len(train) == 32
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(ids)
    assert (train, val) == split_runs(ids, seed=5)
    shuffled = list(np.random.default_rng(0).permutation(ids))
    train2, val2 = split_runs(shuffled, seed=5)
    assert set(val2) == set(val) and val2 == [r for r in shuffled if r in set(val)]
    assert set(split_runs(ids, seed=6)[1]) != set(val)


def test_split_edge_cases():
    assert split_runs(["a", "b"], seed=0)[0] and split_runs(["a", "b"], seed=0)[1]
    assert len(split_runs(list("abc"), val_fraction=0.9)[0]) == 1  # always one training run
    with pytest.raises(TrajectoryError, match="at least 2 runs"):
        split_runs(["only"])
    with pytest.raises(TrajectoryError, match="val_fraction"):
        split_runs(list("abcd"), val_fraction=1.0)
    with pytest.raises(TrajectoryError, match="unique"):
        split_runs(["a", "a", "b"])


# ---------------------------------------------------------------- demo data
def test_demo_trajectories_default_and_unknown(tmp_path, monkeypatch, ragged_set):
    monkeypatch.setattr(data.demos, "DEMO_DATA_DIR", tmp_path)
    simulated = data.demo_trajectories()  # nothing shipped: the labelled simulated set
    assert simulated.metadata["demo"] == "simulated" and simulated.metadata["task"] == "simulated"
    assert simulated.n_runs == 40 and validate(simulated) == list(STATISTIC_NAMES)
    save_trajectories(ragged_set, tmp_path / "digits")
    assert data.available_demos() == ["digits", "simulated"]
    ts = data.demo_trajectories()
    assert ts.metadata["demo"] == "digits" and ts.n_runs == 4
    with pytest.raises(TrajectoryError, match="unknown demo"):
        data.demo_trajectories("nope")


def test_shipped_demo_sets_are_valid():
    for name in data.available_demos():
        ts = data.demo_trajectories(name)
        assert ts.n_runs >= 10, name
        assert validate(ts) == list(STATISTIC_NAMES), name
        assert "eval_accuracy" in ts.outcome_columns, name


def test_per_run_metadata_that_differs_is_kept_per_run(tmp_path, ragged_set):
    save_trajectories(ragged_set, tmp_path / "traj")
    # rewrite one run as a task writer would: same task, its own divergence flag
    file = tmp_path / "traj" / "run_2.parquet"
    table = pq.read_table(file)
    meta = {"task": "toy", "hyperparameters": {"lr": 0.01}, "diverged": True}
    pq.write_table(table.replace_schema_metadata({PARQUET_METADATA_KEY: json.dumps(meta).encode()}), file)
    loaded = load_trajectories(tmp_path / "traj")
    assert loaded.metadata["task"] == "toy" and "diverged" not in loaded.metadata
    assert loaded.metadata["run_metadata"] == {"run_0": {}, "run_1": {}, "run_2": {"diverged": True}, "run_3": {}}


# ------------------------------------------------------------ hostile inputs (issue 13)
def test_loader_refuses_ambiguous_directories(tmp_path, ragged_set):
    """Each class of input that used to load silently wrong gets one clear error."""
    from bayes_trainmap.core.errors import TrajectoryError

    runs = tmp_path / "runs"
    files = save_trajectories(ragged_set, runs)
    # the same run in two files (a copy): refused, never merged into one run
    copy = runs / "copy.parquet"
    copy.write_bytes(files[0].read_bytes())
    with pytest.raises(TrajectoryError, match=r"run 'run_0' is in two files"):
        load_trajectories(runs)
    copy.unlink()
    # a link to a run file: the same file read twice
    (runs / "link.parquet").symlink_to(files[0])
    with pytest.raises(TrajectoryError, match="a link to the same file"):
        load_trajectories(runs)
    (runs / "link.parquet").unlink()
    # Parquet and CSV run files side by side: refused, not "the Parquet files only"
    ragged_set.frame.iloc[:5].to_csv(runs / "extra.csv", index=False)
    with pytest.raises(TrajectoryError, match=r"mixes Parquet \(4\) and CSV \(1\)"):
        load_trajectories(runs)
    (runs / "extra.csv").unlink()
    assert load_trajectories(runs).n_runs == ragged_set.n_runs  # the clean directory still loads


def test_loader_refuses_malformed_csv_and_fit_directories(tmp_path, ragged_set, planted_set):
    from bayes_trainmap.core.errors import TrajectoryError
    from bayes_trainmap.fitting.pipeline import fit

    frame = ragged_set.frame
    dup = tmp_path / "dup.csv"
    dup.write_text(",".join([*frame.columns, "l1"]) + "\n" + "\n".join(",".join(map(str, [*r, r[3]])) for r in frame.values[:3]))
    with pytest.raises(TrajectoryError, match=r"repeats the column\(s\) \['l1'\]"):
        load_trajectories(dup)
    semi = tmp_path / "semi.csv"
    frame.to_csv(semi, sep=";", index=False)
    with pytest.raises(TrajectoryError, match="looks ';'-separated"):
        load_trajectories(semi)
    out = fit(planted_set, states=2, n_restarts=1, progress=False, analyze=False, bootstrap=0).save(
        tmp_path / "fit", report=False
    )
    with pytest.raises(TrajectoryError, match="is a fit directory"):
        load_trajectories(out)


def test_huge_values_are_standardised_or_refused_never_zeroed():
    from bayes_trainmap.core.errors import TrajectoryError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    Z_small, _ = zscore_per_run(x, np.array([40]))
    Z_huge, info = zscore_per_run(x * 1e300, np.array([40]))  # squares overflow; the spread does not
    np.testing.assert_allclose(Z_huge, Z_small, rtol=1e-12, atol=1e-12)
    assert not info.constant.any()
    with pytest.raises(TrajectoryError, match="too large to standardise"):
        zscore_per_run(np.array([[1.7e308, 0.0], [1.7e308, 1.0]]), np.array([2]), feature_names=["l1", "l2"])


def test_absent_paper_statistics_are_named_in_the_fit_warnings(planted_set):
    from bayes_trainmap.fitting.pipeline import fit

    assert planted_set.absent_statistics()[:2] == ["mean_w", "median_w"] and len(planted_set.absent_statistics()) == 11
    result = fit(planted_set, states=2, n_restarts=1, progress=False, analyze=False, bootstrap=0)
    [note] = [w for w in result.summary()["warnings"] if "absent" in w]
    assert note.startswith("11 of the paper's 14 statistics are absent") and "spectral" in note
    explicit = fit(planted_set, states=2, n_restarts=1, progress=False, analyze=False, bootstrap=0, features=["l1", "l2"])
    assert not any("absent" in w for w in explicit.summary()["warnings"])  # features chosen: nothing to say
