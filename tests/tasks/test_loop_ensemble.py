"""Shared loop and seed ensembles: determinism, ensemble == sequential, fallback, divergence.

Tolerance of ensemble against sequential training: every recorded value (statistics and
outcomes) agrees to 1e-5 relative (1e-7 absolute) over the whole smoke run in float32.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import toy_tasks  # noqa: F401  (registers the toy tasks)
from torch import nn

from bayes_trainmap.core.schema import OUTCOME_COLUMNS, STATISTIC_NAMES
from bayes_trainmap.tasks.base import OptimizerSpec
from bayes_trainmap.tasks.ensemble import FunctionalOptimizer, train_ensemble
from bayes_trainmap.tasks.loop import BatchOrder, checkpoint_steps, derive_seed, train_sequential
from bayes_trainmap.tasks.registry import get_task

VALUES = [*STATISTIC_NAMES, *OUTCOME_COLUMNS]


def assert_runs_close(a, b, rtol=1e-5, atol=1e-7):
    assert list(a.frame["step"]) == list(b.frame["step"])
    np.testing.assert_allclose(a.frame[VALUES].to_numpy(), b.frame[VALUES].to_numpy(), rtol=rtol, atol=atol)


def test_ensemble_equals_sequential_sgd_per_seed_data():
    task = get_task("sparse_parities", size="smoke", steps=40)
    seeds = [0, 1, 2]
    ensemble = train_ensemble(task, seeds, device="cpu")
    assert {r.trainer for r in ensemble} == {"ensemble"}
    for seed, run in zip(seeds, ensemble):
        assert_runs_close(run, train_sequential(task, seed, device="cpu"))
    assert ensemble[0].frame["step"].tolist() == checkpoint_steps(40, 10)


def test_ensemble_equals_sequential_adamw_shared_data():
    task = get_task("digits", size="smoke", steps=20)
    ensemble = train_ensemble(task, [3, 4], device="cpu")
    assert {r.trainer for r in ensemble} == {"ensemble"}
    for seed, run in zip([3, 4], ensemble):
        assert_runs_close(run, train_sequential(task, seed, device="cpu"))


@pytest.mark.parametrize("name", ["toy_custom_metrics", "toy_augmented"])
def test_ensemble_equals_sequential_with_task_hooks(name):
    # a task-defined loss is vmapped; a batch transform draws from each seed's own generator
    task = get_task(name)
    ensemble = train_ensemble(task, [0, 1], device="cpu")
    assert {r.trainer for r in ensemble} == {"ensemble"}
    for seed, run in zip([0, 1], ensemble):
        assert_runs_close(run, train_sequential(task, seed, device="cpu"))


def test_same_seed_twice_is_identical_and_seeds_differ():
    task = get_task("sparse_parities", size="smoke", steps=20)
    a, b = train_sequential(task, 5, device="cpu"), train_sequential(task, 5, device="cpu")
    assert a.frame.equals(b.frame)
    e1, e2 = train_ensemble(task, [5, 6], device="cpu"), train_ensemble(task, [5, 6], device="cpu")
    assert e1[0].frame.equals(e2[0].frame) and e1[1].frame.equals(e2[1].frame)
    assert not np.allclose(e1[0].frame[VALUES].to_numpy(), e1[1].frame[VALUES].to_numpy())


@pytest.mark.parametrize(
    "spec",
    [
        OptimizerSpec("sgd", lr=0.1, weight_decay=0.01),
        OptimizerSpec("sgd", lr=0.05, weight_decay=0.1, momentum=0.9),
        OptimizerSpec("adamw", lr=1e-2, weight_decay=1.0),
        OptimizerSpec("adam", lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99)),
    ],
    ids=["sgd", "sgd-momentum", "adamw", "adam"],
)
def test_functional_optimizer_matches_torch_optim(spec):
    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (2, 5, 3), "b": (2, 5)}  # a leading member dimension of 2
    stacked = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    reference = [{k: v[i].clone().requires_grad_(True) for k, v in stacked.items()} for i in range(2)]
    optimizers = [spec.build(list(r.values())) for r in reference]
    functional = FunctionalOptimizer(spec, stacked)
    for _ in range(6):
        grads = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
        functional.step(stacked, grads)
        for i, (params, opt) in enumerate(zip(reference, optimizers)):
            for k, p in params.items():
                p.grad = grads[k][i].clone()
            opt.step()
    for i, params in enumerate(reference):
        for k, p in params.items():
            torch.testing.assert_close(stacked[k][i], p.detach(), rtol=1e-6, atol=1e-7)


def test_batch_order_is_a_stream_of_permutations():
    order = BatchOrder(10, 4, seed=1)
    first = order.take(5).reshape(-1)  # 20 indices = two full epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    again = BatchOrder(10, 4, seed=1)
    assert torch.equal(torch.cat([again.take(2), again.take(3)]).reshape(-1), first)
    assert derive_seed(1, "init") != derive_seed(1, "order") != derive_seed(2, "order")


def test_unvmappable_models_fall_back_to_sequential(caplog):
    for name in ("toy_batchnorm", "toy_unvmappable"):
        task = get_task(name)
        with caplog.at_level(logging.WARNING, logger="bayes_trainmap.tasks.ensemble"):
            runs = train_ensemble(task, [0, 1], device="cpu")
        assert [r.trainer for r in runs] == ["sequential", "sequential"]
        assert "sequentially" in caplog.text
        for seed, run in zip([0, 1], runs):
            assert run.frame.equals(train_sequential(task, seed, device="cpu").frame)
        caplog.clear()


def test_diverged_seed_is_flagged_and_others_continue():
    task = get_task("toy_exploding")
    ensemble = train_ensemble(task, [0, 1], device="cpu")
    sequential = train_sequential(task, 0, device="cpu")
    for run in (ensemble[0], sequential):
        assert run.diverged and run.diverged_step > 0
        assert run.frame["step"].max() < run.diverged_step
        assert np.isfinite(run.frame[VALUES].to_numpy()).all()
    assert not ensemble[1].diverged
    assert ensemble[1].frame["step"].tolist() == checkpoint_steps(12, 4)
    # the diverged member's NaNs do not leak into the other seed's training
    assert_runs_close(ensemble[1], train_sequential(task, 1, device="cpu"))


def test_model_init_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_sequential(get_task("sparse_parities", size="smoke", steps=2), 0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_default_parameter_selection_of_the_built_in_small_tasks():
    for name, n_matrices in (("sparse_parities", 2), ("digits", 2)):
        task = get_task(name, size="smoke")
        model = task.build_model()
        selection = task.parameter_selection(model)
        assert len(selection.matrices) == n_matrices
        assert all(isinstance(m, (nn.Linear, nn.ReLU)) for m in model)
