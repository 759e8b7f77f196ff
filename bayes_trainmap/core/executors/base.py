"""The executor protocol, task outcomes and the progress-bar driver shared by all executors.

An executor runs one function over a set of *named* work items (a seed, a chunk of
seeds, a ``(K, restart)`` pair) and yields one :class:`TaskResult` per item as items
finish, in completion order. A failing item is retried a bounded number of times;
an item that still fails is reported by name and never stops the others.

This module imports only the standard library, :mod:`bayes_trainmap.core.errors` and tqdm,
so that ``tasks`` can use executors without depending on analysis code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from bayes_trainmap.core.errors import BayesTrainmapError, ExecutionError

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclasses.dataclass(frozen=True)
class TaskResult(Generic[ResultT]):
    """What became of one named work item.

    Attributes
    ----------
    name : str
        The item's name (a key of the mapping given to the executor).
    value : object or None
        The function's return value; None when the item failed.
    error : BaseException or None
        The exception of the last attempt (for Ray, the original exception raised in
        the worker where Ray could recover it); None when the item succeeded.
    attempts : int
        How many times the item was started (1 = succeeded or failed at once).
    """

    name: str
    value: ResultT | None
    error: BaseException | None
    attempts: int

    @property
    def ok(self) -> bool:
        """True when the item finished without an exception."""
        return self.error is None

    @property
    def error_message(self) -> str | None:
        """``"ExceptionType: message"`` of the last attempt, or None when it succeeded."""
        return None if self.error is None else describe_exception(self.error)


@dataclasses.dataclass
class ExecutionReport(Generic[ResultT]):
    """All outcomes of one :func:`execute` call.

    Attributes
    ----------
    values : dict[str, object]
        Return values of the items that succeeded, in the order the items were given
        (not the completion order), so downstream results do not depend on scheduling.
    failures : dict[str, TaskResult]
        The items that failed permanently, by name, in the order the items were given.
    attempts : dict[str, int]
        Number of attempts of every item.
    """

    values: dict[str, ResultT]
    failures: dict[str, TaskResult[ResultT]]
    attempts: dict[str, int]

    @property
    def ok(self) -> bool:
        """True when every item succeeded."""
        return not self.failures

    def raise_for_failures(self, what: str = "task", hint: str = "") -> None:
        """Raise :class:`~bayes_trainmap.core.errors.ExecutionError` naming every failed item.

        Parameters
        ----------
        what : str
            Noun for one item in the message (``"run"``, ``"fit"``, ...).
        hint : str
            Sentence appended to the message (e.g. how to resume).
        """
        if not self.failures:
            return
        details = "; ".join(
            f"{name} ({result.error_message}, {result.attempts} attempt(s))"
            for name, result in self.failures.items()
        )
        raise ExecutionError(
            f"{len(self.failures)} of {len(self.attempts)} {what}(s) failed: {details}"
            + (f"; {hint}" if hint else ""),
            failures={name: result.error_message or "" for name, result in self.failures.items()},
        )


@runtime_checkable
class Executor(Protocol):
    """Runs a function over named work items and yields outcomes as they complete.

    Implementations: :class:`~bayes_trainmap.core.executors.local.LocalExecutor` (in-process,
    sequential, the default) and :class:`~bayes_trainmap.core.executors.ray_cluster.RayExecutor`.
    Executors are context managers; :meth:`close` releases whatever they started.
    """

    #: Short name used by :func:`~bayes_trainmap.core.executors.get_executor` and the CLI.
    name: str
    #: Extra attempts granted to a failing item (0 = a single attempt).
    max_retries: int

    def imap_unordered(
        self, fn: Callable[[ItemT], ResultT], items: Mapping[str, ItemT]
    ) -> Iterator[TaskResult[ResultT]]:
        """Call ``fn(item)`` for every item; yield a :class:`TaskResult` per name as it finishes.

        ``fn`` and the items must be picklable for distributed executors (bind shared
        inputs, such as data arrays, into ``fn`` with :func:`functools.partial`: they
        are then shipped once rather than once per item). ``fn`` must be safe to call
        again after a failed attempt, i.e. write its outputs atomically.
        """
        ...

    def parallelism(self) -> int:
        """How many items can run at once (>= 1), e.g. to size ensemble chunks."""
        ...

    def close(self) -> None:
        """Release resources this executor started (a local Ray instance, for example)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc_info: object) -> None: ...


