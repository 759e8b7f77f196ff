"""The Ray executor on a local 2-CPU Ray instance started once for this module.

Fault handling (a task that fails once, a worker process that dies, a task that always
fails) and agreement with the local executor, for plain functions, the seed collection
(``collect --executor ray``) and the BIC sweep (``fit --executor ray``), are checked here.
"""

from __future__ import annotations

import os
import sys
from functools import partial

import numpy as np
import pandas as pd
import pytest
import ray

from bayes_trainmap.cli import main
from bayes_trainmap.core.errors import BayesTrainmapError, ExecutionError, TaskError
from bayes_trainmap.core.executors import LocalExecutor, execute, get_executor
from bayes_trainmap.core.executors.ray_cluster import RayExecutor
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.tasks.collect import collect
from bayes_trainmap.tasks.sparse_parities import SparseParitiesTask
from bayes_trainmap.tasks.trajectory_io import read_run

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
    with caplog.at_level("WARNING", logger="bayes_trainmap.core.executors.ray_cluster"):
        assert RayExecutor(num_gpus_per_task=1).parallelism() == 1
    assert "each task asks for 1 GPU but the Ray cluster has 0" in caplog.text
    assert LocalExecutor().parallelism() == 1


def test_ray_executor_validates_its_options():
    with pytest.raises(ValueError, match="num_gpus_per_task must be a non-negative number, got -1"):
        RayExecutor(num_gpus_per_task=-1)
    with pytest.raises(ValueError, match="max_retries must be a non-negative int"):
        RayExecutor(max_retries=1.5)


# -- seed collection ------------------------------------------------------------------


def read_collection(directory) -> dict[str, tuple[pd.DataFrame, dict]]:
    names = sorted(name for name in os.listdir(directory) if name.endswith(".parquet"))
    return {name: read_run(os.path.join(directory, name)) for name in names}


def assert_same_runs(left, right, rtol: float) -> None:
    assert list(left) == list(right)
    for name in left:
        (frame_l, meta_l), (frame_r, meta_r) = left[name], right[name]
        assert list(frame_l.columns) == list(frame_r.columns)
        for column in ("run", "seed", "step"):
            assert frame_l[column].tolist() == frame_r[column].tolist()
        # Another process may use another number of BLAS threads: equal up to rounding.
        pd.testing.assert_frame_equal(frame_l, frame_r, check_exact=False, rtol=rtol, atol=1e-12)
        assert {k: v for k, v in meta_l.items() if k != "trainer"} == {
            k: v for k, v in meta_r.items() if k != "trainer"
        }


@pytest.mark.parametrize("ensemble", [False, True], ids=["sequential", "ensemble"])
def test_collection_on_ray_equals_the_local_collection(ray_cluster, tmp_path, ensemble):
    settings = dict(seeds="0-2", size="smoke", device="cpu", ensemble=ensemble, ensemble_size=2)
    local = collect("sparse_parities", out=tmp_path / "local", executor=LocalExecutor(), **settings)
    distributed = collect("sparse_parities", out=tmp_path / "ray", executor=RayExecutor(), **settings)
    assert local.trained == distributed.trained == [0, 1, 2]
    assert set(distributed.trainer.values()) == {"ensemble" if ensemble else "sequential"}
    assert_same_runs(read_collection(tmp_path / "local"), read_collection(tmp_path / "ray"), rtol=1e-6)
    # Re-running skips every finished run.
    again = collect("sparse_parities", out=tmp_path / "ray", executor=RayExecutor(), **settings)
    assert again.trained == [] and again.skipped == [0, 1, 2]


class FlakyParities(SparseParitiesTask):
    """Sparse parities whose seed ``flaky_seed`` fails: once (a marker file on disk
    remembers the attempt) by raising or by killing its worker, or always."""

    marker_dir = ""
    flaky_seed = 1
    how = "raise"

    def build_data(self, seed: int):
        if seed == self.flaky_seed:
            marker = os.path.join(self.marker_dir, f"attempted-{seed}")
            first = not os.path.exists(marker)
            open(marker, "a").close()
            if self.how == "always":
                raise RuntimeError(f"seed {seed} is broken")
            if first and self.how == "raise":
                raise OSError(f"transient failure of seed {seed}")
            if first and self.how == "kill":
                os._exit(1)
        return super().build_data(seed)


def flaky_task(marker_dir, how: str) -> SparseParitiesTask:
    cls = type("FlakyParities", (FlakyParities,), {"marker_dir": str(marker_dir), "how": how})
    return cls(size="smoke")


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_run_failing_once_is_retried_and_the_collection_completes(ray_cluster, tmp_path, how):
    out = tmp_path / "runs"
    result = collect(
        flaky_task(tmp_path, how), seeds="0-2", out=out, device="cpu", ensemble=False,
        executor=RayExecutor(max_retries=1),
    )
    assert result.trained == [0, 1, 2]
    # Every run present exactly once, nothing half-written left behind.
    assert sorted(os.listdir(out)) == ["collection.json", "run-0.parquet", "run-1.parquet", "run-2.parquet"]
    assert [read_run(out / f"run-{s}.parquet")[0]["seed"].unique().tolist() for s in range(3)] == [[0], [1], [2]]


