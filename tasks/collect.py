"""Resumable collection of training runs over many seeds.

Layout of a collection directory::

    out/collection.json      task, variant, size, full configuration, package version, seeds
    out/run-<seed>.parquet   one finished run each (written atomically)

Running the same collection again skips the runs whose file exists and reads back,
removes temporary files of interrupted writes, and trains the rest, so an interrupted
collection is completed with no run lost, duplicated or half-written. A directory
that holds a collection with another configuration is refused (:class:`TaskError`
naming the differing keys); seeds may be added to an existing collection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from bayes_trainmap.core import storage
from bayes_trainmap.core.device import resolve_device
from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.executors import Executor, LocalExecutor, TaskResult, execute
from bayes_trainmap.core.version import __version__

from .base import Task
from .ensemble import train_ensemble
from .loop import RunResult, run_id, train_sequential
from .registry import get_task
from .trajectory_io import read_run, write_run

logger = logging.getLogger(__name__)

COLLECTION_FILE = "collection.json"


def run_path(out: str | os.PathLike, seed: int) -> Path | str:
    """Where seed ``seed``'s run lives in a collection directory (a str for a URI ``out``)."""
    if not storage.is_local(out):
        return storage.join(out, f"run-{int(seed)}.parquet")
    return Path(out) / f"run-{int(seed)}.parquet"


@dataclasses.dataclass
class CollectionResult:
    """What one call of :func:`collect` did.

    Attributes
    ----------
    out : Path or str
        The collection directory (a str when it is an object-store URI).
    trained : list of int
        Seeds trained (and written) by this call.
    skipped : list of int
        Seeds already finished before this call.
    diverged : dict of int to int
        Seed -> first non-finite checkpoint step, for runs of this call that diverged.
    trainer : dict of int to str
        Seed -> ``"ensemble"`` or ``"sequential"``.
    timings : dict of str to float
        Seconds in ``train``, ``statistics`` and ``evaluation``, summed over this call's
        ensembles / sequential runs.
    """

    out: Path | str
    trained: list[int]
    skipped: list[int]
    diverged: dict[int, int]
    trainer: dict[int, str]
    timings: dict[str, float]


def _package_version() -> str:
    return __version__


def _identity(task: Task) -> dict[str, Any]:
    """The part of a task's description that must match to resume a collection."""
    described = task.describe()
    described["config"] = {k: v for k, v in described["config"].items() if k not in task.runtime_keys}
    return json.loads(json.dumps(described))  # normalise tuples -> lists


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} there, {b!r} now)")
    return out


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    storage.write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


def _check_manifest(task: Task, out: Any, manifest: Mapping[str, Any]) -> list[int]:
    """Refuse a manifest of another configuration; return the seeds it lists."""
    identity = _identity(task)
    old_identity = {k: manifest.get(k) for k in ("task", "variant", "size")}
    old_identity["config"] = {
        k: v for k, v in (manifest.get("config") or {}).items() if k not in task.runtime_keys
    }
    diff = _differences(old_identity, identity)
    if diff:
        raise TaskError(
            f"{out} holds a collection with another configuration; differing keys: {'; '.join(diff)}. "
            "Use another --out directory or the same settings."
        )
    return [int(s) for s in manifest.get("seeds", [])]


def _manifest_payload(task: Task, seeds: Iterable[int]) -> dict[str, Any]:
    payload = {
        **task.describe(),
        "threshold": task.threshold,
        "seeds": sorted(set(seeds)),
        "package_version": _package_version(),
    }
    return json.loads(json.dumps(payload))


