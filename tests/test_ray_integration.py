"""The BIC sweep and the seed collection through the Ray executor equal the local executor.

A local 2-CPU Ray instance is started once for this module.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
import ray

from bayes_trainmap.cli import main
from bayes_trainmap.errors import ExecutionError, TaskError
from bayes_trainmap.executors import LocalExecutor
from bayes_trainmap.executors.ray_cluster import RayExecutor
from bayes_trainmap.simulate import simulate_training_runs
from tasks.collect import collect
from tasks.sparse_parities import SparseParitiesTask
from tasks.trajectory_io import read_run

# The flaky tasks below are defined here, a module Ray's workers cannot import by name.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


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
    settings = dict(seeds="0-3", size="smoke", device="cpu", ensemble=ensemble, ensemble_size=2)
    local = collect("sparse_parities", out=tmp_path / "local", executor=LocalExecutor(), **settings)
    distributed = collect("sparse_parities", out=tmp_path / "ray", executor=RayExecutor(), **settings)
    assert local.trained == distributed.trained == [0, 1, 2, 3]
    assert set(distributed.trainer.values()) == {"ensemble" if ensemble else "sequential"}
    assert_same_runs(read_collection(tmp_path / "local"), read_collection(tmp_path / "ray"), rtol=1e-6)
    # Re-running skips every finished run.
    again = collect("sparse_parities", out=tmp_path / "ray", executor=RayExecutor(), **settings)
    assert again.trained == [] and again.skipped == [0, 1, 2, 3]


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


def test_collection_into_an_object_store_uri_resumes_and_refuses_other_settings():
    import fsspec  # a dependency of torch; its in-memory file system stands in for S3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bayes_trainmap.executors import storage

    memory = fsspec.filesystem("memory")
    if memory.exists("/bt-collect"):
        memory.rm("/bt-collect", recursive=True)
    base = "memory://bt-collect/runs"
    settings = dict(size="smoke", device="cpu", ensemble=False, out=base)
    first = collect("sparse_parities", seeds="0-1", **settings)
    assert first.out == base and first.trained == [0, 1]
    assert storage.list_files(base) == ["collection.json", "run-0.parquet", "run-1.parquet"]
    table = pq.read_table(pa.BufferReader(storage.read_bytes(storage.join(base, "run-1.parquet"))))
    assert set(table.column("seed").to_pylist()) == {1} and table.num_rows > 1
    second = collect("sparse_parities", seeds="0-2", **settings)
    assert second.skipped == [0, 1] and second.trained == [2]
    with pytest.raises(TaskError, match="another configuration; differing keys: config.steps"):
        collect("sparse_parities", seeds="0-2", steps=7, **settings)
    memory.rm("/bt-collect", recursive=True)


def test_fit_command_with_executor_ray_equals_the_local_fit(ray_cluster, tmp_path):
    from bayes_trainmap.data import save_trajectories
    from inference.params import HMMParams

    simulated = simulate_training_runs(n_runs=10, n_checkpoints=80, path_dwell=(15, 20, 15), delay=10,
                                       n_features=3, random_state=5)
    save_trajectories(simulated.trajectories, tmp_path / "data")
    common = ["fit", "--data", str(tmp_path / "data"), "--states", "1-3", "--restarts", "2", "--n-iter", "30",
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
