"""Stress benchmark (issue 13): large trajectory sets through ``fit``, with time and peak memory.

    python benchmarks/bench_scale.py              # 1,000 runs x 50 checkpoints; 40 runs x 20,000 checkpoints
    python benchmarks/bench_scale.py --quick      # a tenth of each

Each case is simulated (planted runs, 14 statistics) and saved as per-run Parquet files by
one subprocess; a fresh subprocess then runs the command a user would,
``python -m bayes_trainmap fit --data DIR`` (K = 1-8 by held-out BIC, 2 restarts, the
robustness resampling off, no report), and prints its wall time and peak resident memory
(``ru_maxrss``: loading, z-scoring, selection, decoding, analysis and writing the fit
directory). Target: under 2 GiB each. The anchor printed first is the same fit at 40 runs
x 200 checkpoints, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATE = r"""
import sys
from bayes_trainmap.data import save_trajectories
from bayes_trainmap.data.simulate import simulate_training_runs
n_runs, n_checkpoints, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
scale = n_checkpoints / 200  # the planted path's dwell times scale with the run length
sim = simulate_training_runs(
    n_runs, n_checkpoints=n_checkpoints, path_dwell=tuple(max(2, int(d * scale)) for d in (30, 40, 30)),
    delay=max(2, int(40 * scale)), random_state=0,
)
save_trajectories(sim.trajectories, out)
"""

FIT = r"""
import json, resource, sys, time
from bayes_trainmap.cli import main
data, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
status = main(["fit", "--data", data, "--out", out, "--n-restarts", "2", "--bootstrap", "0", "--k-resamples", "0",
               "--no-report", "--quiet"])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
summary = json.load(open(f"{out}/summary.json"))
print(json.dumps({"status": status, "seconds": seconds, "peak_mib": peak, "k": summary["n_states"]}))
"""


def _child(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def run_case(n_runs: int, n_checkpoints: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        data = str(Path(tmp) / "runs")
        _child(GENERATE, str(n_runs), str(n_checkpoints), data)
        return json.loads(_child(FIT, data, str(Path(tmp) / "fit")).strip().splitlines()[-1])


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