def _prepare_remote(task: Task, out: str, seeds: list[int]) -> str:
    """:func:`prepare_directory` for an object-store URI (objects appear whole, no temporaries)."""
    manifest_uri = storage.join(out, COLLECTION_FILE)
    known_seeds: list[int] = []
    try:
        if storage.exists(manifest_uri):
            try:
                manifest = json.loads(storage.read_bytes(manifest_uri))
            except json.JSONDecodeError as exc:
                raise TaskError(f"{manifest_uri} is unreadable ({exc}); use another --out location") from exc
            known_seeds = _check_manifest(task, out, manifest)
        elif any(name.startswith("run-") for name in storage.list_files(out, ".parquet")):
            raise TaskError(f"{out} holds run files but no {COLLECTION_FILE}; refusing to mix collections")
        storage.write_text_atomic(
            manifest_uri, json.dumps(_manifest_payload(task, [*known_seeds, *seeds]), indent=2, sort_keys=True)
        )
    except OSError as exc:
        raise TaskError(f"cannot use output location {out}: {exc}") from exc
    return out


def prepare_directory(task: Task, out: str | os.PathLike, seeds: list[int]) -> Path | str:
    """Create or check the collection directory and (re)write ``collection.json``.

    ``out`` may also be an object-store URI (``s3://bucket/prefix``); it is then
    returned as a str.
    """
    if not storage.is_local(out):
        return _prepare_remote(task, os.fspath(out), seeds)
    if "://" in os.fspath(out):  # a file:// URI
        out = storage.local_path(out)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TaskError(f"cannot create output directory {out}: {exc.strerror or exc}") from exc
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise TaskError(f"output directory {out} is not writable")
    manifest_path = out / COLLECTION_FILE
    known_seeds: list[int] = []
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TaskError(f"{manifest_path} is unreadable ({exc}); use another --out directory") from exc
        known_seeds = _check_manifest(task, out, manifest)
    elif any(out.glob("run-*.parquet")):
        raise TaskError(f"{out} holds run files but no {COLLECTION_FILE}; refusing to mix collections")
    try:
        _write_json_atomic(manifest_path, _manifest_payload(task, [*known_seeds, *seeds]))
    except OSError as exc:
        raise TaskError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
    for stale in out.glob(f"{storage.TEMP_PREFIX}*"):
        logger.info("removing %s left by an interrupted write", stale)
        stale.unlink(missing_ok=True)
    return out


def finished_seeds(out: str | os.PathLike, seeds: Iterable[int]) -> list[int]:
    """Seeds whose run file exists and reads back; unreadable files are removed (their run reruns).

    In an object store a run object exists only once completely written, so existence
    is enough there.
    """
    if not storage.is_local(out):
        present = set(storage.list_files(out, ".parquet"))
        return [int(seed) for seed in seeds if f"run-{int(seed)}.parquet" in present]
    done = []
    for seed in seeds:
        path = run_path(out, seed)
        if not path.exists():
            continue
        try:
            frame, _ = read_run(path)
        except TaskError as exc:
            logger.warning("%s; the run will be trained again", exc)
            path.unlink(missing_ok=True)
            continue
        if len(frame):
            done.append(int(seed))
    return done


def _run_metadata(task: Task, result: RunResult) -> dict[str, Any]:
    return json.loads(json.dumps({
        **task.describe(),
        "threshold": task.threshold,
        "run": run_id(result.seed),
        "seed": result.seed,
        "diverged": result.diverged,
        "diverged_step": result.diverged_step,
        "trainer": result.trainer,
        "package_version": _package_version(),
    }))


