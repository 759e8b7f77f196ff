"""Measure how fast a (reduced) modular-addition setting -- or any task (``--task``) -- groks here.

Trains seeds of a task (default ``modular_addition``) through the shared loop and prints,
per seed, the first step where training accuracy reaches 0.99 (memorisation), the
first checkpoint where evaluation accuracy reaches the threshold (default 0.9,
the paper's), whether it stays above ``threshold - 0.1`` afterwards, and the
wall time. Example (the reduced setting measured for issue 7: p = 23, 70% train
split, full batch of 370, width 64, AdamW lr 3e-3, wd 1.0; on the shared 2-core CPU
seeds 0-7 memorised by step 60 and crossed 0.9 eval accuracy at steps 320-820):

    OMP_NUM_THREADS=1 python scripts/modular_grokking_probe.py --seeds 8 --ensemble \\
        --set p=23 --set train_fraction=0.7 --set d_model=64 --set d_head=16 \\
        --set d_mlp=256 --set lr=0.003 --set batch_size=370 --set steps=1200 --set eval_every=10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from bayes_trainmap.tasks.ensemble import train_ensemble
from bayes_trainmap.tasks.loop import RunResult, train_sequential
from bayes_trainmap.tasks.registry import get_task


def summarise(result: RunResult, threshold: float) -> dict:
    frame = result.frame
    crossed = frame.loc[frame["eval_accuracy"] >= threshold, "step"]
    memorised = frame.loc[frame["train_accuracy"] >= 0.99, "step"]
    grok = int(crossed.iloc[0]) if len(crossed) else None
    stays = None if grok is None else bool((frame.loc[frame["step"] >= grok, "eval_accuracy"] >= threshold - 0.1).all())
    return {
        "seed": result.seed,
        "memorised_step": int(memorised.iloc[0]) if len(memorised) else None,
        "threshold_step": grok,
        "stays_above": stays,
        "final_eval_accuracy": round(float(frame["eval_accuracy"].iloc[-1]), 3),
    }


def spread(rows: list[dict]) -> dict:
    """Fraction of seeds crossing the threshold and the min / median / max crossing step."""
    steps = sorted(r["threshold_step"] for r in rows if r["threshold_step"] is not None)
    out = {"converged": f"{len(steps)}/{len(rows)}"}
    if steps:
        out.update(min=steps[0], median=float(np.median(steps)), max=steps[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="train seeds 0..N-1")
    parser.add_argument("--task", default="modular_addition")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--ensemble", action="store_true", help="train the seeds together with torch.func")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    task = get_task(args.task, variant=args.variant, **overrides)
    seeds = list(range(args.seeds))
    if args.ensemble:
        started = time.perf_counter()
        results = train_ensemble(task, seeds, device="cpu")
        elapsed = time.perf_counter() - started
        print(f"{len(seeds)} seeds together ({results[0].trainer}): {elapsed:.1f} s, {elapsed / len(seeds):.1f} s per seed")
        rows = [summarise(result, args.threshold) for result in results]
        for row in rows:
            print(row)
        print(spread(rows))
    else:
        for seed in seeds:
            started = time.perf_counter()
            result = train_sequential(task, seed, device="cpu")
            print({**summarise(result, args.threshold), "seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
