"""The recorder hook and the checkpoint-directory importer, read back by bayes_trainmap.data."""

from __future__ import annotations

import argparse

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


def test_recorder_writes_nothing_when_the_loop_raises(tmp_path):
    model = _model()
    with pytest.raises(RuntimeError):
        with TrajectoryRecorder(model, tmp_path, seed=0) as rec:
            rec.log(0)
            raise RuntimeError("training crashed")
    assert list(tmp_path.iterdir()) == []


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
