"""User-facing exception types.

Every error a user can cause with bad input derives from :class:`BayesTrainmapError`
(itself a :class:`ValueError`), so the CLI can turn it into one clear line and exit
status 2 without a traceback.
"""

from __future__ import annotations


class BayesTrainmapError(ValueError):
    """Base class of all errors caused by bad input or configuration."""


class TrajectoryError(BayesTrainmapError):
    """A trajectory set is missing, malformed or unusable for the requested analysis."""


class ModelSelectionError(BayesTrainmapError):
    """The requested model cannot be fitted to the data (e.g. too many states)."""


class TaskError(BayesTrainmapError):
    """A training task, variant or collection configuration is invalid."""


class FitDirectoryError(BayesTrainmapError):
    """A fit directory is missing, incomplete or from an incompatible version."""


class ExecutionError(BayesTrainmapError):
    """Work items failed on an executor even after their retries.

    ``failures`` maps each failed item's name to ``"ExceptionType: message"`` of its
    last attempt; the items that succeeded were kept.
    """

    def __init__(self, message: str, failures: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures: dict[str, str] = dict(failures or {})
