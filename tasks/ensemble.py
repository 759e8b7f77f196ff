"""Seed ensembles: S seeds of one task trained together with ``torch.func``.

The S models' parameters are stacked along a leading seed dimension
(``torch.func.stack_module_state``); the forward pass is ``vmap`` over a functional
call of one stateless (meta-device) copy of the architecture -- ``functional_call``
itself for modules with tied or parametrized weights, a direct binding of the tensors
(the same thing with less per-call bookkeeping) otherwise -- so each seed sees its
own initialisation, its own minibatch (its own data order) and, for tasks whose data
depends on the seed, its own data set. Because the seeds' losses are independent,
the gradient of their *sum* with respect to the stacked parameters is exactly the
stack of per-seed gradients, so one ordinary backward pass serves all seeds. The
optimiser (:class:`FunctionalOptimizer`) mirrors ``torch.optim``'s single-tensor
SGD / Adam / AdamW updates on the stacked tensors.

Plain MLPs (``nn.Sequential`` of ``nn.Linear`` and elementwise activations) skip
``vmap`` and autograd: :mod:`tasks.stacked_mlp` runs their forward and backward
passes as batched matrix products on the stacked weights, which for such small
models is several times cheaper than ``vmap``'s and autograd's per-call bookkeeping.

Ensemble and sequential training of a seed agree up to floating-point rounding of
the batched kernels: the tests require every recorded value to agree to 1e-5
relative (1e-7 absolute) over the smoke runs (20 to 40 steps, float32). Training
amplifies rounding differences over many steps (``benchmarks/bench_collect.py``
prints the largest difference over its longer runs), so equality is a short-horizon
property; the same seed trained twice the same way is bitwise identical on CPU.

Architectures that cannot be vmapped (batch norm in training mode, dropout, any
operation ``vmap`` rejects) fall back to sequential training automatically, with a
logged warning.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from bayes_trainmap.core.schema import OUTCOME_COLUMNS

from .base import IGNORE_INDEX, OptimizerSpec, Task, TaskData
from .loop import (
    RunResult,
    derive_seed,
    drive,
    evaluation_sets,
    init_model,
    resolve_device,
    task_transforms_batches,
    train_sequential,
)
from .stacked_mlp import stacked_mlp_plan
from .stats import statistics_tensor

logger = logging.getLogger(__name__)


class FunctionalOptimizer:
    """``torch.optim`` SGD / Adam / AdamW on stacked parameter tensors (in place).

    The arithmetic follows ``torch.optim``'s single-tensor (``foreach=False``) code
    paths (momentum-free SGD applies the coupled weight decay as ``p (1 - lr wd)``
    in place), so a one-member ensemble matches ``torch.optim`` up to rounding. Each
    operation is issued once for all tensors (``torch._foreach_*``, elementwise the
    same arithmetic): a small model's update is a dozen tiny kernels per tensor, so
    the per-call overhead, not the arithmetic, is what costs.
    """

    def __init__(self, spec: OptimizerSpec, params: dict[str, torch.Tensor]):
        self.spec = spec
        self.step_count = 0
        self.names = list(params)
        self.state: dict[str, list[torch.Tensor]] = {}
        if spec.name != "sgd":
            self.state["exp_avg"] = [torch.zeros_like(p) for p in params.values()]
            self.state["exp_avg_sq"] = [torch.zeros_like(p) for p in params.values()]

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Update ``params`` in place; both dicts have the names given at construction."""
        self.step_count += 1
        p = [params[n] for n in self.names]
        g = [grads[n] for n in self.names]
        if self.spec.name == "sgd":
            self._sgd(p, g)
        else:
            self._adam(p, g)

    def _sgd(self, p: list[torch.Tensor], g: list[torch.Tensor]) -> None:
        spec = self.spec
        if spec.momentum:
            if spec.weight_decay:
                g = torch._foreach_add(g, p, alpha=spec.weight_decay)
            buf = self.state.get("momentum_buffer")
            if buf is None:
                buf = self.state["momentum_buffer"] = [torch.clone(x).detach() for x in g]
            else:
                torch._foreach_mul_(buf, spec.momentum)
                torch._foreach_add_(buf, g)
            torch._foreach_add_(p, buf, alpha=-spec.lr)
        else:
            # p - lr (g + wd p) without allocating g + wd p (equal up to rounding)
            if spec.weight_decay:
                torch._foreach_mul_(p, 1 - spec.lr * spec.weight_decay)
            torch._foreach_add_(p, g, alpha=-spec.lr)

    def _adam(self, p: list[torch.Tensor], g: list[torch.Tensor]) -> None:
        spec = self.spec
        beta1, beta2 = spec.betas
        if spec.name == "adamw":
            torch._foreach_mul_(p, 1 - spec.lr * spec.weight_decay)
        elif spec.weight_decay:
            g = torch._foreach_add(g, p, alpha=spec.weight_decay)
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, g, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.step_count
        bias_correction2 = 1 - beta2**self.step_count
        step_size = spec.lr / bias_correction1
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias_correction2))
        torch._foreach_add_(denom, spec.eps)
        torch._foreach_addcdiv_(p, exp_avg, denom, value=-step_size)


