"""The default executor: every item runs in this process, one after the other."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from bayes_trainmap.core.executors.base import TaskResult, check_items, is_retryable

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class LocalExecutor:
    """Run work items sequentially in the calling process (no Ray, no subprocesses).

    Parameters
    ----------
    max_retries : int, default 0
        Extra attempts for an item whose attempt raised an exception other than a
        :class:`~bayes_trainmap.core.errors.BayesTrainmapError`. In one process most failures
        repeat identically, hence no retry by default.

    Notes
    -----
    ``KeyboardInterrupt`` and other non-``Exception`` errors propagate at once: an
    interrupted local collection stops, and its finished items stay on disk.
    """

    name = "local"

    def __init__(self, *, max_retries: int = 0) -> None:
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        self.max_retries = max_retries

    def imap_unordered(
        self, fn: Callable[[ItemT], ResultT], items: Mapping[str, ItemT]
    ) -> Iterator[TaskResult[ResultT]]:
        """Call ``fn(item)`` for each item in order; yield one :class:`TaskResult` each."""
        for name, item in check_items(items).items():
            attempts = 0
            while True:
                attempts += 1
                try:
                    value = fn(item)
                except Exception as error:  # noqa: BLE001 - reported per item, by name
                    if attempts <= self.max_retries and is_retryable(error):
                        logger.warning(
                            "%s failed on attempt %d, retrying: %r", name, attempts, error
                        )
                        continue
                    logger.debug("%s failed permanently", name, exc_info=error)
                    yield TaskResult(name=name, value=None, error=error, attempts=attempts)
                else:
                    yield TaskResult(name=name, value=value, error=None, attempts=attempts)
                break

    def parallelism(self) -> int:
        """One item at a time."""
        return 1

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalExecutor(max_retries={self.max_retries})"