def test_a_run_that_always_fails_is_reported_by_name_and_the_others_are_kept(ray_cluster, tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(ExecutionError, match=r"1 of 3 run\(s\) failed: seed-001 \(RuntimeError: seed 1 is broken, 2 attempt") as info:
        collect(
            flaky_task(tmp_path, "always"), seeds="0-2", out=out, device="cpu", ensemble=False,
            executor=RayExecutor(max_retries=1),
        )
    assert list(info.value.failures) == ["seed-001"]
    assert sorted(os.listdir(out)) == ["collection.json", "run-0.parquet", "run-2.parquet"]


def test_collect_command_with_executor_ray(ray_cluster, tmp_path, capsys):
    # The executor joins the Ray session this module started (and leaves it running).
    out = tmp_path / "cli"
    argv = ["collect", "--task", "sparse_parities", "--size", "smoke", "--seeds", "0-1", "--out", str(out),
            "--device", "cpu", "--sequential", "--no-progress", "--executor", "ray", "--cpus-per-run", "1"]
    assert main(argv) == 0
    assert "2 run(s) trained" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["collection.json", "run-0.parquet", "run-1.parquet"]
    assert ray.is_initialized()
    assert main(argv) == 0
    assert "0 run(s) trained" in capsys.readouterr().out and ray.is_initialized()


def test_fit_command_with_executor_ray_equals_the_local_fit(ray_cluster, tmp_path):
    from bayes_trainmap.data import save_trajectories
    from bayes_trainmap.inference.params import HMMParams

    simulated = simulate_training_runs(n_runs=10, n_checkpoints=80, path_dwell=(15, 20, 15), delay=10,
                                       n_features=3, random_state=5)
    save_trajectories(simulated.trajectories, tmp_path / "data")
    common = ["fit", "--data", str(tmp_path / "data"), "--states", "1-2", "--restarts", "2", "--n-iter", "30",
              "--quiet", "--no-report"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local = pd.read_csv(tmp_path / "local" / "selection.csv")
    distributed = pd.read_csv(tmp_path / "ray" / "selection.csv")
    pd.testing.assert_frame_equal(distributed, local, check_exact=False, rtol=1e-9)
    model_local = HMMParams.load(tmp_path / "local" / "model.json")
    model_ray = HMMParams.load(tmp_path / "ray" / "model.json")
    assert model_ray.n_states == model_local.n_states
    np.testing.assert_allclose(model_ray.means, model_local.means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model_ray.trans_mat, model_local.trans_mat, rtol=1e-8, atol=1e-10)


# -- connecting to a cluster (issue 13: one error line within the timeout, never minutes) --


@pytest.mark.parametrize(
    "address, endpoint",
    [(None, None), ("auto", None), ("local", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)),
     ("ray://head.example:10001", ("head.example", 10001)), ("[::1]:6379", ("::1", 6379))],
)
def test_cluster_endpoint_parses_explicit_addresses(address, endpoint):
    from bayes_trainmap.core.executors.ray_cluster import cluster_endpoint

    assert cluster_endpoint(address) == endpoint


@pytest.mark.parametrize("address", ["head", "head:", "head:port", "head:0", "head:70000", ":6379"])
def test_malformed_address_is_refused_before_any_work(address):
    with pytest.raises(BayesTrainmapError, match="malformed Ray address"):
        RayExecutor(address=address)


def test_nothing_listening_is_reported_at_once():
    import socket
    import time

    from bayes_trainmap.core.executors.ray_cluster import check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(BayesTrainmapError, match=rf"cannot reach a Ray cluster at 127.0.0.1:{port}: .*refused"):
        check_reachable(f"127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - start < 5


def test_a_listener_that_is_not_ray_gives_one_line_within_the_timeout(tmp_path):
    """A port that accepts connections but is no Ray head node: Ray alone retries for minutes."""
    import socket
    import subprocess
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        out = tmp_path / "fit"
        argv = [sys.executable, "-m", "bayes_trainmap", "fit", "--states", "2", "--executor", "ray",
                "--address", f"127.0.0.1:{port}", "--connect-timeout", "2", "--out", str(out), "--quiet"]
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer within 2 s" in lines[0], done.stderr
    assert not out.exists()
    assert elapsed < 120  # the data load and imports, plus the 2 s deadline; not Ray's minutes


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_connect_timeout_must_be_positive_seconds(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--executor", "ray", f"--connect-timeout={value}"])
    assert exit_info.value.code == 2
    assert "--connect-timeout" in capsys.readouterr().err
