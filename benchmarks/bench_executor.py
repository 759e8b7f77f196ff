"""Executor overhead: the same smoke collection on the local executor and on Ray.

Runs ``collect`` for a few seeds of a task at smoke size, first in this process
(:class:`~bayes_trainmap.core.executors.LocalExecutor`), then as Ray tasks on a fresh local
Ray instance with ``--ray-cpus`` CPUs (:class:`~bayes_trainmap.core.executors.ray_cluster.RayExecutor`),
each into its own directory, and prints the wall times and the difference. The Ray
collection runs twice: "cold" (worker processes start and import torch) and "warm"
(workers reused), and ``ray.init`` is timed separately. Local and warm times are the
median of ``--repeats`` collections into fresh directories. It also checks that both
executors wrote the same trajectories.

This measures overhead on one machine, not a speed-up: on a cluster the Ray tasks run
on many nodes at once.

Usage::

    python benchmarks/bench_executor.py [--task sparse_parities] [--seeds 0-7]
        [--sequential] [--ray-cpus 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _max_relative_difference(left: str, right: str) -> float:
    from bayes_trainmap.tasks.trajectory_io import read_run

    worst = 0.0
    names = sorted(n for n in os.listdir(left) if n.endswith(".parquet"))
    assert names == sorted(n for n in os.listdir(right) if n.endswith(".parquet")), "different run files"
    for name in names:
        a, _ = read_run(os.path.join(left, name))
        b, _ = read_run(os.path.join(right, name))
        numeric = a.select_dtypes("float").columns
        x, y = a[numeric].to_numpy(), b[numeric].to_numpy()
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-12))))
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sparse_parities")
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--sequential", action="store_true", help="one seed per task (default: ensembles)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--repeats", type=int, default=3, help="collections timed per warm setting")
    args = parser.parse_args(argv)

    import ray

    from bayes_trainmap.core.executors import LocalExecutor
    from bayes_trainmap.core.executors.ray_cluster import RayExecutor
    from bayes_trainmap.tasks.collect import collect, parse_seeds

    n_runs = len(parse_seeds(args.seeds))
    settings = dict(seeds=args.seeds, size="smoke", device="cpu", ensemble=not args.sequential)
    mode = "sequential" if args.sequential else "ensemble"
    with tempfile.TemporaryDirectory() as tmp:

        def timed_collections(label: str, executor, repeats: int) -> float:
            times = [
                _timed(collect, args.task, out=os.path.join(tmp, f"{label}-{i}"), executor=executor, **settings)[1]
                for i in range(repeats)
            ]
            return float(np.median(times))

        # Warm this process's caches first (imports, numba, data), as the Ray workers' are when warm.
        collect(args.task, out=os.path.join(tmp, "warmup"), executor=LocalExecutor(), **{**settings, "seeds": "0"})
        local_s = timed_collections("local", LocalExecutor(), args.repeats)
        _, init_s = _timed(
            ray.init, address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False
        )
        try:
            executor = RayExecutor()
            cold_s = timed_collections("cold", executor, 1)
            warm_s = timed_collections("warm", executor, args.repeats)
        finally:
            ray.shutdown()
        difference = _max_relative_difference(os.path.join(tmp, "local-0"), os.path.join(tmp, "warm-0"))

    print(f"{args.task} smoke collection, {n_runs} runs, {mode} training, Ray with {args.ray_cpus} CPUs "
          f"(local and warm: median of {args.repeats})")
    print(f"  local executor            {local_s:8.2f} s")
    print(f"  ray.init (local instance) {init_s:8.2f} s")
    print(f"  Ray executor, cold        {cold_s:8.2f} s   (overhead {cold_s - local_s:+.2f} s, "
          f"ratio {cold_s / local_s:.2f}x)")
    print(f"  Ray executor, warm        {warm_s:8.2f} s   (overhead {warm_s - local_s:+.2f} s, "
          f"ratio {warm_s / local_s:.2f}x)")
    print(f"  largest relative difference between local and Ray trajectories: {difference:.1e}")


if __name__ == "__main__":
    main()
