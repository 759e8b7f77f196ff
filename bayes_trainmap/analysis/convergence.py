"""Convergence step of every run: the first checkpoint whose outcome crosses a threshold.

Section 3.4 of Hu et al. (2023) defines convergence time as the first iteration
at which validation accuracy exceeds a threshold set slightly below the task's
maximum evaluation accuracy. Runs that never cross are listed and, by default,
left out of the detour regression (their convergence time is unknown, not large).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.schema import RUN_COLUMN, STEP_COLUMN

__all__ = [
    "TASK_THRESHOLDS",
    "ConvergenceResult",
    "convergence_steps",
    "convergence_from_arrays",
    "threshold_for_task",
]

#: Accuracy thresholds per task (paper, section 3.4: slightly below each task's
#: maximum evaluation accuracy). ``digits`` (scikit-learn's 8x8 digits, an MLP
#: reaching about 0.97-0.98 held-out accuracy) is not in the paper; 0.95 follows
#: the same rule of "slightly below the maximum" while leaving room for seed
#: variance, like MNIST's 0.97 against its ~0.98 ceiling.
TASK_THRESHOLDS: dict[str, float] = {
    "modular_addition": 0.9,
    "modular_addition_stabilized": 0.9,
    "sparse_parities": 0.9,
    "mnist": 0.97,
    "digits": 0.95,
    "cifar100": 0.6,
    "cifar100_destabilized": 0.4,
}


def threshold_for_task(task: str, variant: str | None = None) -> float:
    """Preset accuracy threshold of a task and variant (see :data:`TASK_THRESHOLDS`).

    ``variant`` (e.g. ``"destabilized"`` for ``cifar100``, as recorded in the
    trajectory metadata) selects ``"<task>_<variant>"`` when that preset exists.
    """
    key = task.replace("-", "_").lower()
    if variant and variant != "default":
        combined = f"{key}_{variant.replace('-', '_').lower()}"
        if combined in TASK_THRESHOLDS:
            return TASK_THRESHOLDS[combined]
    if key not in TASK_THRESHOLDS:
        raise BayesTrainmapError(
            f"no threshold preset for task {task!r}; expected one of {sorted(TASK_THRESHOLDS)} "
            "or an explicit --threshold"
        )
    return TASK_THRESHOLDS[key]


@dataclass(frozen=True)
class ConvergenceResult:
    """Convergence steps of a set of runs.

    Attributes
    ----------
    steps : pandas.Series
        Convergence step per run (index: run id), NaN where never crossed.
    never_converged : list of str
        Runs whose outcome never crossed the threshold.
    outcome : str
        Outcome column used.
    threshold : float
        Threshold used.
    higher_is_better : bool
        Whether crossing means ``>= threshold`` (accuracies) or ``<= threshold`` (losses).
    """

    steps: pd.Series
    never_converged: list[str]
    outcome: str
    threshold: float
    higher_is_better: bool = True

    @property
    def converged(self) -> pd.Series:
        """Convergence steps of the runs that converged."""
        return self.steps.dropna()

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "threshold": float(self.threshold),
            "higher_is_better": bool(self.higher_is_better),
            "steps": {str(k): (None if pd.isna(v) else float(v)) for k, v in self.steps.items()},
            "never_converged": list(self.never_converged),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ConvergenceResult":
        steps = pd.Series(
            {k: (np.nan if v is None else float(v)) for k, v in d["steps"].items()}, dtype=float, name="convergence_step"
        )
        steps.index.name = RUN_COLUMN
        return cls(steps, list(d["never_converged"]), d["outcome"], float(d["threshold"]), bool(d["higher_is_better"]))


def _infer_direction(outcome: str, higher_is_better: bool | None) -> bool:
    if higher_is_better is not None:
        return bool(higher_is_better)
    return "loss" not in outcome.lower()


def convergence_from_arrays(
    values: np.ndarray,
    steps: np.ndarray,
    lengths: np.ndarray,
    run_ids: list[str],
    *,
    outcome: str = "eval_accuracy",
    threshold: float = 0.9,
    higher_is_better: bool | None = None,
) -> ConvergenceResult:
    """Convergence steps from concatenated per-checkpoint arrays.

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        Outcome at every checkpoint, concatenated over runs.
    steps : numpy.ndarray, shape (n,)
        Training step of every checkpoint.
    lengths : numpy.ndarray, shape (N,)
        Checkpoints per run.
    run_ids : list of str, length N
    outcome : str
        Name of the outcome (for messages; a name containing "loss" crosses downwards
        unless ``higher_is_better`` says otherwise).
    threshold : float
    higher_is_better : bool or None

    Returns
    -------
    ConvergenceResult
    """
    values = np.asarray(values, dtype=float)
    steps = np.asarray(steps)
    lengths = np.asarray(lengths, dtype=np.int64)
    if values.shape != steps.shape or values.ndim != 1:
        raise BayesTrainmapError(f"outcome values {values.shape} and steps {steps.shape} must be equal 1-D shapes")
    if lengths.sum() != values.size or len(run_ids) != lengths.size:
        raise BayesTrainmapError(
            f"lengths sum to {lengths.sum()} over {lengths.size} runs, expected {values.size} checkpoints "
            f"over {len(run_ids)} runs"
        )
    up = _infer_direction(outcome, higher_is_better)
    crossed = values >= threshold if up else values <= threshold
    result = np.full(lengths.size, np.nan)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(lengths.size):
        hits = np.flatnonzero(crossed[offsets[i] : offsets[i + 1]])
        if hits.size:
            result[i] = float(steps[offsets[i] + hits[0]])
    series = pd.Series(result, index=pd.Index([str(r) for r in run_ids], name=RUN_COLUMN), name="convergence_step")
    never = [str(r) for r, v in zip(run_ids, result) if np.isnan(v)]
    return ConvergenceResult(series, never, outcome, float(threshold), up)


def convergence_steps(
    ts, outcome: str = "eval_accuracy", threshold: float = 0.9, *, higher_is_better: bool | None = None
) -> ConvergenceResult:
    """Convergence step of every run of a trajectory set.

    Parameters
    ----------
    ts : bayes_trainmap.data.TrajectorySet or pandas.DataFrame
        Trajectories (a long frame with ``run``, ``step`` and the outcome column works too).
    outcome : str
        Outcome column, e.g. ``"eval_accuracy"``.
    threshold : float
        Crossing threshold (see :data:`TASK_THRESHOLDS`).
    higher_is_better : bool or None
        Crossing direction; by default downwards for columns named like losses.

    Returns
    -------
    ConvergenceResult
    """
    frame = ts.frame if hasattr(ts, "frame") else ts
    if outcome not in frame.columns:
        raise BayesTrainmapError(
            f"outcome column {outcome!r} not found; available columns: {sorted(map(str, frame.columns))}"
        )
    frame = frame.sort_values([RUN_COLUMN, STEP_COLUMN], kind="stable")
    run_ids = list(pd.unique(frame[RUN_COLUMN]))
    lengths = frame.groupby(RUN_COLUMN, sort=False).size().loc[run_ids].to_numpy()
    return convergence_from_arrays(
        frame[outcome].to_numpy(dtype=float),
        frame[STEP_COLUMN].to_numpy(),
        lengths,
        run_ids,
        outcome=outcome,
        threshold=threshold,
        higher_is_better=higher_is_better,
    )
