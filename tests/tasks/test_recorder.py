"""The recorder hook and the checkpoint-directory importer, read back by bayes_trainmap.data."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bayes_trainmap.data import load_trajectories
from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.tasks.recorder import TrajectoryRecorder, trajectory_from_checkpoints
from bayes_trainmap.tasks.stats import weight_statistics
from bayes_trainmap.tasks.trajectory_io import read_run


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def _train(model: nn.Module, steps: int, recorder: TrajectoryRecorder | None = None, checkpoints=None):
    """A user's own loop; returns the statistics expected at each recorded step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    expected = {}
    for step in range(steps + 1):
        if recorder is not None and recorder.due(step):
            expected[step] = weight_statistics(model)
            recorder.log(step, eval_accuracy=step / 100, train_loss=1.0 / (step + 1))
        if checkpoints is not None and step % 4 == 0:
            expected[step] = weight_statistics(model)
            torch.save({"state_dict": model.state_dict(), "step": step, "eval_accuracy": step / 100},
                       checkpoints / f"ckpt_{step:05d}.pt")
        x = torch.randn(8, 3, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return expected


def test_recorder_round_trip_through_load_trajectories(tmp_path):
    model = _model()
    with TrajectoryRecorder(model, tmp_path, run="mine", seed=7, every=3,
                            metadata={"task": "toy", "lr": 0.1}) as rec:
        expected = _train(model, 10, rec)
    assert sorted(expected) == [0, 3, 6, 9]
    ts = load_trajectories(tmp_path)
    assert ts.run_ids == ["mine"] and ts.frame["seed"].unique().tolist() == [7]
    assert ts.frame["step"].tolist() == [0, 3, 6, 9]
    for _, row in ts.frame.iterrows():
        for name in STATISTIC_NAMES:
            assert row[name] == pytest.approx(expected[row["step"]][name], rel=1e-12)
    assert ts.frame["eval_accuracy"].tolist() == [0.0, 0.03, 0.06, 0.09]
    _, meta = read_run(tmp_path / "run-mine.parquet")
    assert meta["task"] == "toy" and meta["lr"] == 0.1 and meta["diverged"] is False


def test_recorder_every_force_and_order(tmp_path):
    model = _model()
    rec = TrajectoryRecorder(model, tmp_path / "one.parquet", seed=1, every=5)
    assert rec.log(0) and not rec.log(3) and rec.log(4, force=True) and rec.log(5)
    with pytest.raises(TaskError, match="steps must increase"):
        rec.log(5, force=True)
    with pytest.raises(TaskError, match="reserved"):
        rec.log(10, l2=3.0)
    assert rec.close() == tmp_path / "one.parquet"
    assert read_run(tmp_path / "one.parquet")[0]["step"].tolist() == [0, 4, 5]
    with pytest.raises(TaskError, match="closed"):
        rec.log(20)


def test_recorder_keeps_logged_rows_when_the_loop_raises(tmp_path):
    model = _model()
    with pytest.raises(RuntimeError):
        with TrajectoryRecorder(model, tmp_path, seed=0) as rec:
            expected = weight_statistics(model)
            rec.log(0, train_loss=0.5)
            raise RuntimeError("training crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-seed-0.jsonl"]  # no Parquet file
    ts = load_trajectories(tmp_path)
    assert ts.run_ids == ["seed-0"] and ts.frame["step"].tolist() == [0]
    assert ts.metadata["incomplete"] is True and ts.metadata["failed"] is True
    assert "training crashed" in ts.metadata["error"]
    for name in STATISTIC_NAMES:
        assert ts.frame[name].iat[0] == pytest.approx(expected[name], rel=1e-12)


_KILLED_RUN = """
import os, signal, sys, torch
from torch import nn
from bayes_trainmap.tasks.recorder import TrajectoryRecorder
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
rec = TrajectoryRecorder(model, sys.argv[1], run="killed", every=2)
for step in range(7):
    with torch.no_grad():
        model[0].weight.add_(0.1)
    rec.log(step, eval_accuracy=step / 10)
torch.save(model.state_dict(), sys.argv[1] + "/../last.pt")
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no exception handler, no atexit
"""


def test_a_killed_run_keeps_its_rows_and_reads_while_incomplete(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(out)], check=False, cwd=str(Path(__file__).parents[2]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    ts = load_trajectories(out)
    assert ts.run_ids == ["killed"] and ts.frame["step"].tolist() == [0, 2, 4, 6]
    assert ts.metadata["incomplete"] is True and "failed" not in ts.metadata
    assert ts.frame["eval_accuracy"].tolist() == [0.0, 0.2, 0.4, 0.6]
    # the last row is the statistics of the weights at step 6, recomputed independently
    model = _model()
    model.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True))
    last = weight_statistics(model)
    for name in STATISTIC_NAMES:
        assert ts.frame[name].iat[-1] == pytest.approx(last[name], rel=1e-12)


def test_a_half_written_last_line_is_ignored(tmp_path):
    model = _model()
    rec = TrajectoryRecorder(model, tmp_path, run="r", every=1)
    rec.log(0)
    rec.log(1)
    with open(tmp_path / "run-r.jsonl", "a") as handle:
        handle.write('{"row": {"run": "r", "step": 2, "l1": 0.')  # killed mid-write
    assert load_trajectories(tmp_path).frame["step"].tolist() == [0, 1]


