"""A seed ensemble's forward pass for plain MLPs, on stacked weights without ``vmap``.

For a model that is an ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free
elementwise activations (the MLPs of sparse parities, MNIST and digits), the
ensemble's forward pass is a chain of batched matrix products over the leading seed
dimension (``torch.baddbmm``) and activations applied to the whole (S, N, features)
tensor at once. This skips ``vmap``'s per-call bookkeeping, which dominates the step
of such small models.

The linear layer is a custom autograd function so that the weight gradient comes
out as ``grad^T x`` in the weight's own (S, out, in) layout. Autograd's
``baddbmm`` backward would produce ``x^T grad`` (S, in, out) instead: for a narrow
output layer (two logits) that is a batched GEMM with two output columns, which MKL
runs an order of magnitude slower than the same product transposed.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

#: Parameter-free modules that act elementwise, so they apply unchanged to a stacked
#: (S, N, features) tensor. Exact types only: a subclass may override ``forward``.
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
)


@dataclasses.dataclass(frozen=True)
class StackedLayer:
    """One step of a :class:`StackedMLP`: a linear layer (by parameter name) or an activation.

    Attributes
    ----------
    weight, bias : str or None
        State-dict names of a linear layer's weight (out, in) and bias (out,); ``weight``
        is None for an activation, ``bias`` is None for a linear layer without bias.
    activation : nn.Module or None
        The elementwise module (stateless, so the skeleton's own instance serves all seeds).
    """

    weight: str | None = None
    bias: str | None = None
    activation: nn.Module | None = None


@dataclasses.dataclass(frozen=True)
class StackedMLP:
    """The layers of a plain MLP, applied to stacked parameters (see :func:`stacked_mlp_plan`)."""

    layers: tuple[StackedLayer, ...]

    def __call__(
        self, params: dict[str, torch.Tensor], inputs: torch.Tensor, n_members: int, per_member: bool = True
    ) -> torch.Tensor:
        """Outputs of all members.

        Parameters
        ----------
        params : dict of str to Tensor
            Stacked parameters, each of shape (S, *shape in the model).
        inputs : Tensor
            (S, *batch, in) if ``per_member``, else (*batch, in) shared by all members.
        n_members : int
            S.
        per_member : bool

        Returns
        -------
        Tensor
            (S, *batch, out).
        """
        if per_member:
            batch_shape = inputs.shape[1:-1]
            h = inputs.reshape(n_members, -1, inputs.shape[-1])
        else:  # a stride-0 member dimension: no copy of the shared inputs
            batch_shape = inputs.shape[:-1]
            h = inputs.reshape(1, -1, inputs.shape[-1]).expand(n_members, -1, -1)
        for layer in self.layers:
            if layer.activation is not None:
                h = layer.activation(h)
            else:
                bias = None if layer.bias is None else params[layer.bias]
                h = StackedLinear.apply(h, params[layer.weight], bias)
        return h.reshape(n_members, *batch_shape, h.shape[-1])


def stacked_mlp_plan(model: nn.Module) -> StackedMLP | None:
    """The :class:`StackedMLP` of ``model``, or None if it is not a plain MLP.

    A plain MLP is an ``nn.Sequential`` (possibly nested) whose leaves are ``nn.Linear``
    layers and :data:`ELEMENTWISE_MODULES`, with at least one linear layer, no module
    hooks and no module used twice (tied layers go through ``functional_call``).
    """
    layers: list[StackedLayer] = []
    seen: set[int] = set()

    def visit(module: nn.Module, prefix: str) -> bool:
        if id(module) in seen or module._forward_hooks or module._forward_pre_hooks:
            return False
        seen.add(id(module))
        if type(module) is nn.Sequential:
            return all(visit(child, f"{prefix}{name}.") for name, child in module._modules.items())
        if type(module) is nn.Linear:
            bias = f"{prefix}bias" if module.bias is not None else None
            layers.append(StackedLayer(weight=f"{prefix}weight", bias=bias))
            return True
        if type(module) in ELEMENTWISE_MODULES:
            layers.append(StackedLayer(activation=module))
            return True
        return False

    if not visit(model, "") or not any(layer.weight is not None for layer in layers):
        return None
    return StackedMLP(tuple(layers))


class StackedLinear(torch.autograd.Function):
    """``x W_s^T + b_s`` for every member s: x (S, N, in), weight (S, out, in), bias (S, out) or None."""

    # the combined forward(ctx, ...) form: with a separate setup_context, every apply
    # binds the arguments through inspect.signature, which costs more than the product
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        if bias is None:
            return torch.bmm(inputs, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = torch.bmm(grad, weight) if needs_x else None
        # grad^T x lands in the weight's (S, out, in) layout (see the module docstring)
        grad_weight = torch.bmm(grad.transpose(1, 2), x) if needs_weight else None
        grad_bias = grad.sum(1) if needs_bias else None
        return grad_x, grad_weight, grad_bias
