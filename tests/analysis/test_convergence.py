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


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -float("inf"), -5.0, 7.0, True, "x"])
def test_bad_thresholds_on_an_accuracy_are_refused(threshold):
    with pytest.raises(ValueError, match="threshold"):
        convergence_steps(_frame(), "eval_accuracy", threshold)


def test_threshold_crossed_by_every_checkpoint_is_refused_but_one_never_reached_is_reported():
    # Every loss value is <= 5: every run would "converge" at its first checkpoint.
    with pytest.raises(ValueError, match=r"above every observed value of 'eval_loss' \(range \[0.05, 3\]\)"):
        convergence_steps(_frame(), "eval_loss", 5.0)
    # Accuracy 0.999 is reached by no run: a finding, not an error.
    res = convergence_steps(_frame(), "eval_accuracy", 0.999)
    assert res.never_converged == ["a", "b", "c"] and res.no_outcome == []


def test_all_nan_outcome_is_reported_as_missing_not_as_never_reached():
    frame = _frame()
    frame["eval_accuracy"] = np.nan
    with pytest.raises(ValueError, match="no finite value in any run"):
        convergence_steps(frame, "eval_accuracy", 0.9)
    frame = _frame()
    frame.loc[frame["run"] == "b", "eval_accuracy"] = np.nan
    res = convergence_steps(frame, "eval_accuracy", 0.9)
    assert res.no_outcome == ["b"] and res.never_converged == []
    assert res.steps["a"] == 20 and np.isnan(res.steps["b"])
    back = ConvergenceResult.from_dict(res.to_dict())
    assert back.no_outcome == ["b"]


def test_explicit_direction_overrides_the_name_guess():
    from bayes_trainmap.analysis.convergence import direction_from_option

    frame = _frame().rename(columns={"eval_loss": "error_rate"})  # lower is better, no "loss" in the name
    guessed = convergence_steps(frame, "error_rate", 0.3)
    assert guessed.higher_is_better and guessed.steps["a"] == 0  # wrong guess: 2.0 >= 0.3 at step 0
    explicit = convergence_steps(frame, "error_rate", 0.3, higher_is_better=direction_from_option("lower"))
    assert not explicit.higher_is_better
    assert explicit.steps["a"] == 20 and explicit.steps["b"] == 10 and explicit.never_converged == ["c"]
    assert direction_from_option("auto") is None and direction_from_option("higher") is True
    with pytest.raises(ValueError, match="outcome direction"):
        direction_from_option("up")
