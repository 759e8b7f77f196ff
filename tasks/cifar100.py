"""CIFAR-100 with a CIFAR ResNet18 (paper section 3.2 and appendix D, Table 7).

Reads the real CIFAR-100 through ``torchvision.datasets.CIFAR100`` from
``data_root`` (default ``$BAYES_TRAINMAP_DATA`` or ``~/.cache/bayes_trainmap``);
it downloads only when the configuration says ``download: true``. Images are kept
as uint8 tensors; training batches get a random crop (padding 4) and a random
horizontal flip drawn from the run's transform generator, and every batch is
normalised per channel. Defaults follow Table 7: AdamW, lr 1e-3, weight decay 1.0,
batch 256. The paper does not state the training length; the default is 19,600
steps (~100 epochs) with a checkpoint every 196 steps (~1 epoch), and training
accuracy is measured on the first 10,000 training images.

Variant ``destabilized`` (section 3.3, Figure 4): no batch normalisation and no
residual connections. Batch norm in training mode cannot be vmapped, so the
default variant always trains seeds sequentially.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .datasets.cifar import load_cifar100, normalize_images, random_crop_flip
from .models.resnet import CifarResNet18

#: Environment variable naming the default parent directory of downloaded data sets.
DATA_ENV = "BAYES_TRAINMAP_DATA"


def default_data_root() -> Path:
    """``$BAYES_TRAINMAP_DATA`` or ``~/.cache/bayes_trainmap``."""
    return Path(os.environ.get(DATA_ENV, Path.home() / ".cache" / "bayes_trainmap")).expanduser()


class Cifar100Task(Task, spec=BUILTIN_SPECS["cifar100"]):
    """The ``cifar100`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    vmappable = False

    def __init__(self, variant: str = "default", size: str = "default", overrides: dict[str, Any] | None = None):
        super().__init__(variant, size, overrides)
        # Without batch norm the network is vmappable; with it (training mode), not.
        self.vmappable = not self.config["batch_norm"]

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        root = Path(c["data_root"]).expanduser() if c["data_root"] else default_data_root()
        return TaskData(*load_cifar100(root, download=bool(c["download"]), checksums=c["checksums"]))

    def build_model(self) -> nn.Module:
        c = self.config
        return CifarResNet18(100, batch_norm=bool(c["batch_norm"]), residual=bool(c["residual"]), width=int(c["width"]))

    def transform_batch(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> (augmented when training) normalised float32 images."""
        if generator is not None and self.config["augment"]:
            inputs = random_crop_flip(inputs, generator)
        return normalize_images(inputs), targets
