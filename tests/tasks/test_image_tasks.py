"""mnist (through torchvision, from tiny IDX files written here), digits and sparse parities at smoke size."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.tasks.image_mlp import MNIST_MEAN, MNIST_STD
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.registry import get_task


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The raw IDX format MNIST ships in: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_tiny_mnist(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A learnable MNIST look-alike: class c lights up a 4x4 patch at a class-specific place."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, col = 2 + 6 * (c // 4), 2 + 6 * (c % 4)
            images[i, r : r + 4, col : col + 4] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def test_mnist_reads_idx_files_through_torchvision_and_trains(tmp_path):
    arrays = write_tiny_mnist(tmp_path)
    task = get_task("mnist", size="smoke", data_root=str(tmp_path), steps=40)
    data = task.build_data(0)
    images, labels = arrays["train"]
    assert data.train_inputs.shape == (120, 784) and data.eval_inputs.shape == (40, 784)
    np.testing.assert_array_equal(data.train_targets.numpy(), labels)
    expected = (images.reshape(120, -1) / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(data.train_inputs.numpy(), expected, rtol=1e-5, atol=1e-6)
    run = train_sequential(task, 0, device="cpu", data=data)
    frame = run.frame
    assert frame["train_loss"].iloc[-1] < 0.5 * frame["train_loss"].iloc[0]
    assert frame["eval_accuracy"].iloc[-1] > 0.5  # chance is 0.1
    assert task.parameter_selection(task.build_model()).names == ("0.weight", "0.bias", "2.weight", "2.bias")


def test_mnist_default_config_is_the_papers_and_missing_data_is_explained(tmp_path):
    config = get_task("mnist").config
    assert (config["hidden"], config["optimizer"], config["lr"], config["weight_decay"], config["batch_size"]) == (
        800, "adamw", 1e-3, 1.0, 256)
    assert config["download"] is False
    with pytest.raises(TaskError, match="--download"):
        get_task("mnist", size="smoke", data_root=str(tmp_path / "nothing")).build_data(0)


def test_digits_trains_offline_at_smoke_size():
    task = get_task("digits", size="smoke", steps=60)
    data = task.build_data(0)
    assert data.n_train + len(data.eval_inputs) == 1797 and data.train_inputs.shape[1] == 64
    assert float(data.train_inputs.max()) == 1.0 and float(data.train_inputs.min()) == 0.0
    # the split does not depend on the run seed: every seed sees the same data
    assert torch.equal(task.build_data(5).eval_targets, data.eval_targets)
    frame = train_sequential(task, 0, device="cpu", data=data).frame
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert frame["eval_accuracy"].iloc[-1] > 0.5


def test_sparse_parities_data_and_defaults():
    task = get_task("sparse_parities")
    c = task.config
    assert (c["n_bits"], c["k"], c["n_train"], c["n_eval"], c["hidden"]) == (40, 3, 1000, 100, 128)
    assert (c["optimizer"], c["lr"], c["weight_decay"], c["batch_size"]) == ("sgd", 0.1, 0.01, 32)
    data = task.build_data(3)
    x, y = data.train_inputs, data.train_targets
    assert x.shape == (1000, 40) and set(x.unique().tolist()) == {-1.0, 1.0}
    # exactly one triple of bits explains every label: the parity of its -1 entries
    bits = ((1 - x) / 2).long()
    explaining = [
        (i, j, k)
        for i in range(40) for j in range(i + 1, 40) for k in range(j + 1, 40)
        if torch.equal((bits[:, i] + bits[:, j] + bits[:, k]) % 2, y)
    ]
    assert len(explaining) == 1
    assert not torch.equal(task.build_data(4).train_inputs, x)  # each seed draws its own data


def test_sparse_parities_smoke_learns():
    task = get_task("sparse_parities", size="smoke", n_bits=5, hidden=64, steps=500, eval_every=100)
    frame = train_sequential(task, 0, device="cpu").frame
    assert frame["eval_accuracy"].iloc[-1] > 0.9 and frame["eval_accuracy"].iloc[0] < 0.8