def parse_seeds(text: str) -> list[int]:
    """``"0-39"``, ``"0,3,5-7"`` or ``"7"`` -> sorted distinct seeds; ``TaskError`` otherwise."""
    seeds: set[int] = set()
    parts = [p.strip() for p in str(text).split(",")]
    for part in parts:
        bounds = part.split("-")
        try:
            if len(bounds) == 1:
                lo = hi = int(bounds[0])
            elif len(bounds) == 2:
                lo, hi = int(bounds[0]), int(bounds[1])
            else:
                raise ValueError
        except ValueError:
            raise TaskError(
                f"malformed seed range {text!r} (at {part!r}); expected e.g. '0-39' or '0,3,5-7' "
                "with non-negative integers"
            ) from None
        if lo < 0 or hi < lo:
            raise TaskError(f"malformed seed range {text!r}: {part!r} must be 'a-b' with 0 <= a <= b")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def collect(
    task: str | Task,
    variant: str = "default",
    seeds: Iterable[int] | str = "0-39",
    out: str | os.PathLike = "trajectories",
    *,
    steps: int | None = None,
    eval_every: int | None = None,
    device: str = "auto",
    ensemble: bool = True,
    size: str = "default",
    overrides: Mapping[str, Any] | None = None,
    ensemble_size: int | None = None,
    progress: bool = False,
    on_run_written: Callable[[int, Path | str], None] | None = None,
    executor: Executor | None = None,
) -> CollectionResult:
    """Train ``seeds`` of a task and write one Parquet file per finished run (resumable).

    Parameters
    ----------
    task : str or Task
        A registered task name, or a configured :class:`Task` (then ``variant``, ``size``,
        ``steps``, ``eval_every`` and ``overrides`` must be left at their defaults).
    variant : str
    seeds : iterable of int or str
        Seeds, or a range string such as ``"0-39"`` / ``"0,3,5-7"``.
    out : path-like or str
        Collection directory (created if needed): a local or shared file-system path,
        or an object-store URI such as ``s3://bucket/prefix`` (see
        :mod:`bayes_trainmap.core.storage`).
    steps, eval_every : int, optional
        Override the task's defaults.
    device : {"auto", "cpu", "cuda"}
    ensemble : bool
        Train the seeds together with ``torch.func`` where the model allows it
        (automatic sequential fallback otherwise); False trains one seed at a time.
    size : {"default", "smoke"}
    overrides : mapping, optional
        Further config overrides (keys of the task's config).
    ensemble_size : int, optional
        Largest number of seeds trained together (default: the pending seeds split
        evenly over the executor's parallel slots; all of them locally).
    progress : bool
        One tqdm bar over the collection's runs (and, locally, a bar per run or ensemble).
    on_run_written : callable(seed, path), optional
        Called after each run file is written (used by the tests to interrupt a
        collection).
    executor : bayes_trainmap.core.executors.Executor, optional
        Where the runs train: one work item per ensemble chunk, or per seed when
        training sequentially. Default: in this process, one item after another. With a
        :class:`~bayes_trainmap.core.executors.ray_cluster.RayExecutor` every item is a Ray
        task; its runs come back to this process, which writes each run file as it
        arrives (so ``out`` needs to be reachable from here only). A run whose item keeps
        failing is reported by name (:class:`~bayes_trainmap.core.errors.ExecutionError`)
        after the others have finished; running the collection again trains just the
        missing runs.

    Returns
    -------
    CollectionResult
    """
    configured = _configured_task(task, variant, size, steps, eval_every, overrides)
    seed_list = _checked_seeds(seeds, ensemble_size)
    executor = executor if executor is not None else LocalExecutor()
    if isinstance(executor, LocalExecutor):
        resolve_device(device, error=TaskError)  # refuse a bad or missing device before any work starts
    out = prepare_directory(configured, out, seed_list)

    skipped = finished_seeds(out, seed_list)
    pending = [s for s in seed_list if s not in skipped]
    if skipped:
        logger.info("%d of %d runs already finished in %s", len(skipped), len(seed_list), out)
    result = CollectionResult(out=out, trained=[], skipped=skipped, diverged={}, trainer={},
                              timings={"train": 0.0, "statistics": 0.0, "evaluation": 0.0})
    if not pending:
        return result

    train_together = ensemble and len(pending) > 1
    chunk = (ensemble_size or math.ceil(len(pending) / executor.parallelism())) if train_together else 1
    groups = {",".join(run_id(s) for s in group): group
              for group in (pending[i : i + chunk] for i in range(0, len(pending), chunk))}
    # Per-run bars only in this process: a worker's bars would interleave in the log.
    work = partial(train_group, configured, device=device, ensemble=train_together,
                   progress=progress and isinstance(executor, LocalExecutor))
    report = execute(executor, work, groups, desc=f"collect {configured.name}", unit="run", progress=progress,
                     on_result=_run_writer(result, configured, on_run_written),
                     weights={name: len(group) for name, group in groups.items()})
    result.trained.sort()
    report.raise_for_failures(
        "run group" if chunk > 1 else "run",
        hint="the finished runs are kept; run the same collection again to train the missing ones",
    )
    return result


