"""Executors: run independent, named work items here or across a Ray cluster.

The same work (one training run per seed, one HMM fit per ``(K, restart)``) runs
through an :class:`Executor`:

- :class:`LocalExecutor` (``"local"``, the default) runs items one after the other in
  this process and never imports Ray;
- :class:`~bayes_trainmap.core.executors.ray_cluster.RayExecutor` (``"ray"``) runs each item
  as a Ray task with declared CPU/GPU resources, on a local Ray instance or a cluster.

Both yield outcomes as items complete, retry a failed item a bounded number of times and
report items that keep failing by name without stopping the others. :func:`execute`
drives an executor behind one progress bar. :mod:`bayes_trainmap.core.storage`
writes outputs atomically to local paths, shared file systems or object-store URIs.

Example
-------
>>> from functools import partial
>>> with get_executor("local") as executor:
...     report = execute(executor, partial(pow, 2), {"a": 3, "b": 5}, progress=False)
>>> report.values
{'a': 8, 'b': 32}
"""

from __future__ import annotations

import argparse
from typing import Any

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.executors.base import (
    ExecutionReport,
    Executor,
    TaskResult,
    describe_exception,
    execute,
    is_retryable,
)
from bayes_trainmap.core.executors.local import LocalExecutor

#: Executor names accepted by :func:`get_executor` and ``--executor``.
EXECUTOR_NAMES: tuple[str, ...] = ("local", "ray")

_RAY_ONLY_OPTIONS = ("address", "connect_timeout", "num_cpus_per_task", "num_gpus_per_task", "runtime_env", "init_options")


def get_executor(name: str = "local", **options: Any) -> Executor:
    """Build an executor by name.

    Parameters
    ----------
    name : {"local", "ray"}
        Which executor.
    **options
        Keyword arguments of the executor's class (:class:`LocalExecutor` takes
        ``max_retries``; ``RayExecutor`` also takes ``address``, ``num_cpus_per_task``,
        ``num_gpus_per_task``, ``runtime_env``, ``init_options``, ``connect_timeout``). Options whose value
        is None are dropped, so CLI defaults can be passed through unchanged.

    Raises
    ------
    BayesTrainmapError
        For an unknown name, a Ray-only option given to the local executor, or
        ``"ray"`` when Ray is not installed (the message says how to install it).
    """
    options = {key: value for key, value in options.items() if value is not None}
    if name == "local":
        misplaced = sorted(key for key in options if key in _RAY_ONLY_OPTIONS)
        if misplaced:
            raise BayesTrainmapError(
                f"option(s) {', '.join(misplaced)} only apply to the ray executor, "
                "not to executor 'local'"
            )
        return LocalExecutor(**options)
    if name == "ray":
        # lazily: ray is an optional dependency (the `ray` extra)
        from bayes_trainmap.core.executors.ray_cluster import RayExecutor

        return RayExecutor(**options)
    raise BayesTrainmapError(
        f"unknown executor {name!r}; expected one of {', '.join(EXECUTOR_NAMES)}"
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_executor_arguments(parser: argparse.ArgumentParser, *, per: str = "run") -> None:
    """Add ``--executor``, ``--address``, ``--cpus-per-<per>``, ``--gpus-per-<per>``,
    ``--max-retries`` to an argparse parser (read back with :func:`executor_from_args`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser.
    per : str, default "run"
        Noun of one work item in the resource flags (``run`` for ``collect``,
        ``task`` for ``fit``).
    """
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        default="local",
        help="where the work runs: 'local' (this process, default) or 'ray' (a Ray "
        'cluster; needs pip install "bayes_trainmap[ray]")',
    )
    group.add_argument(
        "--address",
        default=None,
        help="Ray cluster address: 'auto' (an existing cluster), HOST:PORT or ray://HOST:PORT; "
        "default: RAY_ADDRESS or the last cluster started here, else a new local Ray instance",
    )
    group.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="seconds to wait for the Ray cluster at --address before giving up (default 30)",
    )
    group.add_argument(
        f"--cpus-per-{per}",
        dest="cpus_per_task",
        type=float,
        default=None,
        metavar="N",
        help=f"CPUs Ray reserves for each {per} (default 1)",
    )
    group.add_argument(
        f"--gpus-per-{per}",
        dest="gpus_per_task",
        type=float,
        default=None,
        metavar="F",
        help=f"GPUs Ray reserves for each {per}; fractions share a GPU (default 0)",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="R",
        help=f"extra attempts for a failing {per} (default: 2 with ray, 0 locally)",
    )


def executor_from_args(args: argparse.Namespace) -> Executor:
    """Build the executor described by the flags of :func:`add_executor_arguments`."""
    return get_executor(
        args.executor,
        address=args.address,
        num_cpus_per_task=args.cpus_per_task,
        num_gpus_per_task=args.gpus_per_task,
        max_retries=args.max_retries,
        connect_timeout=args.connect_timeout,
    )


__all__ = [
    "EXECUTOR_NAMES",
    "ExecutionReport",
    "Executor",
    "LocalExecutor",
    "TaskResult",
    "add_executor_arguments",
    "describe_exception",
    "execute",
    "executor_from_args",
    "get_executor",
    "is_retryable",
]
