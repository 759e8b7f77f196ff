"""Stress benchmark (issue 13): large trajectory sets through ``fit``, with time and peak memory.

    python benchmarks/bench_scale.py              # 1,000 runs x 50 checkpoints; 40 runs x 20,000 checkpoints
    python benchmarks/bench_scale.py --quick      # a tenth of each

Each case runs in a fresh subprocess (simulated planted runs, 14 statistics, K = 1-8 by
held-out BIC, 2 restarts, the robustness resampling off) and prints wall time and peak
resident memory (``ru_maxrss``). Target: under 2 GiB each. The anchor printed first is
the same fit at 40 runs x 200 checkpoints, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np
from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.fitting.pipeline import fit
n_runs, n_checkpoints = int(sys.argv[1]), int(sys.argv[2])
scale = n_checkpoints / 200  # the planted path's dwell times scale with the run length
sim = simulate_training_runs(
    n_runs, n_checkpoints=n_checkpoints, path_dwell=tuple(max(2, int(d * scale)) for d in (30, 40, 30)),
    delay=max(2, int(40 * scale)), random_state=0,
)
t0 = time.perf_counter()
result = fit(sim.trajectories, n_restarts=2, progress=False, bootstrap=0, k_resamples=0)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"seconds": seconds, "peak_mib": peak, "k": result.n_states, "n": int(sim.lengths.sum())}))
"""


def run_case(n_runs: int, n_checkpoints: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(n_runs), str(n_checkpoints)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"case {n_runs}x{n_checkpoints} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of each case")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    cases = [("anchor", 40, 200), ("many runs", 1000 // scale, 50), ("long runs", 40, 20000 // scale)]
    anchor = None
    print(f"{'case':<10} {'runs':>5} {'ckpts/run':>9} {'K':>3} {'seconds':>8} {'x anchor':>8} {'peak MiB':>9}")
    for name, n_runs, n_checkpoints in cases:
        t0 = time.perf_counter()
        r = run_case(n_runs, n_checkpoints)
        anchor = anchor or r
        print(f"{name:<10} {n_runs:>5} {n_checkpoints:>9} {r['k']:>3} {r['seconds']:8.1f} "
              f"{r['seconds'] / anchor['seconds']:8.1f} {r['peak_mib']:9.0f}   (wall incl. start {time.perf_counter() - t0:.0f} s)")
    print(f"peak memory target: < 2048 MiB per case; this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
