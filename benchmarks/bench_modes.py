"""Side-by-side wall time of ``fit --mode svi`` (and optionally ``map``) against ``fit --mode mle``.

Runs the CLI (``python -m bayes_trainmap fit``) on the demo data with the same options
for each mode, alternating the modes in every repeat so that changes in machine load
hit them alike, and prints the seconds of each run, the median per mode, the ratio
to MLE (target for SVI: at most 3, issue 12 item 6) and the 1-minute load average
(``os.getloadavg()``) before and after each run. Each run writes its fit directory
under a temporary folder that is removed afterwards.

Usage::

    python benchmarks/bench_modes.py                       # svi vs mle, 2 repeats
    python benchmarks/bench_modes.py --modes mle,map,svi --repeats 3
    python benchmarks/bench_modes.py --json docs/benchmarks/modes.json -- --states 5
        # options after "--" are passed to every fit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def load() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


def run_fit(mode: str, out: Path, extra: list[str]) -> dict:
    """One ``fit`` of ``mode`` by the CLI: seconds, exit status and the load before and after."""
    cmd = [sys.executable, "-m", "bayes_trainmap", "fit", "--mode", mode, "--out", str(out), "--quiet", *extra]
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
    config = out / "config.json"
    settings = {}
    if config.exists():
        settings = json.loads(config.read_text()).get("resolved", {}).get("bayes_settings") or {}
    return {
        "mode": mode, "seconds": seconds, "returncode": proc.returncode, "load_before": before,
        "load_after": load(), "steps_run": settings.get("steps_run"), "converged": settings.get("converged"),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="mle,svi", help="comma-separated modes; the first is the reference")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    opts = parser.parse_args(own)
    modes = [m.strip() for m in opts.modes.split(",") if m.strip()]
    runs = []
    print(f"cores: {os.cpu_count()}; options: {' '.join(extra) or '(defaults)'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(opts.repeats):
            order = modes if repeat % 2 == 0 else modes[::-1]
            for mode in order:
                row = run_fit(mode, Path(tmp) / f"{mode}-{repeat}", extra)
                row["repeat"] = repeat
                runs.append(row)
                print(
                    f"repeat {repeat} {mode:>3}: {row['seconds']:7.1f} s (exit {row['returncode']}, load "
                    f"{row['load_before']:.1f} -> {row['load_after']:.1f}"
                    + (f", {row['steps_run']} steps, converged={row['converged']}" if row["steps_run"] else "")
                    + ")",
                    flush=True,
                )
    medians = {m: median([r["seconds"] for r in runs if r["mode"] == m]) for m in modes}
    reference = modes[0]
    ratios = {m: medians[m] / medians[reference] for m in modes[1:]}
    for m in modes[1:]:
        print(f"median {m} {medians[m]:.1f} s / median {reference} {medians[reference]:.1f} s = {ratios[m]:.2f}x")
    figures = {"cores": os.cpu_count(), "options": extra, "runs": runs, "median_seconds": medians, "ratio": ratios}
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