def _configured_task(task: str | Task, variant: str, size: str, steps: int | None, eval_every: int | None,
                     overrides: Mapping[str, Any] | None) -> Task:
    """The task :func:`collect` trains: ``task`` itself when configured, else the
    registered one with the given variant, size and overrides."""
    if isinstance(task, Task):
        if steps is not None or eval_every is not None or overrides or variant != "default" or size != "default":
            raise TaskError("pass settings either through a configured Task or as arguments, not both")
        return task
    merged = dict(overrides or {})
    if steps is not None:
        merged["steps"] = steps
    if eval_every is not None:
        merged["eval_every"] = eval_every
    return get_task(task, variant=variant, size=size, **merged)


def _checked_seeds(seeds: Iterable[int] | str, ensemble_size: int | None) -> list[int]:
    """The sorted distinct seeds of :func:`collect`; raises :class:`TaskError` for no
    seed or an ``ensemble_size`` below 1."""
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else sorted({_as_seed(s) for s in seeds})
    if not seed_list:
        raise TaskError("no seeds given; expected e.g. '0-39'")
    if ensemble_size is not None and ensemble_size < 1:
        raise TaskError(f"ensemble_size must be >= 1, got {ensemble_size}")
    return seed_list


def _run_writer(result: CollectionResult, configured: Task,
                on_run_written: Callable[[int, Path | str], None] | None) -> Callable[[TaskResult], None]:
    """The executor's ``on_result`` callback: write each finished run of a work item
    into ``result.out`` and record it in ``result``."""
    out = result.out

    def write(outcome: TaskResult[list[RunResult]]) -> None:
        # Runs are written here, as each item's results arrive: ``out`` needs to be
        # reachable from this process only, and a worker that dies leaves no file.
        if not outcome.ok:
            return
        _add_timings(result.timings, outcome.value)
        for run in outcome.value:
            path = write_run(run.frame, run_path(out, run.seed), _run_metadata(configured, run))
            result.trained.append(run.seed)
            result.trainer[run.seed] = run.trainer
            if run.diverged:
                result.diverged[run.seed] = run.diverged_step
            if on_run_written is not None:
                on_run_written(run.seed, path)

    return write


def train_group(
    task: Task,
    seeds: list[int],
    *,
    device: str = "auto",
    ensemble: bool = True,
    progress: bool = False,
) -> list[RunResult]:
    """Train one group of seeds: an ensemble, or one seed at a time.

    The work item :func:`collect` hands to its executor. It runs wherever the executor
    puts it; the device is resolved there, so a Ray task uses the GPU Ray assigned it.
    """
    torch_device = resolve_device(device, error=TaskError)
    if ensemble:
        return train_ensemble(task, seeds, device=torch_device, progress=progress)
    return [train_sequential(task, seed, device=torch_device, progress=progress) for seed in seeds]


def _as_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TaskError(f"seeds must be non-negative integers, got {value!r}")
    return int(value)


def _add_timings(total: dict[str, float], runs: list[RunResult]) -> None:
    """Add timings once per trainer (an ensemble's runs share one timing record)."""
    if not runs:
        return
    if runs[0].trainer == "ensemble":
        for key, value in runs[0].timings.items():
            total[key] += value
    else:
        for run in runs:
            for key, value in run.timings.items():
                total[key] += value
