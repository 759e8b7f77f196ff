"""Seed ensembles against sequential training: 40 seeds of sparse parities, same process.

Trains the same seeds with the same settings twice -- one ``nn.Module`` + ``torch.optim``
run per seed (the reference loop), then all seeds together as a seed ensemble
-- and prints both wall times, their ratio, the largest relative difference between the
two paths' recorded values, and the share of time spent computing the 14 weight
statistics at the task's default checkpoint frequency (every 100 steps).

    python benchmarks/bench_collect.py            # 40 seeds x 1000 steps
    python benchmarks/bench_collect.py --quick    # 8 seeds x 200 steps (smoke run)

Timings depend on the machine and its load; only the ratio measured in one process is
meaningful. ``--threads`` sets torch's intra-op threads for both paths (default: torch's
own default, one per physical core). The sequential path is bound by per-operation
overhead and gains nothing from a second thread; the ensemble's batched products do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_trainmap.core.schema import OUTCOME_COLUMNS, STATISTIC_NAMES
from bayes_trainmap.tasks.ensemble import train_ensemble
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.registry import get_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=None, help="default: the task's (100)")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's own")
    parser.add_argument("--quick", action="store_true", help="8 seeds x 200 steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 8, 200
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    task = get_task("sparse_parities", steps=args.steps, eval_every=args.eval_every)
    seeds = list(range(args.seeds))
    data = {s: task.build_data(s) for s in seeds}
    train_ensemble(get_task("sparse_parities", size="smoke", steps=5), [0, 1], device="cpu")  # warm-up

    started = time.perf_counter()
    sequential = [train_sequential(task, s, device="cpu", data=data[s]) for s in seeds]
    t_sequential = time.perf_counter() - started
    started = time.perf_counter()
    ensemble = train_ensemble(task, seeds, device="cpu")
    t_ensemble = time.perf_counter() - started

    columns = [*STATISTIC_NAMES, *OUTCOME_COLUMNS]
    # difference relative to each column's scale over the run (values cross zero, e.g. trace)
    diffs = []
    for a, b in zip(sequential, ensemble):
        va, vb = a.frame[columns].to_numpy(), b.frame[columns].to_numpy()
        diffs.append(np.abs(va - vb) / np.maximum(np.abs(va).max(axis=0), 1e-12))
    first_checkpoint = max(float(d[1].max()) for d in diffs)
    overall = max(float(d.max()) for d in diffs)
    stats_seq = sum(r.timings["statistics"] for r in sequential)
    figures = {
        "task": "sparse_parities",
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": task.config["eval_every"],
        "threads": args.threads,
        "trainer": ensemble[0].trainer,
        "sequential_seconds": t_sequential,
        "ensemble_seconds": t_ensemble,
        "speedup": t_sequential / t_ensemble,
        "ensemble_statistics_share": ensemble[0].timings["statistics"] / t_ensemble,
        "sequential_statistics_share": stats_seq / t_sequential,
        "ensemble_evaluation_share": ensemble[0].timings["evaluation"] / t_ensemble,
        "max_scaled_difference_first_checkpoint": first_checkpoint,
        "max_scaled_difference_any_checkpoint": overall,
    }
    print(f"sparse parities, {args.seeds} seeds x {args.steps} steps, checkpoint every "
          f"{figures['eval_every']} steps, {args.threads} torch thread(s)")
    print(f"  sequential (nn.Module + torch.optim, one seed at a time): {t_sequential:8.2f} s")
    print(f"  ensemble   (stacked weights, all seeds at once):           {t_ensemble:8.2f} s")
    print(f"  speed-up: {figures['speedup']:.1f}x")
    print(f"  time in weight statistics: ensemble {100 * figures['ensemble_statistics_share']:.1f}%, "
          f"sequential {100 * figures['sequential_statistics_share']:.1f}%")
    print(f"  largest difference between the two paths' records (relative to each column's scale): "
          f"{first_checkpoint:.1e} at the first checkpoint, {overall:.1e} over the whole run "
          "(rounding differences grow as training amplifies them)")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
