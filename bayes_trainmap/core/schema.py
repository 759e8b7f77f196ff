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

#: The one glossary of the weight statistics, used by every report: our column name ->
#: (the paper's appendix-B name, a one-line meaning). Reports and figures label features
#: by their column names only.
STATISTIC_GLOSSARY: dict[str, tuple[str, str]] = {
    "l1": ("L_1", "L1 norm of the weights, averaged over the weight matrices"),
    "l2": ("L_2", "L2 norm of the weights, averaged over the weight matrices"),
    "code_sparsity": ("L_1/L_2", "L1/L2 per weight matrix, averaged (lower is sparser)"),
    "mean_w": ("μ(w)", "mean of all weights"),
    "median_w": ("median(w)", "median of all weights"),
    "var_w": ("σ(w)", "variance of all weights (no Bessel correction)"),
    "mean_b": ("μ(b)", "mean of all biases"),
    "median_b": ("median(b)", "median of all biases"),
    "var_b": ("σ(b)", "variance of all biases (no Bessel correction)"),
    "trace": ("trace", "trace of each weight matrix, averaged"),
    "spectral": ("λ_max", "spectral norm (largest singular value) of each weight matrix, averaged"),
    "computational_sparsity": ("trace/λ_max", "trace over spectral norm per weight matrix, averaged"),
    "mean_lambda": ("μ(λ)", "mean singular value over all weight matrices"),
    "variance_lambda": ("σ(λ)", "variance of the singular values over all weight matrices"),
}
