"""The executor protocol on the local executor, executor selection, and atomic storage.

Ray itself is exercised in ``tests/test_ray.py``; here only its absence is simulated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bayes_trainmap.core.errors import BayesTrainmapError, ExecutionError, TaskError
from bayes_trainmap.core.executors import (
    Executor,
    LocalExecutor,
    add_executor_arguments,
    execute,
    executor_from_args,
    get_executor,
)
from bayes_trainmap.core import storage


def square_unless(bad: set[int], x: int) -> int:
    if x in bad:
        raise RuntimeError(f"bad item {x}")
    return x * x


def fail_first_attempt(marker_dir: str, x: int) -> int:
    """Raise on the first call for each x (a marker file on disk remembers the call)."""
    marker = os.path.join(marker_dir, f"attempted-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise OSError(f"transient failure for {x}")
    return x + 100


def test_local_executor_yields_every_item_in_order_with_one_attempt():
    executor = LocalExecutor()
    assert isinstance(executor, Executor)
    results = list(executor.imap_unordered(partial(square_unless, set()), {"a": 2, "b": 3, "c": 4}))
    assert [r.name for r in results] == ["a", "b", "c"]
    assert [r.value for r in results] == [4, 9, 16]
    assert all(r.ok and r.attempts == 1 and r.error is None for r in results)


def test_failed_item_is_reported_by_name_and_the_others_are_kept():
    items = {f"run-{i}": i for i in range(5)}
    report = execute(LocalExecutor(max_retries=2), partial(square_unless, {3}), items, progress=False)
    assert report.values == {"run-0": 0, "run-1": 1, "run-2": 4, "run-4": 16}
    assert list(report.failures) == ["run-3"]
    failure = report.failures["run-3"]
    assert failure.attempts == 3  # first attempt + 2 retries
    assert isinstance(failure.error, RuntimeError)
    assert failure.error_message == "RuntimeError: bad item 3"
    with pytest.raises(ExecutionError, match=r"1 of 5 run\(s\) failed: run-3 \(RuntimeError: bad item 3, 3 attempt") as info:
        report.raise_for_failures("run")
    assert info.value.failures == {"run-3": "RuntimeError: bad item 3"}
    assert isinstance(info.value, BayesTrainmapError)


def test_transient_failure_is_retried_and_every_item_appears_once(tmp_path):
    items = {f"run-{i}": i for i in range(4)}
    seen = []
    report = execute(
        LocalExecutor(max_retries=1),
        partial(fail_first_attempt, str(tmp_path)),
        items,
        progress=False,
        on_result=lambda result: seen.append(result.name),
    )
    assert report.ok
    report.raise_for_failures()  # no-op
    assert report.values == {f"run-{i}": i + 100 for i in range(4)}
    assert report.attempts == {f"run-{i}": 2 for i in range(4)}
    assert sorted(seen) == sorted(items)


def test_without_retries_a_transient_failure_is_final(tmp_path):
    report = execute(LocalExecutor(), partial(fail_first_attempt, str(tmp_path)), {"x": 1}, progress=False)
    assert list(report.failures) == ["x"] and report.attempts == {"x": 1}
    assert isinstance(report.failures["x"].error, OSError)


def raise_task_error(calls: list, x: int) -> int:
    calls.append(x)
    raise TaskError(f"unknown variant {x}")


def test_configuration_errors_are_not_retried_and_stop_the_work():
    calls: list[int] = []
    results = list(LocalExecutor(max_retries=3).imap_unordered(partial(raise_task_error, calls), {"a": 1}))
    assert calls == [1] and results[0].attempts == 1
    assert isinstance(results[0].error, TaskError)
    # execute re-raises it at once: every other item would fail the same way.
    calls.clear()
    with pytest.raises(TaskError, match="unknown variant 1"):
        execute(LocalExecutor(max_retries=3), partial(raise_task_error, calls), {"a": 1, "b": 2}, progress=False)
    assert calls == [1]


def test_raise_for_failures_appends_the_hint():
    report = execute(LocalExecutor(), partial(square_unless, {0}), {"run-0": 0}, progress=False)
    with pytest.raises(ExecutionError, match=r"run-0 \(RuntimeError: bad item 0, 1 attempt\(s\)\); run again"):
        report.raise_for_failures("run", hint="run again")


def record_then_fail_on(bad: int, calls: list, x: int) -> int:
    calls.append(x)
    if x == bad:
        raise ArithmeticError(f"item {x}")
    return x


def test_fail_fast_reraises_the_original_error_and_stops_the_remaining_items():
    calls: list[int] = []
    with pytest.raises(ArithmeticError, match="item 1"):
        execute(
            LocalExecutor(max_retries=1),
            partial(record_then_fail_on, 1, calls),
            {f"k{i}": i for i in range(4)},
            progress=False,
            fail_fast=True,
        )
    assert calls == [0, 1, 1]  # item 1 retried once, items 2 and 3 never started


def interrupt(x: int) -> int:
    raise KeyboardInterrupt


def test_keyboard_interrupt_stops_the_local_executor():
    with pytest.raises(KeyboardInterrupt):
        execute(LocalExecutor(max_retries=3), interrupt, {"a": 1}, progress=False)


@pytest.mark.parametrize("items", [[("a", 1)], {"": 1}, {3: 1}])
def test_bad_work_items_are_refused(items):
    with pytest.raises(ValueError, match="work item"):
        list(LocalExecutor().imap_unordered(abs, items))


def test_get_executor_builds_local_and_refuses_unknown_names_and_misplaced_options():
    executor = get_executor("local", max_retries=1, address=None)
    assert isinstance(executor, LocalExecutor) and executor.max_retries == 1
    with pytest.raises(BayesTrainmapError, match="unknown executor 'dask'; expected one of local, ray"):
        get_executor("dask")
    with pytest.raises(BayesTrainmapError, match="address only apply to the ray executor"):
        get_executor("local", address="auto")
    with pytest.raises(ValueError, match="max_retries must be a non-negative int, got -1"):
        LocalExecutor(max_retries=-1)


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(BayesTrainmapError, match=r'pip install "bayes_trainmap\[ray\]"'):
        get_executor("ray")


def test_executor_arguments_round_trip():
    import argparse

    parser = argparse.ArgumentParser()
    add_executor_arguments(parser, per="run")
    args = parser.parse_args([])
    assert args.executor == "local"
    executor = executor_from_args(args)
    assert isinstance(executor, LocalExecutor) and executor.max_retries == 0
    args = parser.parse_args(["--executor", "local", "--max-retries", "2"])
    assert executor_from_args(args).max_retries == 2
    args = parser.parse_args(["--executor", "local", "--gpus-per-run", "0.5"])
    with pytest.raises(BayesTrainmapError, match="num_gpus_per_task only apply to the ray executor"):
        executor_from_args(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["--executor", "spark"])


def test_local_execution_never_imports_ray():
    # A fresh interpreter: this test session may have imported Ray elsewhere.
    code = textwrap.dedent(
        """
        import sys
        from functools import partial
        from bayes_trainmap.core.executors import execute, get_executor
        with get_executor("local") as executor:
            report = execute(executor, partial(pow, 3), {"a": 2}, progress=False)
        assert report.values == {"a": 9}, report
        print(sorted(name for name in sys.modules if name == "ray" or name.startswith("ray.")))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


