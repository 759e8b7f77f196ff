"""Convergence steps from outcome columns."""

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.analysis.convergence import TASK_THRESHOLDS, ConvergenceResult, convergence_steps, threshold_for_task


def _frame():
    return pd.DataFrame(
        {
            "run": ["a"] * 4 + ["b"] * 3 + ["c"] * 3,
            "step": [0, 10, 20, 30, 0, 5, 10, 0, 1, 2],
            "eval_accuracy": [0.1, 0.5, 0.95, 0.8, 0.2, 0.3, 0.4, 0.9, 0.91, 0.99],
            "eval_loss": [2.0, 1.0, 0.2, 0.4, 2.0, 1.5, 0.05, 3.0, 3.0, 3.0],
        }
    )


def test_first_crossing_and_never_converged():
    res = convergence_steps(_frame(), "eval_accuracy", 0.9)
    assert res.steps.to_dict() == {"a": 20.0, "b": pytest.approx(np.nan, nan_ok=True), "c": 0.0}
    assert res.never_converged == ["b"]
    assert res.converged.index.tolist() == ["a", "c"]


def test_losses_cross_downwards():
    res = convergence_steps(_frame(), "eval_loss", 0.3)
    assert not res.higher_is_better
    assert res.steps["a"] == 20 and res.steps["b"] == 10 and res.never_converged == ["c"]


def test_round_trip_and_presets():
    res = convergence_steps(_frame(), "eval_accuracy", 0.9)
    back = ConvergenceResult.from_dict(res.to_dict())
    pd.testing.assert_series_equal(back.steps, res.steps)
    assert TASK_THRESHOLDS["mnist"] == 0.97 and TASK_THRESHOLDS["cifar100_destabilized"] == 0.4
    assert threshold_for_task("modular-addition") == 0.9
    assert threshold_for_task("cifar100", "destabilized") == 0.4 and threshold_for_task("cifar100", "default") == 0.6
    assert threshold_for_task("digits", "some_variant") == TASK_THRESHOLDS["digits"]
    with pytest.raises(ValueError, match="no threshold preset"):
        threshold_for_task("imagenet")
    with pytest.raises(ValueError, match="not found"):
        convergence_steps(_frame(), "train_accuracy")
