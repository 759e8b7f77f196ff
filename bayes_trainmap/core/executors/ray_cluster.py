"""Run work items as Ray tasks on a local Ray instance or on a cluster.

Ray is an optional dependency (``pip install "bayes_trainmap[ray]"``); it is imported
only when a :class:`RayExecutor` starts its first batch of work, never by the local
path. Each work item becomes one Ray task with the declared CPU/GPU resources.

Retries are counted here rather than by Ray: Ray's own task retries are switched off
(``max_retries=0, retry_exceptions=False``) and a failed item is resubmitted by the
driver, whether its worker raised an exception or died. That gives one retry budget per
item for both kinds of failure, and an exact attempt count in every
:class:`~bayes_trainmap.core.executors.base.TaskResult`.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.executors.base import TaskResult, check_items, is_retryable

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: The message every "Ray is missing" error carries.
INSTALL_HINT = 'the Ray executor needs Ray: pip install "bayes_trainmap[ray]"'


def import_ray() -> Any:
    """Import and return the ``ray`` module, or explain how to install it.

    Raises
    ------
    BayesTrainmapError
        If Ray is not installed.
    """
    try:
        import ray
    except ImportError as error:
        raise BayesTrainmapError(INSTALL_HINT) from error
    return ray


#: Seconds to wait for a Ray cluster to answer before giving up (``--connect-timeout``).
DEFAULT_CONNECT_TIMEOUT = 30.0

#: Addresses that name no host: Ray finds or starts the cluster itself.
_SYMBOLIC_ADDRESSES = ("auto", "local")


def cluster_endpoint(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of an explicit ``HOST:PORT`` or ``ray://HOST:PORT`` address.

    Returns None for ``None``, ``"auto"`` and ``"local"``, which name no endpoint.

    Raises
    ------
    BayesTrainmapError
        If the address is neither symbolic nor ``[ray://]HOST:PORT`` with a port in 1..65535.
    """
    if address is None or address in _SYMBOLIC_ADDRESSES:
        return None
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    host = host.strip("[]")  # an IPv6 literal, [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BayesTrainmapError(
            f"malformed Ray address {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT"
        )
    return host, int(port)


def check_reachable(address: str | None, timeout: float) -> None:
    """Fail within ``timeout`` seconds if nothing accepts connections at ``address``.

    Ray itself retries an unreachable cluster for minutes; a TCP connection attempt
    answers at once (refused) or after ``timeout`` (no route, filtered).

    Raises
    ------
    BayesTrainmapError
        Naming the address and the reason.
    """
    endpoint = cluster_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise BayesTrainmapError(
            f"cannot reach a Ray cluster at {address}: {reason} within {timeout:g} s "
            "(start one with `ray start --head`, or omit --address to start a local one)"
        ) from error


#: What :func:`check_answers` runs in a child process: join the cluster and leave.
_PROBE = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); ray.shutdown()"