def test_close_replaces_the_log_by_the_parquet_file(tmp_path):
    model = _model()
    with TrajectoryRecorder(model, tmp_path, run="r") as rec:
        rec.log(0)
        assert (tmp_path / "run-r.jsonl").is_file() and not (tmp_path / "run-r.parquet").exists()
        assert load_trajectories(tmp_path).metadata["incomplete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-r.parquet"]
    assert "incomplete" not in load_trajectories(tmp_path).metadata


@pytest.mark.parametrize("run", ["x/../../escaped", "/tmp/abs", "a/b", "..", ".", "", "a\\b", "tab\tid"])
def test_run_ids_that_escape_the_folder_are_refused_before_training(tmp_path, run):
    out = tmp_path / "deep" / "out"
    with pytest.raises(TaskError, match="run id"):
        TrajectoryRecorder(_model(), out, run=run)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    with pytest.raises(TaskError, match="run id"):
        trajectory_from_checkpoints(tmp_path, run=run, out=out)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_follow_the_umask(tmp_path, umask):
    import os
    import stat

    previous = os.umask(umask)
    try:
        rec = TrajectoryRecorder(_model(), tmp_path, run="r")
        rec.log(0)
        log_mode = stat.S_IMODE((tmp_path / "run-r.jsonl").stat().st_mode)
        path = rec.close()
    finally:
        os.umask(previous)
    assert log_mode == 0o666 & ~umask
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_recorder_marks_divergence(tmp_path):
    model = _model()
    with TrajectoryRecorder(model, tmp_path, seed=2) as rec:
        rec.log(0, train_loss=1.0)
        rec.log(1, train_loss=float("nan"))
        with torch.no_grad():
            model[0].weight.fill_(float("inf"))
        assert not rec.log(2, train_loss=0.5)
    frame, meta = read_run(tmp_path / "run-seed-2.parquet")
    assert frame["step"].tolist() == [0] and meta["diverged"] is True and meta["diverged_step"] == 1


def test_trajectory_from_checkpoints_in_step_order(tmp_path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    model = _model()
    expected = _train(model, 12, checkpoints=ckpts)
    # a file name out of lexicographic order and a bare state dict with the step in the name
    torch.save(model.state_dict(), ckpts / "ckpt_9.pt")
    final = weight_statistics(model)
    frame = trajectory_from_checkpoints(ckpts, model_fn=_model, run="r", seed=3, out=tmp_path / "out")
    assert frame["step"].tolist() == [0, 4, 8, 9, 12]
    for _, row in frame.iterrows():
        target = final if row["step"] == 9 else expected[row["step"]]
        np.testing.assert_allclose([row[n] for n in STATISTIC_NAMES], [target[n] for n in STATISTIC_NAMES],
                                   rtol=1e-12)
    assert frame.loc[frame["step"] == 8, "eval_accuracy"].item() == 0.08
    assert load_trajectories(tmp_path / "out").run_ids == ["r"]


def test_checkpoint_importer_refuses_pickled_objects_and_bad_directories(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2, 2)}, "config": argparse.Namespace(lr=0.1)}, bad / "ckpt_1.pt")
    with pytest.raises(TaskError, match="weights_only"):
        trajectory_from_checkpoints(bad)
    with pytest.raises(FileNotFoundError):
        trajectory_from_checkpoints(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaskError, match="no checkpoint files"):
        trajectory_from_checkpoints(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    torch.save([torch.ones(2)], odd / "ckpt_1.pt")
    with pytest.raises(TaskError, match="expected a state dict"):
        trajectory_from_checkpoints(odd)


def test_a_rerun_in_progress_shadows_the_older_finished_file(tmp_path):
    import os

    with TrajectoryRecorder(_model(), tmp_path, run="r") as rec:
        rec.log(0)
        rec.log(1)
    rerun = TrajectoryRecorder(_model(), tmp_path, run="r")
    rerun.log(0, train_loss=2.0)
    finished = (tmp_path / "run-r.parquet").stat().st_mtime
    os.utime(tmp_path / "run-r.jsonl", (finished + 10, finished + 10))
    ts = load_trajectories(tmp_path)
    assert ts.frame["step"].tolist() == [0] and ts.metadata["incomplete"] is True
    os.utime(tmp_path / "run-r.jsonl", (finished - 10, finished - 10))  # a stale log loses
    assert load_trajectories(tmp_path).frame["step"].tolist() == [0, 1]


def test_random_run_ids_are_recorded_under_their_own_name_or_refused(tmp_path):
    """Issue 13, property test: a random run id (separators, dots, control and non-ASCII
    characters) either round-trips through the recorder and the loader into one file inside
    the output folder, or is refused with a TaskError before anything is written."""
    rng = np.random.default_rng(2026)
    alphabet = list("abcXYZ019-_.~ ") + ["/", "\\", "\t", "\n", "\x00", ":", "é", "λ", "..", "💥", "*", "?"]
    model = _model()
    for case in range(40):
        run = "".join(rng.choice(alphabet, size=int(rng.integers(0, 9))))
        out = tmp_path / f"case{case}" / "out"
        try:
            recorder = TrajectoryRecorder(model, out, run=run, every=1)
        except TaskError as exc:
            assert "run id" in str(exc)
            assert not (tmp_path / f"case{case}").exists() or not any(
                p.is_file() for p in (tmp_path / f"case{case}").rglob("*"))
            continue
        with recorder as rec:
            for step in range(3):
                rec.log(step, eval_accuracy=0.5)
        files = [p for p in (tmp_path / f"case{case}").rglob("*") if p.is_file()]
        assert len(files) == 1 and files[0].parent == out, (run, files)
        assert load_trajectories(out).run_ids == [run], run
