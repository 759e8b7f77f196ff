"""The ``decode`` and ``watch`` commands of ``python -m bayes_trainmap``."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.data import load_trajectories
from bayes_trainmap.data.fitdir import load_fit_dir
from bayes_trainmap.monitor.model import load_map_model
from bayes_trainmap.monitor.normalize import NORMALIZATIONS
from bayes_trainmap.monitor.watch import RunWatcher, status_table

__all__ = ["add_decode_arguments", "add_watch_arguments", "run_decode", "run_watch"]


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fit_dir", metavar="FITDIR", help="fit directory written by fit")
    parser.add_argument("--data", required=True, metavar="NEWRUNS", help="finished runs to decode (any format fit reads)")
    parser.add_argument("--out", metavar="FILE",
                        help="write the per-checkpoint table (.parquet or .csv; edges and detour visits go "
                             "to FILE's stem + .edges.csv / .detours.csv)")
    parser.add_argument("--quiet", action="store_true", help="do not print the per-run summary")


def run_decode(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
        raise BayesTrainmapError(f"--out must end in .parquet or .csv, got '{out}'")
    if out is not None and out.parent.exists() and not out.parent.is_dir():
        raise BayesTrainmapError(f"--out '{out}': '{out.parent}' is not a directory")
    fit = load_fit_dir(args.fit_dir)
    result = fit.decode(load_trajectories(args.data))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".parquet":
            result.checkpoints.to_parquet(out, index=False)
        else:
            result.checkpoints.to_csv(out, index=False)
        result.edges.to_csv(out.with_suffix(".edges.csv"), index=False)
        result.detours.to_csv(out.with_suffix(".detours.csv"), index=False)
    if not args.quiet:
        frame = result.checkpoints
        for run, rows in frame.groupby("run", sort=False):
            states = rows["state"].to_numpy()
            path = [int(states[0])] + [int(b) for a, b in itertools.pairwise(states) if a != b]
            new = result.edges[(result.edges["run"] == run) & ~result.edges["seen"]]
            visits = result.detours[result.detours["run"] == run]
            line = f"{run}: {' -> '.join(map(str, path))}"
            if len(new):
                line += "; new edges " + ", ".join(f"{s}->{t} at {st}" for s, t, st in
                                                   zip(new["source"], new["target"], new["step"]))
            if len(visits):
                line += "; detour " + ", ".join(f"{s} ({n} ckpt)" for s, n in zip(visits["state"], visits["n_checkpoints"]))
            print(line)
        if out is not None:
            print(f"decoded: {out}")
    return 0


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUNDIR", help="folder the recorder writes run files into")
    parser.add_argument("--model", required=True, metavar="FITDIR", help="fit directory to monitor against")
    parser.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between polls (default: %(default)s)")
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="blend",
                        help="online z-scoring of a running job (default: %(default)s; see the README)")
    parser.add_argument("--width", type=int, default=80, help="table width in columns (default: %(default)s)")


def run_watch(args: argparse.Namespace) -> int:
    from rich.console import Console

    if not args.interval > 0:
        raise BayesTrainmapError(f"--interval must be a positive number of seconds, got {args.interval}")
    if args.width < 40:
        raise BayesTrainmapError(f"--width must be at least 40 columns, got {args.width}")
    watcher = RunWatcher(args.run_dir, load_map_model(args.model), args.normalization)
    console = Console(width=args.width, highlight=False)
    while True:
        watcher.poll()
        console.print(status_table(watcher, width=args.width))
        if args.once:
            return 0
        time.sleep(args.interval)
