"""modular_addition_mlp: one-hot inputs, the split, the stacked-MLP ensemble path, smoke training."""

from __future__ import annotations

import numpy as np
import torch

from bayes_trainmap.tasks.ensemble import train_ensemble
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.modular_addition_mlp import one_hot_pairs
from bayes_trainmap.tasks.registry import get_task
from bayes_trainmap.tasks.stacked_mlp import stacked_mlp_plan


def test_inputs_encode_both_operands_and_targets_are_their_sum():
    task = get_task("modular_addition_mlp")
    p = task.config["p"]
    data = task.build_data(3)
    assert data.n_train == round(0.5 * p * p) == task.config["batch_size"]  # full batch
    for x, y in ((data.train_inputs, data.train_targets), (data.eval_inputs, data.eval_targets)):
        assert x.shape[1] == 2 * p and set(x.unique().tolist()) == {0.0, 1.0}
        assert (x[:, :p].sum(1) == 1).all() and (x[:, p:].sum(1) == 1).all()
        a, b = x[:, :p].argmax(1), x[:, p:].argmax(1)
        assert torch.equal(y, (a + b) % p)
    # every problem once across the two splits; the split depends on the seed
    codes = torch.cat([data.train_inputs, data.eval_inputs])
    pairs = {(int(i), int(j)) for i, j in zip(codes[:, :p].argmax(1), codes[:, p:].argmax(1))}
    assert len(pairs) == p * p
    assert not torch.equal(task.build_data(4).train_inputs, data.train_inputs)


def test_one_hot_pairs_by_hand():
    tokens = torch.tensor([[0, 2, 3], [1, 1, 3]])
    expected = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0]], dtype=torch.float32)
    assert torch.equal(one_hot_pairs(tokens, 3), expected)


def test_trains_on_the_stacked_mlp_path_like_sequential():
    task = get_task("modular_addition_mlp", size="smoke", steps=20)
    assert stacked_mlp_plan(task.build_model()) is not None
    ensemble = train_ensemble(task, [3, 4], device="cpu")
    assert [r.trainer for r in ensemble] == ["ensemble", "ensemble"]
    alone = train_sequential(task, 4, device="cpu").frame
    cols = ["l1", "l2", "spectral", "mean_lambda", "train_loss"]
    np.testing.assert_allclose(ensemble[1].frame[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-4)


def test_smoke_training_decreases_loss():
    frame = train_sequential(get_task("modular_addition_mlp", size="smoke"), seed=0, device="cpu").frame
    assert frame["step"].tolist() == [0, 10, 20, 30, 40]
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert np.isfinite(frame.drop(columns=["run"]).to_numpy(dtype=float)).all()
