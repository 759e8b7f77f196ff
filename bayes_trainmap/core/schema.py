"""The trajectory data contract shared by ``tasks`` (which writes trajectories)
and ``bayes_trainmap`` (which reads them).

This module imports nothing from the rest of the package, so that ``tasks`` can
use it without depending on any analysis code.
"""

from __future__ import annotations

#: The 14 weight statistics of appendix B, named as in the paper authors' CSVs.
STATISTIC_NAMES: tuple[str, ...] = (
    "l1",
    "l2",
    "code_sparsity",
    "mean_w",
    "median_w",
    "var_w",
    "mean_b",
    "median_b",
    "var_b",
    "trace",
    "spectral",
    "computational_sparsity",
    "mean_lambda",
    "variance_lambda",
)

#: Identifying columns of the long trajectory format (one row per checkpoint).
RUN_COLUMN = "run"
SEED_COLUMN = "seed"
STEP_COLUMN = "step"
EPOCH_COLUMN = "epoch"

#: Outcome columns recorded by the built-in training loop.
OUTCOME_COLUMNS: tuple[str, ...] = (
    "eval_accuracy",
    "train_accuracy",
    "eval_loss",
    "train_loss",
)

#: Key under which task name and hyperparameters travel in Parquet metadata.
PARQUET_METADATA_KEY = b"bayes_trainmap"

#: Short labels used in reports and figures (the paper's notation, ASCII-safe).
STATISTIC_LABELS: dict[str, str] = {
    "l1": "L1",
    "l2": "L2",
    "code_sparsity": "L1/L2",
    "mean_w": "mean(w)",
    "median_w": "median(w)",
    "var_w": "var(w)",
    "mean_b": "mean(b)",
    "median_b": "median(b)",
    "var_b": "var(b)",
    "trace": "trace",
    "spectral": "lambda_max",
    "computational_sparsity": "trace/lambda_max",
    "mean_lambda": "mean(lambda)",
    "variance_lambda": "var(lambda)",
}
