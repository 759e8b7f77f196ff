"""The hand-written stacked MLP pass (tasks.stacked_mlp) against autograd on each member alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayes_trainmap.tasks.ensemble import IGNORE_INDEX, _cross_entropy_output_gradient
from bayes_trainmap.tasks.stacked_mlp import stacked_mlp_plan


def _members(build, n_members: int) -> list[nn.Module]:
    models = []
    for seed in range(n_members):
        torch.manual_seed(seed)
        models.append(build().double())
    return models


def _stack(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    names = [name for name, _ in models[0].named_parameters()]
    return {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]) for name in names}


ARCHITECTURES = {
    "relu": lambda: nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 3)),
    "tanh-sigmoid-deep": lambda: nn.Sequential(
        nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 8, bias=False), nn.Sigmoid(), nn.Linear(8, 3)
    ),
    "nested-identity": lambda: nn.Sequential(
        nn.Sequential(nn.Linear(7, 5), nn.ReLU()), nn.Identity(), nn.Linear(5, 2)
    ),
    "activation-first": lambda: nn.Sequential(nn.Tanh(), nn.Linear(7, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 3)),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_and_gradients_equal_autograd_per_member(name):
    n_members, batch = 4, 6
    models = _members(ARCHITECTURES[name], n_members)
    plan = stacked_mlp_plan(models[0])
    assert plan is not None
    params = _stack(models)
    generator = torch.Generator().manual_seed(11)
    inputs = torch.randn(n_members, batch, 7, dtype=torch.float64, generator=generator)
    upstream = torch.randn(n_members, batch, 3 if name != "nested-identity" else 2, dtype=torch.float64,
                           generator=generator)

    outputs = plan.forward(params, inputs, n_members)
    shared = plan.forward(params, inputs[0], n_members, per_member=False)
    grads = plan.gradients(params, inputs.clone(), lambda out: upstream.clone())
    assert list(grads) == list(params)
    for s, model in enumerate(models):
        out = model(inputs[s])
        torch.testing.assert_close(outputs[s], out, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(shared[s], model(inputs[0]), rtol=1e-12, atol=1e-12)
        # the loss <upstream, outputs> has exactly ``upstream`` as its output gradient
        reference = torch.autograd.grad((out * upstream[s]).sum(), list(model.parameters()))
        for (param_name, _), expected in zip(model.named_parameters(), reference):
            torch.testing.assert_close(grads[param_name][s], expected, rtol=1e-12, atol=1e-12)


def test_cross_entropy_output_gradient_equals_autograd_with_ignored_positions():
    generator = torch.Generator().manual_seed(5)
    for n_classes in (2, 40):  # both softmax layouts
        logits = torch.randn(3, 8, n_classes, dtype=torch.float64, generator=generator, requires_grad=True)
        targets = torch.randint(0, n_classes, (3, 8), generator=generator)
        targets[1, :5] = IGNORE_INDEX
        loss = sum(
            nn.functional.cross_entropy(logits[s], targets[s], ignore_index=IGNORE_INDEX, reduction="mean")
            for s in range(3)
        )
        (expected,) = torch.autograd.grad(loss, logits)
        got = _cross_entropy_output_gradient(logits.detach().clone(), targets)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


class _ReLUSubclass(nn.ReLU):
    def forward(self, x):  # pragma: no cover - never called
        return super().forward(x) * 2


def test_plan_refuses_what_it_cannot_run_exactly():
    assert stacked_mlp_plan(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2))) is None
    assert stacked_mlp_plan(nn.Sequential(nn.Linear(3, 4), _ReLUSubclass(), nn.Linear(4, 2))) is None
    assert stacked_mlp_plan(nn.Sequential(nn.ReLU())) is None  # no linear layer
    shared = nn.Linear(4, 4)
    assert stacked_mlp_plan(nn.Sequential(shared, nn.ReLU(), shared)) is None  # tied weights
    hooked = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    hooked[0].register_forward_hook(lambda *args: None)
    assert stacked_mlp_plan(hooked) is None
    extra = nn.Sequential(nn.Linear(3, 4))
    extra.scale = nn.Parameter(torch.ones(1))
    assert stacked_mlp_plan(extra) is None
