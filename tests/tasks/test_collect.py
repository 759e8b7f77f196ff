"""Resumable collections: interruption, resumption, configuration refusal, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import toy_tasks  # noqa: F401  (registers the toy tasks)

from bayes_trainmap.data import load_trajectories
from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.tasks.collect import COLLECTION_FILE, collect, parse_seeds, run_path
from bayes_trainmap.tasks.trajectory_io import read_run

SMOKE = {"size": "smoke", "steps": 20}


class Interrupt(Exception):
    pass


def _fail_after(n: int):
    written = []

    def hook(seed, path):
        written.append(seed)
        if len(written) == n:
            raise Interrupt(f"killed after {n} runs")

    return hook


@pytest.mark.parametrize("ensemble", [True, False], ids=["ensemble", "sequential"])
def test_interrupted_collection_completes_without_loss_or_duplicates(tmp_path, ensemble):
    out = tmp_path / "runs"
    seeds = list(range(5))
    # the ensemble path trains in groups of 2, so an interruption lands mid-collection
    with pytest.raises(Interrupt):
        collect("sparse_parities", seeds=seeds, out=out, ensemble=ensemble, ensemble_size=2,
                on_run_written=_fail_after(3), **SMOKE)
    assert sorted(p.name for p in out.glob("run-*.parquet")) == [f"run-{s}.parquet" for s in range(3)]
    before = {s: read_run(run_path(out, s))[0] for s in range(3)}
    (out / ".tmp-leftover.parquet").write_bytes(b"half-written")  # an interrupted write

    result = collect("sparse_parities", seeds=seeds, out=out, ensemble=ensemble, ensemble_size=2, **SMOKE)
    assert result.skipped == [0, 1, 2] and sorted(result.trained) == [3, 4]
    assert not list(out.glob(".tmp-*"))
    for s in range(3):  # finished runs untouched
        assert read_run(run_path(out, s))[0].equals(before[s])

    ts = load_trajectories(out)
    assert ts.n_runs == 5 and sorted(ts.frame["seed"].unique()) == seeds
    assert not ts.frame.duplicated(["run", "step"]).any()
    assert all(len(ts.frame[ts.frame["seed"] == s]) == 3 for s in seeds)  # steps 0, 10, 20
    # a third call has nothing to do
    again = collect("sparse_parities", seeds=seeds, out=out, ensemble=ensemble, **SMOKE)
    assert again.trained == [] and again.skipped == seeds


def test_resumed_runs_equal_uninterrupted_runs(tmp_path):
    collect("sparse_parities", seeds="0-2", out=tmp_path / "a", **SMOKE)
    with pytest.raises(Interrupt):
        collect("sparse_parities", seeds="0-2", out=tmp_path / "b", ensemble=False,
                on_run_written=_fail_after(1), **SMOKE)
    collect("sparse_parities", seeds="0-2", out=tmp_path / "b", ensemble=False, **SMOKE)
    for s in range(3):
        a, b = read_run(run_path(tmp_path / "a", s))[0], read_run(run_path(tmp_path / "b", s))[0]
        np.testing.assert_allclose(a[list(STATISTIC_NAMES)], b[list(STATISTIC_NAMES)], rtol=1e-5, atol=1e-7)


def test_manifest_and_run_metadata(tmp_path):
    collect("digits", seeds=[0, 1], out=tmp_path, size="smoke", steps=10)
    manifest = json.loads((tmp_path / COLLECTION_FILE).read_text())
    assert manifest["task"] == "digits" and manifest["variant"] == "default" and manifest["size"] == "smoke"
    assert manifest["config"]["steps"] == 10 and manifest["seeds"] == [0, 1]
    assert manifest["threshold"] == 0.95 and "package_version" in manifest
    frame, meta = read_run(run_path(tmp_path, 1))
    assert meta["seed"] == 1 and meta["run"] == "seed-001" and meta["diverged"] is False
    assert meta["config"] == manifest["config"] and meta["trainer"] == "ensemble"
    assert frame["run"].unique().tolist() == ["seed-001"]
    # adding seeds to the same collection is allowed and recorded
    collect("digits", seeds=[2], out=tmp_path, size="smoke", steps=10)
    assert json.loads((tmp_path / COLLECTION_FILE).read_text())["seeds"] == [0, 1, 2]


def test_other_configuration_is_refused_naming_the_keys(tmp_path):
    collect("sparse_parities", seeds=[0], out=tmp_path, **SMOKE)
    with pytest.raises(TaskError, match=r"config\.steps \(20 there, 30 now\)"):
        collect("sparse_parities", seeds=[0], out=tmp_path, size="smoke", steps=30)
    with pytest.raises(TaskError, match=r"task \('sparse_parities' there, 'digits' now\)"):
        collect("digits", seeds=[0], out=tmp_path, **SMOKE)
    with pytest.raises(TaskError, match="lr"):
        collect("sparse_parities", seeds=[0], out=tmp_path, overrides={"lr": 0.5}, **SMOKE)


def test_diverged_run_is_recorded_and_collection_continues(tmp_path):
    result = collect("toy_exploding", seeds=[0, 1, 2], out=tmp_path)
    assert set(result.diverged) == {0} and sorted(result.trained) == [0, 1, 2]
    frame, meta = read_run(run_path(tmp_path, 0))
    assert meta["diverged"] is True and meta["diverged_step"] == result.diverged[0]
    assert len(frame) >= 1 and np.isfinite(frame[list(STATISTIC_NAMES)].to_numpy()).all()
    assert read_run(run_path(tmp_path, 1))[1]["diverged"] is False


def test_unreadable_run_file_is_trained_again(tmp_path):
    collect("sparse_parities", seeds=[0, 1], out=tmp_path, **SMOKE)
    run_path(tmp_path, 1).write_bytes(b"not parquet")
    result = collect("sparse_parities", seeds=[0, 1], out=tmp_path, **SMOKE)
    assert result.skipped == [0] and result.trained == [1]
    assert len(read_run(run_path(tmp_path, 1))[0]) == 3


@pytest.mark.parametrize(
    "text, expected",
    [("0-3", [0, 1, 2, 3]), ("0,3,5-7", [0, 3, 5, 6, 7]), ("7", [7]), (" 2 , 1-2", [1, 2])],
)
def test_parse_seeds_valid(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "3-1", "-1", "1-2-3", "0,,2", "1.5", "0-"])
def test_parse_seeds_malformed(text):
    with pytest.raises(TaskError, match="seed range"):
        parse_seeds(text)


def test_bad_inputs(tmp_path):
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        collect("nope", seeds=[0], out=tmp_path / "x")
    with pytest.raises(TaskError, match="no variant 'wobbly'"):
        collect("sparse_parities", variant="wobbly", seeds=[0], out=tmp_path / "x")
    with pytest.raises(TaskError, match="unknown config keys"):
        collect("sparse_parities", seeds=[0], out=tmp_path / "x", overrides={"learning_rate": 1.0})
    with pytest.raises(TaskError, match="steps must be a positive integer"):
        collect("sparse_parities", seeds=[0], out=tmp_path / "x", steps=0)
    with pytest.raises(TaskError, match="non-negative integers"):
        collect("sparse_parities", seeds=[-1], out=tmp_path / "x")
    with pytest.raises(TaskError, match="device"):
        collect("sparse_parities", seeds=[0], out=tmp_path / "x", device="tpu", **SMOKE)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TaskError, match="cannot create output directory"):
        collect("sparse_parities", seeds=[0], out=blocker / "sub", **SMOKE)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "run-0.parquet").write_bytes(b"")
    with pytest.raises(TaskError, match="no collection.json"):
        collect("sparse_parities", seeds=[0], out=foreign, **SMOKE)


def test_unwritable_output_directory(tmp_path, monkeypatch):
    # permissions cannot lock out root, so simulate a read-only directory
    import bayes_trainmap.tasks.collect as collect_module

    monkeypatch.setattr(collect_module.os, "access", lambda path, mode: False)
    with pytest.raises(TaskError, match="not writable"):
        collect("sparse_parities", seeds=[0], out=tmp_path / "locked", **SMOKE)
