"""The Ray executor on a local 2-CPU Ray instance started once for this module.

Fault handling (a task that fails once, a worker process that dies, a task that always
fails) and agreement with the local executor are checked here.
"""

from __future__ import annotations

import os
import sys
from functools import partial

import pytest
import ray

from bayes_trainmap.errors import BayesTrainmapError, TaskError
from bayes_trainmap.executors import LocalExecutor, execute, get_executor
from bayes_trainmap.executors.ray_cluster import RayExecutor

# Test helpers live in this module, which Ray's workers cannot import by name:
# ship them by value instead.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_cluster():
    # address="local" always starts a fresh instance, never joining someone else's.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def first_attempt_fails(marker_dir: str, how: str, x: int) -> int:
    """Fail on the first call for x, by raising or by killing the worker process."""
    marker = os.path.join(marker_dir, f"attempted-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        if how == "raise":
            raise OSError(f"transient failure for {x}")
        os._exit(1)  # the worker dies without a Python exception
    return 10 * x


def always_fails_on(bad: int, x: int) -> int:
    if x == bad:
        raise RuntimeError(f"item {x} is broken")
    return 10 * x


def worker_pid(_: int) -> int:
    return os.getpid()


def test_items_run_as_ray_tasks_in_worker_processes(ray_cluster):
    executor = get_executor("ray", max_retries=0)
    assert isinstance(executor, RayExecutor)
    report = execute(executor, worker_pid, {f"item-{i}": i for i in range(4)}, progress=False)
    assert report.ok and list(report.values) == [f"item-{i}" for i in range(4)]
    assert os.getpid() not in set(report.values.values())
    # The executor joined the running session, so closing it leaves that session up.
    executor.close()
    assert ray.is_initialized()


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_task_failing_once_is_retried_and_every_item_is_present_once(ray_cluster, tmp_path, how):
    items = {f"run-{i}": i for i in range(4)}
    # Only run-2 fails on its first attempt: the others already left their marker.
    for i in (0, 1, 3):
        open(tmp_path / f"attempted-{i}", "w").close()
    seen: list[str] = []
    report = execute(
        RayExecutor(max_retries=1),
        partial(first_attempt_fails, str(tmp_path), how),
        items,
        progress=False,
        on_result=lambda result: seen.append(result.name),
    )
    assert report.ok
    assert report.values == {f"run-{i}": 10 * i for i in range(4)}
    assert report.attempts == {"run-0": 1, "run-1": 1, "run-2": 2, "run-3": 1}
    assert sorted(seen) == sorted(items)  # one outcome per item, no duplicates


def test_a_task_that_always_fails_is_reported_by_name_and_the_others_are_kept(ray_cluster):
    report = execute(
        RayExecutor(max_retries=2), partial(always_fails_on, 1), {f"run-{i}": i for i in range(3)},
        progress=False,
    )
    assert report.values == {"run-0": 0, "run-2": 20}
    failure = report.failures["run-1"]
    assert failure.attempts == 3
    # The worker's own exception comes back, not Ray's wrapper.
    assert isinstance(failure.error, RuntimeError)
    assert failure.error_message == "RuntimeError: item 1 is broken"
    with pytest.raises(BayesTrainmapError, match=r"1 of 3 run\(s\) failed: run-1 \(RuntimeError: item 1 is broken"):
        report.raise_for_failures("run")


def bad_configuration(x: int) -> int:
    raise TaskError(f"variant {x} does not exist")


def test_configuration_errors_come_back_unwrapped_and_are_not_retried(ray_cluster):
    (result,) = RayExecutor(max_retries=3).imap_unordered(bad_configuration, {"a": 7})
    assert result.attempts == 1
    assert isinstance(result.error, TaskError)
    with pytest.raises(TaskError, match="variant 7 does not exist"):
        execute(RayExecutor(max_retries=3), bad_configuration, {"a": 7}, progress=False)


def slow_square(x: int) -> int:
    import time

    time.sleep(0.3)
    return x * x


def test_results_equal_the_local_executor_and_arrive_in_item_order(ray_cluster):
    items = {f"k{i}": i for i in range(6)}
    local = execute(LocalExecutor(), slow_square, items, progress=False)
    distributed = execute(RayExecutor(num_cpus_per_task=1), slow_square, items, progress=False)
    assert distributed.values == local.values
    assert list(distributed.values) == list(items)


def test_fail_fast_reraises_the_worker_exception_with_its_remote_traceback(ray_cluster):
    with pytest.raises(RuntimeError, match="item 0 is broken") as info:
        execute(
            RayExecutor(max_retries=0), partial(always_fails_on, 0), {"k0": 0, "k1": 1},
            progress=False, fail_fast=True,
        )
    assert isinstance(info.value.__cause__, ray.exceptions.RayTaskError)
    assert "always_fails_on" in str(info.value.__cause__)


def mark_start_then_sleep(marker_dir: str, x: int) -> int:
    import time

    open(os.path.join(marker_dir, f"started-{x}"), "w").close()
    time.sleep(0.5)
    return x


def test_closing_the_iterator_early_cancels_pending_tasks(ray_cluster, tmp_path):
    n_items = 10
    iterator = RayExecutor().imap_unordered(
        partial(mark_start_then_sleep, str(tmp_path)), {f"k{i}": i for i in range(n_items)}
    )
    assert next(iterator).ok
    iterator.close()
    # A task needing both CPUs runs only once nothing else holds one.
    report = execute(RayExecutor(num_cpus_per_task=2), slow_square, {"after": 3}, progress=False)
    assert report.values == {"after": 9}
    started = len(os.listdir(tmp_path))
    assert 1 <= started < n_items  # the queued tasks never started


def test_parallelism_counts_the_tasks_the_cluster_can_hold(ray_cluster, caplog):
    assert RayExecutor(num_cpus_per_task=1).parallelism() == 2
    assert RayExecutor(num_cpus_per_task=2).parallelism() == 1
    assert RayExecutor(num_cpus_per_task=0.5).parallelism() == 4
    # No GPU here: a GPU task cannot run now (said in a warning), but the answer stays >= 1.
    with caplog.at_level("WARNING", logger="bayes_trainmap.executors.ray_cluster"):
        assert RayExecutor(num_gpus_per_task=1).parallelism() == 1
    assert "each task asks for 1 GPU but the Ray cluster has 0" in caplog.text
    assert LocalExecutor().parallelism() == 1


def test_ray_executor_validates_its_options():
    with pytest.raises(ValueError, match="num_gpus_per_task must be a non-negative number, got -1"):
        RayExecutor(num_gpus_per_task=-1)
    with pytest.raises(ValueError, match="max_retries must be a non-negative int"):
        RayExecutor(max_retries=1.5)
