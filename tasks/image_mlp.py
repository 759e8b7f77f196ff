"""Image classification with a one-hidden-layer MLP: MNIST (paper Table 8) and offline digits.

``mnist`` reads the real MNIST through ``torchvision.datasets.MNIST`` from
``data_root`` (raw IDX files under ``<data_root>/MNIST/raw``); it downloads only when
the configuration says ``download: true`` (CLI ``--download``). Images are flattened
to 784 values in [0, 1] and normalised with MNIST's mean and standard deviation. The
MLP is 784-800-10 with ReLU, trained by AdamW (lr 1e-3, weight decay 1.0, batch 256).

``digits`` is the same kind of model on scikit-learn's bundled 8x8 handwritten
digits (1797 images, no download): 64-64-10, AdamW (lr 1e-3, weight decay 1.0),
batch 64, with a fixed 80/20 split, so the image-classification dynamics can be
produced offline in about a minute for 40 seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .loop import derive_seed

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def mlp(n_inputs: int, hidden: int, n_classes: int) -> nn.Module:
    """``Linear(n_inputs, hidden) -> ReLU -> Linear(hidden, n_classes)``."""
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def load_mnist_tensors(root: str | os.PathLike, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` read by torchvision from ``root``."""
    from torchvision.datasets import MNIST

    root = Path(root).expanduser()
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except RuntimeError as exc:
        raise TaskError(
            f"MNIST not found under {root / 'MNIST' / 'raw'} ({exc}); pass --download to fetch it "
            "or --data-root to point at an existing copy"
        ) from exc
    return dataset.data, dataset.targets.long()


class MnistTask(Task, spec=BUILTIN_SPECS["mnist"]):
    """The ``mnist`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        x_train, y_train = load_mnist_tensors(c["data_root"], True, bool(c["download"]))
        x_eval, y_eval = load_mnist_tensors(c["data_root"], False, bool(c["download"]))
        if c["n_train"] is not None:
            x_train, y_train = x_train[: c["n_train"]], y_train[: c["n_train"]]
        if c["n_eval"] is not None:
            x_eval, y_eval = x_eval[: c["n_eval"]], y_eval[: c["n_eval"]]

        def prepare(images: torch.Tensor) -> torch.Tensor:
            return ((images.reshape(len(images), -1).float() / 255.0) - MNIST_MEAN) / MNIST_STD

        return TaskData(prepare(x_train), y_train, prepare(x_eval), y_eval)

    def build_model(self) -> nn.Module:
        return mlp(28 * 28, self.config["hidden"], 10)


class DigitsTask(Task, spec=BUILTIN_SPECS["digits"]):
    """The ``digits`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def build_data(self, seed: int) -> TaskData:
        from sklearn.datasets import load_digits

        c = self.config
        if not 0 < c["eval_fraction"] < 1:
            raise TaskError(f"eval_fraction must be in (0, 1), got {c['eval_fraction']!r}")
        digits = load_digits()
        x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.as_tensor(digits.target, dtype=torch.long)
        # the split is fixed by split_seed, not by the run seed: all runs share one data set
        generator = torch.Generator().manual_seed(derive_seed(c["split_seed"], "data"))
        order = torch.randperm(len(x), generator=generator)
        n_eval = int(round(c["eval_fraction"] * len(x)))
        eval_idx, train_idx = order[:n_eval], order[n_eval:]
        return TaskData(x[train_idx], y[train_idx], x[eval_idx], y[eval_idx])

    def build_model(self) -> nn.Module:
        return mlp(64, self.config["hidden"], 10)