# -- storage ------------------------------------------------------------------------


def _table() -> pa.Table:
    return pa.table({"step": np.arange(5, dtype=np.int64), "l2": np.linspace(0.0, 1.0, 5)})


def test_local_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "deep" / "run-0.parquet"
    storage.write_parquet_atomic(str(target), _table())
    assert pq.read_table(target).equals(_table())
    storage.write_parquet_atomic(str(target), _table().slice(0, 2))
    assert pq.read_table(target).num_rows == 2
    assert sorted(os.listdir(target.parent)) == ["run-0.parquet"]
    storage.write_text_atomic(f"file://{tmp_path}/collection.json", json.dumps({"k": 1}))
    assert json.loads((tmp_path / "collection.json").read_text()) == {"k": 1}


def test_local_atomic_write_removes_its_temporary_file_on_failure(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes_atomic(str(tmp_path / "a.bin"), b"xyz")
    assert os.listdir(tmp_path) == []


def test_listing_and_existence_on_local_paths(tmp_path):
    assert storage.list_files(str(tmp_path / "missing"), ".parquet") == []
    storage.write_bytes_atomic(storage.join(str(tmp_path), "run-2.parquet"), b"2")
    storage.write_bytes_atomic(storage.join(str(tmp_path), "run-10.parquet"), b"10")
    (tmp_path / ".run-3.parquet.tmp-abc").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("x")
    assert storage.list_files(str(tmp_path), ".parquet") == ["run-10.parquet", "run-2.parquet"]
    assert storage.exists(str(tmp_path / "run-2.parquet"))
    assert not storage.exists(f"file://{tmp_path}/run-3.parquet")
    assert storage.read_bytes(str(tmp_path / "run-10.parquet")) == b"10"
    assert storage.join("s3://bucket/prefix/", "run-1.parquet") == "s3://bucket/prefix/run-1.parquet"
    assert storage.join(f"file://{tmp_path}", "a") == f"file://{tmp_path}/a"


def test_object_store_uris_are_written_to_the_final_key():
    # fsspec's in-memory file system stands in for an object store (no network here).
    import fsspec  # a dependency of torch, so always present
    base = "memory://bayes-trainmap-test/collection"
    memory = fsspec.filesystem("memory")
    if memory.exists("/bayes-trainmap-test"):
        memory.rm("/bayes-trainmap-test", recursive=True)
    assert not storage.is_local(base)
    assert storage.list_files(base, ".parquet") == []
    storage.make_dirs(base)
    storage.write_parquet_atomic(storage.join(base, "run-1.parquet"), _table())
    storage.write_text_atomic(storage.join(base, "collection.json"), "{}")
    # Only the final objects exist: no temporary keys are created on object stores.
    assert sorted(p.rsplit("/", 1)[1] for p in memory.find("/bayes-trainmap-test")) == [
        "collection.json",
        "run-1.parquet",
    ]
    assert storage.list_files(base, ".parquet") == ["run-1.parquet"]
    assert storage.exists(storage.join(base, "run-1.parquet"))
    data = storage.read_bytes(storage.join(base, "run-1.parquet"))
    assert pq.read_table(pa.BufferReader(data)).equals(_table())
    with pytest.raises(FileNotFoundError, match="run-9.parquet"):
        storage.read_bytes(storage.join(base, "run-9.parquet"))
    memory.rm("/bayes-trainmap-test", recursive=True)


def test_unknown_uri_scheme_is_a_clear_error():
    with pytest.raises(BayesTrainmapError, match="unsupported output location 'nosuchfs://x/y'"):
        storage.write_bytes_atomic("nosuchfs://x/y", b"")


def test_collection_into_an_object_store_uri_resumes_and_refuses_other_settings():
    import fsspec  # a dependency of torch; its in-memory file system stands in for S3

    from bayes_trainmap.tasks.collect import collect

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


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "--task", "sparse_parities", "--size", "smoke", "--seeds", "0"],
        ["fit", "--states", "2", "--restarts", "1", "--quiet", "--no-report"],
    ],
    ids=["collect", "fit"],
)
def test_executor_ray_without_ray_is_one_line_with_the_install_command(argv, tmp_path, monkeypatch, capsys):
    from bayes_trainmap.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--executor", "ray"]) == 2
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr == ['error: the Ray executor needs Ray: pip install "bayes_trainmap[ray]"']
    assert not out.exists()


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    """Issue 13: ENOSPC from a write names no file; the error must say which one failed."""
    import errno

    real_fsync = os.fsync

    def full(fd):
        real_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "fit" / "model.json"
    with pytest.raises(OSError) as info:
        storage.write_text_atomic(str(target), "{}")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path / "fit") == []  # the temporary file is gone


def test_writing_where_a_directory_is_names_the_target(tmp_path):
    (tmp_path / "report.md").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        storage.write_text_atomic(str(tmp_path / "report.md"), "text")
    assert info.value.filename == str(tmp_path / "report.md")
    assert sorted(os.listdir(tmp_path)) == ["report.md"]
