"""Small tasks used by the tests of the loop, the ensembles and ``collect``."""

from __future__ import annotations

import torch
from torch import nn

from bayes_trainmap.tasks.base import Task, TaskData
from bayes_trainmap.tasks.registry import register_task


def _blobs(seed: int, n: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(n, 4, generator=gen) + 2.0 * nn.functional.one_hot(y, 4).float()
    return x * scale, y


class _ToyBase(Task):
    default_config = {"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.01, "batch_size": 8,
                      "steps": 12, "eval_every": 4, "scale_seed0": 1.0}
    threshold = 0.9

    def build_data(self, seed: int) -> TaskData:
        x, y = _blobs(100 + seed, 40)
        xe, ye = _blobs(200 + seed, 20)
        scale = self.config["scale_seed0"] if seed == 0 else 1.0
        return TaskData(x * scale, y, xe, ye)


@register_task
class BatchNormToyTask(_ToyBase):
    """Batch norm in train mode: cannot be vmapped, must fall back to sequential."""

    name = "toy_batchnorm"

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


class _ItemInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        # data-dependent Python control flow: vmap rejects .item()
        return self.lin(x) * (1.0 if float(x.abs().sum().item()) >= 0 else 2.0)


@register_task
class UnvmappableToyTask(_ToyBase):
    """A model that only fails once vmap traces it (found by the probe step)."""

    name = "toy_unvmappable"

    def build_model(self) -> nn.Module:
        return _ItemInForward()


@register_task
class ExplodingToyTask(_ToyBase):
    """Seed 0 sees inputs scaled by 1e30 and diverges; other seeds train normally."""

    name = "toy_exploding"
    data_depends_on_seed = True
    default_config = {**_ToyBase.default_config, "optimizer": "sgd", "lr": 0.5, "scale_seed0": 1e30}

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


@register_task
class CustomMetricsToyTask(_ToyBase):
    """Overrides ``metrics`` (a squared-error loss on one-hot targets), so ensembles vmap it."""

    name = "toy_custom_metrics"
    data_depends_on_seed = True

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

    def metrics(self, outputs, targets):
        one_hot = nn.functional.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
        loss_sum = (outputs - one_hot).square().sum()
        correct = (outputs.argmax(-1) == targets).sum().to(outputs.dtype)
        return loss_sum, correct, torch.tensor(float(len(targets)), dtype=outputs.dtype)


@register_task
class AugmentedToyTask(_ToyBase):
    """Random input noise per training batch, drawn from the loop's per-seed generator."""

    name = "toy_augmented"

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))

    def transform_batch(self, inputs, targets, generator):
        if generator is None:
            return inputs, targets
        return inputs + 0.5 * torch.randn(inputs.shape, generator=generator), targets