def vmap_obstacle(task: Task, model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a vmapped ensemble, or None if nothing is known to stop it."""
    if not task.vmappable:
        return f"task {task.name!r} declares its model not vmappable"
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return f"batch norm with running statistics ({name})"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"dropout ({name}) draws randomness that vmap would share or reorder"
    return None


class EnsembleTrainer:
    """S seeds of one task as stacked parameters (see the module docstring).

    Parameters
    ----------
    task : Task
    seeds : sequence of int
    data : list of TaskData
        One per seed when ``task.data_depends_on_seed``, else a single shared entry.
    device : torch.device
    """

    def __init__(self, task: Task, seeds: Sequence[int], data: list[TaskData], device: torch.device):
        self.task = task
        self.n_members = len(seeds)
        self.device = device
        models = [init_model(task, s) for s in seeds]
        self.selection = task.parameter_selection(models[0])
        # plain Linear/activation stacks skip vmap and autograd altogether (see tasks.stacked_mlp)
        self._mlp = stacked_mlp_plan(models[0])
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().to(device).requires_grad_(self._mlp is None) for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.skeleton = copy.deepcopy(models[0]).to("meta").train()
        self.optimizer = FunctionalOptimizer(task.optimizer(), self.params)
        self._tensor_names = (*self.params, *self.buffers)
        self._vmapped: dict = {}
        # binding tensors directly (see _forward) needs one name per tensor and no parametrizations
        all_names = [n for n, _ in models[0].named_parameters(remove_duplicate=False)]
        all_names += [n for n, _ in models[0].named_buffers(remove_duplicate=False)]
        tied = len(all_names) != len(self._tensor_names)
        self._slots = None if tied or _has_parametrizations(self.skeleton) else _tensor_slots(
            self.skeleton, self._tensor_names)
        self.transforms = task_transforms_batches(task)
        self.generators = [torch.Generator().manual_seed(derive_seed(s, "transform")) for s in seeds]
        self.per_seed_data = len(data) > 1
        if self.per_seed_data:
            stacked = [torch.stack(ts).to(device) for ts in zip(*(_fields(d) for d in data))]
            self.train_x, self.train_y, eval_x, eval_y = stacked  # (S, n, ...)
            m = task.config.get("train_eval_examples")
            m = self.train_x.shape[1] if m is None else int(m)
            self.eval_sets = {"eval": (eval_x, eval_y), "train": (self.train_x[:, :m], self.train_y[:, :m])}
        else:
            d = data[0].to(device)
            self.train_x, self.train_y = d.train_inputs, d.train_targets
            self.eval_sets = evaluation_sets(task, d)
        # eval_batch_size bounds the examples in one forward pass; the ensemble's pass holds
        # S members' chunks at once, so each member gets 1/S of it (also keeps the
        # activations cache-sized instead of tens of MB that are paged in on every call)
        self.eval_batch = max(1, int(task.config.get("eval_batch_size", 4096)) // self.n_members)
        # Task.metrics' default (cross-entropy) has a direct batched form, cheaper than vmap's
        self.default_metrics = type(task).metrics is Task.metrics
        # row offset of each member in the flattened (S * n_train, ...) training tensors
        n_train = self.train_x.shape[1] if self.per_seed_data else self.train_x.shape[0]
        self._member_offset = torch.arange(self.n_members, device=device).unsqueeze(1) * n_train

    # -- one member's computation, vmapped over the seed dimension ------------------------
    def _forward(self, tensors: tuple[torch.Tensor, ...], x):
        # parameters and buffers travel as one flat tuple: cheaper for vmap to flatten than dicts
        if self._slots is None:  # tied weights or parametrizations: the general machinery
            return functional_call(self.skeleton, dict(zip(self._tensor_names, tensors)), (x,))
        # what functional_call does for a plain module, without its per-call bookkeeping
        # (a third of a small model's step): bind the tensors, run, restore the meta tensors
        try:
            for (store, key, _), tensor in zip(self._slots, tensors):
                store[key] = tensor
            return self.skeleton(x)
        finally:
            for store, key, original in self._slots:
                store[key] = original

    def _vmapped_forward(self, x_dim):
        if x_dim not in self._vmapped:
            self._vmapped[x_dim] = vmap(self._forward, in_dims=(0, x_dim), randomness="error")
        return self._vmapped[x_dim]

    def _batched_metrics(self, x, y, x_dim, with_correct: bool = True):
        """Per-seed ``(loss_sum, n_correct, n_counted)``, each (S,); ``x_dim`` 0 (per seed) or None (shared)."""
        if self._mlp is not None:
            outputs = self._mlp.forward(self.params, x, self.n_members, per_member=x_dim == 0)
        else:
            tensors = (*self.params.values(), *self.buffers.values())
            outputs = self._vmapped_forward(x_dim)(tensors, x)
        if self.default_metrics:
            return _cross_entropy_per_member(outputs, y if x_dim == 0 else y.expand(self.n_members, *y.shape),
                                             with_correct)
        return vmap(self.task.metrics, in_dims=(0, x_dim))(outputs, y)

    def _gather(self, indices: torch.Tensor, generators: list[torch.Generator] | None = None):
        idx = indices.to(self.device)
        if self.per_seed_data:
            flat = (idx + self._member_offset).reshape(-1)
            x = self.train_x.flatten(0, 1).index_select(0, flat).reshape(*idx.shape, *self.train_x.shape[2:])
            y = self.train_y.flatten(0, 1).index_select(0, flat).reshape(*idx.shape, *self.train_y.shape[2:])
        else:
            x, y = self.train_x[idx], self.train_y[idx]
        if self.transforms:
            generators = self.generators if generators is None else generators
            pairs = [self.task.transform_batch(x[i], y[i], g) for i, g in enumerate(generators)]
            x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return x, y

    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-member gradients of each member's mean training loss on its batch (S, B, ...)."""
        # seeds are independent, so d(sum of losses)/d(stacked params) = stacked per-seed gradients
        if self._mlp is None:
            loss_sum, _, count = self._batched_metrics(x, y, 0, with_correct=False)
            grads = torch.autograd.grad((loss_sum / count).sum(), list(self.params.values()))
            return dict(zip(self.params, grads))
        with torch.no_grad():
            return self._mlp.gradients(self.params, x, lambda outputs: self._output_gradient(outputs, y))

    def _output_gradient(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d(sum over members of mean loss)/d outputs, for the hand-written MLP backward pass."""
        if self.default_metrics:
            return _cross_entropy_output_gradient(outputs, targets)
        with torch.enable_grad():  # a task's own loss: autograd, but only through the loss
            outputs = outputs.detach().requires_grad_(True)
            loss_sum, _, count = vmap(self.task.metrics)(outputs, targets)
            return torch.autograd.grad((loss_sum / count).sum(), outputs)[0]

    def step(self, indices: torch.Tensor) -> None:
        x, y = self._gather(indices)
        self.optimizer.step(self.params, self._gradients(x, y))

    @torch.no_grad()
    def statistics(self) -> torch.Tensor:
        state = {**self.params, **self.buffers}
        return statistics_tensor({n: state[n] for n in self.selection.names}, self.selection)

    @torch.no_grad()
    def finite(self) -> torch.Tensor:
        ok = torch.ones(self.n_members, dtype=torch.bool, device=self.device)
        for p in self.params.values():
            ok &= torch.isfinite(p).reshape(self.n_members, -1).all(dim=1)
        return ok

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        self.skeleton.eval()
        out: dict[str, torch.Tensor] = {}
        x_dim = 0 if self.per_seed_data else None
        for split, (inputs, targets) in self.eval_sets.items():
            n = inputs.shape[1] if self.per_seed_data else inputs.shape[0]
            loss = correct = count = torch.zeros(self.n_members, dtype=torch.float64, device=self.device)
            for start in range(0, n, self.eval_batch):
                if self.per_seed_data:
                    x, y = inputs[:, start : start + self.eval_batch], targets[:, start : start + self.eval_batch]
                else:
                    x, y = inputs[start : start + self.eval_batch], targets[start : start + self.eval_batch]
                if self.transforms and x_dim == 0:
                    pairs = [self.task.transform_batch(x[i], y[i], None) for i in range(self.n_members)]
                    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
                elif self.transforms:
                    x, y = self.task.transform_batch(x, y, None)
                batch_loss, batch_correct, batch_count = self._batched_metrics(x, y, x_dim)
                loss = loss + batch_loss.double()
                correct, count = correct + batch_correct.double(), count + batch_count.double()
            out[f"{split}_loss"] = loss / count
            out[f"{split}_accuracy"] = correct / count
        self.skeleton.train()
        return {k: out[k] for k in OUTCOME_COLUMNS}

    def probe(self) -> None:
        """One forward/backward pass without an update; raises if the model cannot be vmapped."""
        n = min(self.task.config["batch_size"], self.train_x.shape[1 if self.per_seed_data else 0])
        indices = torch.arange(n).expand(self.n_members, n)
        # throwaway generators: the probe must not consume the runs' transform randomness
        x, y = self._gather(indices, [torch.Generator().manual_seed(0) for _ in range(self.n_members)])
        self._batched_metrics(x, y, 0)
        self._gradients(x, y)


def _has_parametrizations(module: nn.Module) -> bool:
    return any(hasattr(m, "parametrizations") for m in module.modules())


def _tensor_slots(module: nn.Module, names: Sequence[str]) -> list[tuple[dict, str, torch.Tensor]]:
    """``(owning dict, key, current tensor)`` of each named parameter/buffer of ``module``."""
    slots = []
    for name in names:
        prefix, _, key = name.rpartition(".")
        owner = module.get_submodule(prefix) if prefix else module
        store = owner._parameters if key in owner._parameters else owner._buffers
        slots.append((store, key, store[key]))
    return slots


def _cross_entropy_per_member(outputs: torch.Tensor, targets: torch.Tensor, with_correct: bool = True):
    """:meth:`Task.metrics` (the default) for each member: outputs (S, B, ..., C), targets (S, B, ...)."""
    n_members, n_classes = outputs.shape[0], outputs.shape[-1]
    logits = outputs.reshape(-1, n_classes)
    flat = targets.reshape(-1)
    losses = nn.functional.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX, reduction="none")
    counted = flat != IGNORE_INDEX
    loss_sum = losses.reshape(n_members, -1).sum(1)
    count = counted.reshape(n_members, -1).sum(1).to(logits.dtype)
    if not with_correct:
        return loss_sum, None, count
    correct = ((logits.argmax(-1) == flat) & counted).reshape(n_members, -1).sum(1).to(logits.dtype)
    return loss_sum, correct, count


def _cross_entropy_output_gradient(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of ``sum_s loss_sum_s / n_counted_s`` (:meth:`Task.metrics`' default) w.r.t. the logits.

    For outputs (S, B, ..., C) and targets (S, B, ...): ``(softmax - one_hot(target)) /
    n_counted_s`` on counted positions, 0 where the target is ``IGNORE_INDEX``.
    """
    n_members, n_classes = outputs.shape[0], outputs.shape[-1]
    logits = outputs.reshape(-1, n_classes)
    # PyTorch's softmax over the last dimension vectorises over the classes; for a handful
    # of them the same softmax over the transposed view (vectorised over rows) is ~6x faster
    grad = torch.softmax(logits.t(), 0).t() if n_classes <= _FEW_CLASSES else torch.softmax(logits, -1)
    flat = targets.reshape(n_members, -1, 1)
    counted = (flat != IGNORE_INDEX).to(outputs.dtype)
    weight = counted / counted.sum(1, keepdim=True).clamp_min(1)  # 1 / n_counted_s; 0 where ignored
    grad = grad.view(n_members, -1, n_classes)
    grad.scatter_(-1, flat.clamp(min=0), -1.0, reduce="add")
    return grad.mul_(weight).reshape(outputs.shape)


#: Class counts up to which a softmax runs faster over the transposed logits (measured: 2 and
#: 10 classes gain, 100 lose).
_FEW_CLASSES = 16


def _fields(data: TaskData) -> tuple[torch.Tensor, ...]:
    return data.train_inputs, data.train_targets, data.eval_inputs, data.eval_targets


def train_ensemble(
    task: Task,
    seeds: Sequence[int],
    *,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> list[RunResult]:
    """Train ``seeds`` of ``task`` together; falls back to sequential training if needed.

    Parameters
    ----------
    task : Task
    seeds : sequence of int
        Distinct seeds.
    device : {"auto", "cpu", "cuda"} or torch.device
    progress : bool
        One tqdm bar over the ensemble's steps (one per run after a fallback).

    Returns
    -------
    list of RunResult
        In the order of ``seeds``; ``RunResult.trainer`` says which path trained them.
    """
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    device = resolve_device(device)
    if task.data_depends_on_seed:
        data = [task.build_data(s) for s in seeds]
    else:
        data = [task.build_data(0)]
    obstacle = vmap_obstacle(task, init_model(task, seeds[0]))
    trainer = None
    if obstacle is None:
        try:
            trainer = EnsembleTrainer(task, seeds, data, device)
            trainer.probe()
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            obstacle = f"vmap failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            trainer = None
    if trainer is None:
        logger.warning("task %s: training %d seeds sequentially (%s)", task.name, len(seeds), obstacle)
        return [
            train_sequential(task, s, device=device, data=data[i] if task.data_depends_on_seed else data[0],
                             progress=progress)
            for i, s in enumerate(seeds)
        ]
    return drive(trainer, task, seeds, data[0].n_train, trainer_name="ensemble", progress=progress)