def is_retryable(error: BaseException) -> bool:
    """Whether a failed attempt is worth repeating.

    Errors caused by bad input or configuration (:class:`BayesTrainmapError`) fail the
    same way every time, so they are not retried; anything else (a crashed worker, an
    out-of-memory error, a flaky file system) may succeed on another attempt.
    """
    return not isinstance(error, BayesTrainmapError)


def describe_exception(error: BaseException) -> str:
    """One line ``"ExceptionType: message"`` (first line of the message only)."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def check_items(items: Mapping[str, Any]) -> dict[str, Any]:
    """Validate work-item names and return the items as a plain dict (order kept).

    Raises
    ------
    ValueError
        If ``items`` is not a mapping or a name is not a non-empty string.
    """
    if not isinstance(items, Mapping):
        raise ValueError(
            f"work items must be a mapping from name to item, got {type(items).__name__}"
        )
    for name in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"work item names must be non-empty strings, got {name!r}")
    return dict(items)


def execute(
    executor: Executor,
    fn: Callable[[ItemT], ResultT],
    items: Mapping[str, ItemT],
    *,
    desc: str | None = None,
    unit: str = "task",
    progress: bool = True,
    on_result: Callable[[TaskResult[ResultT]], None] | None = None,
    fail_fast: bool = False,
    weights: Mapping[str, int] | None = None,
) -> ExecutionReport[ResultT]:
    """Run ``fn`` over ``items`` with one progress bar; collect values and failures.

    Parameters
    ----------
    executor : Executor
        Where the work runs.
    fn : callable
        ``fn(item) -> value``; see :meth:`Executor.imap_unordered` for its obligations.
    items : Mapping[str, object]
        Work items by name.
    desc, unit : str
        Progress-bar label and unit.
    progress : bool
        Show a tqdm progress bar (on stderr).
    on_result : callable, optional
        Called with every :class:`TaskResult` as it arrives (in completion order).
    fail_fast : bool, default False
        Re-raise the first permanent failure's own exception at once and drop the
        items still pending (a distributed executor cancels them), for work that is
        useless unless every item succeeds. By default every item runs to its end,
        except that a :class:`~bayes_trainmap.core.errors.BayesTrainmapError` (bad input or
        configuration, which would fail every item alike) is always re-raised at once.
    weights : Mapping[str, int], optional
        How far each item advances the progress bar (e.g. the number of seeds in an
        ensemble chunk, so that one bar counts runs); 1 per item by default.

    Returns
    -------
    ExecutionReport
        Values and failures in the order of ``items``. Failures are logged as warnings
        as they occur; call :meth:`ExecutionReport.raise_for_failures` to turn them into
        an error once every other item has finished.
    """
    from tqdm.auto import tqdm

    order = list(check_items(items))
    weight = {name: 1 if weights is None else int(weights[name]) for name in order}
    by_name: dict[str, TaskResult[ResultT]] = {}
    with (
        tqdm(total=sum(weight.values()), desc=desc, unit=unit, disable=not progress) as bar,
        contextlib.closing(executor.imap_unordered(fn, items)) as outcomes,
    ):
        for result in outcomes:
            by_name[result.name] = result
            if result.error is not None and (fail_fast or not is_retryable(result.error)):
                raise result.error
            if not result.ok:
                logger.warning(
                    "%s %s failed after %d attempt(s): %s",
                    unit,
                    result.name,
                    result.attempts,
                    result.error_message,
                    exc_info=result.error,
                )
                bar.set_postfix(failed=sum(not r.ok for r in by_name.values()))
            if on_result is not None:
                on_result(result)
            bar.update(weight[result.name])
    missing = [name for name in order if name not in by_name]
    if missing:  # an executor that loses items is a bug, not a user error
        raise RuntimeError(f"executor {executor.name!r} returned no result for {missing}")
    return ExecutionReport(
        values={name: by_name[name].value for name in order if by_name[name].ok},
        failures={name: by_name[name] for name in order if not by_name[name].ok},
        attempts={name: by_name[name].attempts for name in order},
    )
