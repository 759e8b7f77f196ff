"""The Lightning and Hugging Face callbacks record what TrajectoryRecorder records."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.data import load_trajectories
from bayes_trainmap.tasks.recorder import TrajectoryRecorder

torch.set_num_threads(1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def _data(n: int = 24):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen)
    return x, (x[:, 0] > 0).long()


def _reference_rows(snapshots: dict[int, dict], tmp_path) -> dict[int, dict[str, float]]:
    """Statistics of each snapshot by TrajectoryRecorder on a fresh copy of the network."""
    net = _net()
    rec = TrajectoryRecorder(net, tmp_path / "reference.parquet", every=1)
    for step in sorted(snapshots):
        net.load_state_dict(snapshots[step])
        rec.log(step)
    return {row["step"]: row for row in rec.rows}


def _assert_same_statistics(ts, reference):
    assert ts.frame["step"].tolist() == sorted(reference)
    for _, row in ts.frame.iterrows():
        for name in STATISTIC_NAMES:
            assert row[name] == pytest.approx(reference[row["step"]][name], rel=1e-12, abs=1e-15)


# ------------------------------------------------------------------------- Lightning
lightning = pytest.importorskip("lightning", reason="the Lightning callback test needs lightning (test extra)")


class _Module(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class _Snapshots(lightning.Callback):
    """Independent record of the weights and metrics at the steps the callback should record."""

    def __init__(self, every):
        self.every, self.weights, self.metrics = every, {}, {}

    def _take(self, trainer, module):
        step = trainer.global_step
        self.weights[step] = {k[len("net."):]: v.detach().clone() for k, v in module.state_dict().items()}
        self.metrics[step] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_train_start(self, trainer, module):
        self._take(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0 or trainer.global_step == trainer.max_steps:
            self._take(trainer, module)


def test_lightning_callback_records_the_recorder_statistics(tmp_path):
    from bayes_trainmap.integrations.lightning import TrainMapCallback

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    callback = TrainMapCallback(tmp_path / "runs", every=2, run="pl", seed=3)
    snapshots = _Snapshots(2)
    trainer = lightning.Trainer(max_steps=7, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[snapshots, callback])
    trainer.fit(_Module(), loader)
    ts = load_trajectories(tmp_path / "runs")
    assert ts.run_ids == ["pl"] and ts.metadata["loop"] == "lightning" and "incomplete" not in ts.metadata
    assert ts.frame["step"].tolist() == [0, 2, 4, 6, 7]
    _assert_same_statistics(ts, _reference_rows(snapshots.weights, tmp_path))
    logged = [snapshots.metrics[s].get("train_loss", np.nan) for s in ts.frame["step"]]
    np.testing.assert_allclose(ts.frame["train_loss"].to_numpy(), logged, rtol=1e-7)
    assert np.isnan(logged[0]) and np.isfinite(logged[1:]).all()


def test_callbacks_refuse_unsafe_run_ids_at_construction(tmp_path):
    from bayes_trainmap.integrations.lightning import TrainMapCallback

    with pytest.raises(TaskError, match="run id"):
        TrainMapCallback(tmp_path, run="../escaped")


# ----------------------------------------------------------------------- Hugging Face
def test_huggingface_callback_records_the_recorder_statistics(tmp_path):
    transformers = pytest.importorskip("transformers", reason="the Hugging Face test needs transformers (test extra)")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (test extra)")
    from bayes_trainmap.integrations.huggingface import TrainMapCallback

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    class Dataset(torch.utils.data.Dataset):
        def __init__(self):
            self.x, self.y = _data()

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class Snapshots(transformers.TrainerCallback):
        def __init__(self):
            self.weights, self.logs = {}, {}

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.weights[0] = {k[len("net."):]: v.detach().clone() for k, v in model.state_dict().items()}

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % 2 == 0 or state.global_step == state.max_steps:
                self.weights[state.global_step] = {
                    k[len("net."):]: v.detach().clone() for k, v in model.state_dict().items()}

        def on_log(self, args, state, control, logs=None, **kw):
            self.logs.setdefault(state.global_step, {}).update(copy.deepcopy(logs))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=5, per_device_train_batch_size=4, learning_rate=0.5,
        logging_steps=2, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, optim="sgd", lr_scheduler_type="constant", seed=0,
    )
    snapshots = Snapshots()
    callback = TrainMapCallback(tmp_path / "runs", every=2, run="hf")
    trainer = transformers.Trainer(model=Wrapped(), args=args, train_dataset=Dataset(),
                                   callbacks=[snapshots, callback])
    trainer.train()
    ts = load_trajectories(tmp_path / "runs")
    assert ts.run_ids == ["hf"] and ts.metadata["loop"] == "transformers"
    assert ts.frame["step"].tolist() == [0, 2, 4, 5]
    _assert_same_statistics(ts, _reference_rows(snapshots.weights, tmp_path))
    for step in (2, 4):  # the loss the Trainer logged at that very step
        row = ts.frame[ts.frame["step"] == step].iloc[0]
        assert row["train_loss"] == pytest.approx(snapshots.logs[step]["loss"], rel=1e-12)
    # the end-of-training summary and the fractional epoch are not outcomes
    assert "train_runtime" not in ts.frame.columns and "epoch" not in ts.frame.columns


def test_lightning_callback_monitors_against_a_fitted_map(tmp_path, planted_set):
    from bayes_trainmap.fitting import pipeline
    from bayes_trainmap.integrations.lightning import TrainMapCallback
    from bayes_trainmap.monitor.model import load_map_model
    from bayes_trainmap.monitor.online import RunMonitor

    fit = pipeline.fit(planted_set, states=3, n_restarts=1, progress=False, analyze=False).save(
        tmp_path / "fit", report=False
    )
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    callback = TrainMapCallback(tmp_path / "runs", every=1, run="pl", monitor=fit, normalization="reference")
    trainer = lightning.Trainer(max_steps=5, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(_Module(), loader)
    frame = load_trajectories(tmp_path / "runs").frame
    model = load_map_model(fit)
    monitor = RunMonitor(model, "reference")
    for _, row in frame.iterrows():
        expected = monitor.update(row[model.features].to_numpy(dtype=float), int(row["step"]))
    assert callback.status.n_checkpoints == len(frame) == 6
    np.testing.assert_allclose(callback.status.filtered, expected.filtered, rtol=1e-12)