def check_answers(address: str | None, timeout: float) -> None:
    """Fail within ``timeout`` seconds unless a Ray head node answers at ``address``.

    Ray's own ``ray.init`` keeps retrying a listener that is not a Ray head node (a
    wrong port, a firewall that accepts and drops) for minutes, inside its C++ client
    where no signal or thread can cut it short. So a child process joins the cluster
    first and is killed at the deadline; this process then joins as usual. Only for
    explicit ``HOST:PORT`` addresses (``auto``/``local`` fail fast on their own).

    Raises
    ------
    BayesTrainmapError
        If the child did not connect within ``timeout`` or failed, with its last line.
    """
    if cluster_endpoint(address) is None:
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(address)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BayesTrainmapError(
            f"the Ray cluster at {address} did not answer within {timeout:g} s "
            "(is it a Ray head node's GCS port? raise --connect-timeout for a slow cluster)"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BayesTrainmapError(f"cannot join the Ray cluster at {address}: {lines[-1] if lines else 'unknown error'}")


def _call_item(fn: Callable[[Any], Any], item: Any) -> Any:
    # Module-level so workers import it by reference; ``fn`` arrives already
    # deserialised from the object store (Ray resolves top-level ObjectRef arguments).
    return fn(item)


class RayExecutor:
    """Run work items as Ray tasks, yielding outcomes in completion order.

    Parameters
    ----------
    address : str or None, default None
        Where the Ray cluster is: ``None`` joins the cluster named by ``RAY_ADDRESS`` or
        the one last started on this machine, else starts a local Ray instance;
        ``"auto"`` joins an existing cluster and fails if there is none;
        ``"HOST:PORT"`` (or ``"ray://HOST:PORT"`` for Ray Client) joins that cluster.
        Ignored when Ray is already initialised in this process.
    num_cpus_per_task : float, default 1
        CPUs Ray reserves for each task (Ray also sets ``OMP_NUM_THREADS`` from it).
    num_gpus_per_task : float, default 0
        GPUs Ray reserves for each task; fractions share one GPU between tasks.
    max_retries : int, default 2
        Extra attempts for an item whose worker raised an exception (other than a
        :class:`~bayes_trainmap.core.errors.BayesTrainmapError`) or died.
    runtime_env : dict, optional
        Ray runtime environment for the workers (e.g. ``{"pip": [...]}`` on a cluster
        whose nodes lack the package); passed to ``ray.init``.
    init_options : dict, optional
        Further keyword arguments for ``ray.init`` (e.g. ``num_cpus`` for a local instance).
    connect_timeout : float, default 30
        Seconds to wait for the cluster at an explicit ``HOST:PORT`` address: nothing
        listening, or a listener that is not a Ray head node, gives one error line after
        at most this long instead of Ray's minutes of retries.

    Notes
    -----
    If this executor started Ray (``ray.init``), :meth:`close` shuts it down; a Ray
    session that was already running is left alone.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus_per_task: float = 1,
        num_gpus_per_task: float = 0,
        max_retries: int = 2,
        runtime_env: dict[str, Any] | None = None,
        init_options: dict[str, Any] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        for label, value in (
            ("num_cpus_per_task", num_cpus_per_task),
            ("num_gpus_per_task", num_gpus_per_task),
        ):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label} must be a non-negative number, got {value!r}")
        if not isinstance(connect_timeout, (int, float)) or not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}")
        cluster_endpoint(address)  # a malformed address is refused before any work
        self.address = address
        self.connect_timeout = float(connect_timeout)
        self.num_cpus_per_task = num_cpus_per_task
        self.num_gpus_per_task = num_gpus_per_task
        self.max_retries = max_retries
        self.runtime_env = runtime_env
        self.init_options = dict(init_options or {})
        self._ray = import_ray()
        self._started_ray = False
        self._checked_resources = False

    # -- lifecycle -------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            if not self._checked_resources:
                self._warn_if_unschedulable()
            return
        options = {"log_to_driver": True, **self.init_options}
        if self.runtime_env is not None:
            options["runtime_env"] = self.runtime_env
        check_reachable(self.address, self.connect_timeout)
        check_answers(self.address, self.connect_timeout)
        try:
            ray.init(address=self.address, **options)
        except ConnectionError as error:
            raise BayesTrainmapError(
                f"cannot reach a Ray cluster at address={self.address!r}: {error} "
                "(start one with `ray start --head`, or omit --address to start a local one)"
            ) from error
        self._started_ray = True
        self._warn_if_unschedulable()

    def _warn_if_unschedulable(self) -> None:
        # An infeasible request makes Ray queue tasks forever; say so up front. Not an
        # error: an autoscaling cluster may still add a node that satisfies it.
        self._checked_resources = True
        resources = self._ray.cluster_resources()
        for label, key, wanted in (
            ("CPU", "CPU", self.num_cpus_per_task),
            ("GPU", "GPU", self.num_gpus_per_task),
        ):
            if wanted > resources.get(key, 0):
                logger.warning(
                    "each task asks for %s %s but the Ray cluster has %s now; tasks wait "
                    "until a node with enough %s joins",
                    wanted,
                    label,
                    resources.get(key, 0),
                    label,
                )

    def parallelism(self) -> int:
        """Tasks the cluster can run at once with the declared per-task resources (>= 1).

        Connects to (or starts) Ray. Counts the resources present now; an autoscaling
        cluster may grow later.
        """
        self._ensure_connected()
        resources = self._ray.cluster_resources()
        slots = []
        for key, wanted in (("CPU", self.num_cpus_per_task), ("GPU", self.num_gpus_per_task)):
            if wanted > 0:
                slots.append(int(resources.get(key, 0) // wanted))
        return max(1, min(slots, default=int(resources.get("CPU", 1))))

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._started_ray = False

    def __enter__(self) -> RayExecutor:
        """Connect now, so an unreachable cluster is reported before any work starts."""
        self._ensure_connected()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_cpus_per_task={self.num_cpus_per_task}, "
            f"num_gpus_per_task={self.num_gpus_per_task}, max_retries={self.max_retries})"
        )

    # -- work ------------------------------------------------------------------------

    def _unwrap(self, error: BaseException) -> BaseException:
        """The worker's own exception for a task error; Ray's error for a system failure."""
        cause = getattr(error, "cause", None)
        if isinstance(error, self._ray.exceptions.RayTaskError) and isinstance(
            cause, BaseException
        ):
            if cause.__cause__ is None:
                # Keep the worker's traceback (it is in Ray's wrapper) for whoever re-raises.
                cause.__cause__ = error
            return cause
        return error

    def _retryable(self, error: BaseException) -> bool:
        exceptions = self._ray.exceptions
        # A broken runtime environment or a cancelled task fails the same way again.
        if isinstance(error, (exceptions.RuntimeEnvSetupError, exceptions.TaskCancelledError)):
            return False
        return is_retryable(error)

    def imap_unordered(
        self, fn: Callable[[ItemT], ResultT], items: Mapping[str, ItemT]
    ) -> Iterator[TaskResult[ResultT]]:
        """Submit one Ray task per item; yield a :class:`TaskResult` per name as it finishes.

        ``fn`` is put into the object store once, so inputs bound into it with
        :func:`functools.partial` travel to each node once rather than once per task.
        Closing the iterator early cancels the tasks still pending.
        """
        items = check_items(items)
        if not items:
            return
        self._ensure_connected()
        ray = self._ray
        remote_call = ray.remote(_call_item)
        task_options = {
            "num_cpus": self.num_cpus_per_task,
            "num_gpus": self.num_gpus_per_task,
            "max_retries": 0,  # retries are counted by this loop, see the module docstring
            "retry_exceptions": False,
        }
        fn_ref = ray.put(fn)
        pending: dict[Any, tuple[str, int]] = {}

        def submit(name: str, attempt: int) -> None:
            task = remote_call.options(name=f"bayes_trainmap:{name}", **task_options)
            ref = task.remote(fn_ref, items[name])
            pending[ref] = (name, attempt)

        for name in items:
            submit(name, 1)
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                name, attempt = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as wrapped:
                    error = self._unwrap(wrapped)
                    if attempt <= self.max_retries and self._retryable(error):
                        logger.warning(
                            "%s failed on attempt %d, retrying: %s",
                            name,
                            attempt,
                            f"{type(error).__name__}: {error}".splitlines()[0],
                        )
                        submit(name, attempt + 1)
                        continue
                    yield TaskResult(name=name, value=None, error=error, attempts=attempt)
                else:
                    yield TaskResult(name=name, value=value, error=None, attempts=attempt)
        finally:
            for ref in pending:
                ray.cancel(ref)
