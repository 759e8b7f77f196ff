"""Command-line front ends of ``collect`` and ``tasks``.

``bayes_trainmap.cli`` wires these into ``python -m bayes_trainmap collect ...`` and
``python -m bayes_trainmap tasks``; :func:`main` runs them standalone
(``python -m tasks.cli collect ...``). User errors raise
:class:`bayes_trainmap.core.errors.TaskError`; :func:`main` prints them on one line and
returns 2, as ``bayes_trainmap.cli`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bayes_trainmap.core.errors import BayesTrainmapError, TaskError
from bayes_trainmap.core.executors import add_executor_arguments, executor_from_args

#: Variant shortcuts of the issue's command lines (``--stabilized`` etc.).
_VARIANT_FLAGS = ("stabilized", "destabilized")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_collect_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``collect`` options to ``parser``."""
    parser.add_argument("--task", required=True, help="task name (see the `tasks` command)")
    parser.add_argument("--variant", default="default", help="task variant (default: %(default)s)")
    for flag in _VARIANT_FLAGS:
        parser.add_argument(f"--{flag}", dest="variant", action="store_const", const=flag,
                            help=f"shortcut for --variant {flag}")
    parser.add_argument("--seeds", default="0-39", help="seeds, e.g. 0-39 or 0,3,5-7 (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="collection directory (default: trajectories/<task>-<variant>)")
    parser.add_argument("--steps", type=_positive_int, default=None, help="optimiser steps per run")
    parser.add_argument("--eval-every", type=_positive_int, default=None, help="steps between checkpoints")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ensemble", dest="ensemble", action="store_true", default=True,
                      help="train seeds together with torch.func where possible (default)")
    mode.add_argument("--sequential", dest="ensemble", action="store_false", help="train one seed at a time")
    parser.add_argument("--ensemble-size", type=_positive_int, default=None,
                        help="most seeds trained together (default: all locally; with --executor ray, "
                        "the seeds split evenly over the cluster's slots)")
    parser.add_argument("--size", choices=("default", "smoke"), default="default",
                        help="'smoke' shrinks data, model and steps to seconds (default: %(default)s)")
    parser.add_argument("--data-root", default=None, help="data directory of tasks that read data sets")
    parser.add_argument("--download", action="store_true", default=None,
                        help="allow torchvision to download the data set (mnist, cifar100)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (VALUE parsed as JSON, else a string); repeatable")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                        help="hide the progress bars")
    add_executor_arguments(parser, per="run")
    return parser


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "data_root=/x"]`` -> ``{"lr": 0.01, "data_root": "/x"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TaskError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run_collect(args: argparse.Namespace) -> int:
    """Run ``collect`` for parsed arguments; prints a one-paragraph summary, returns 0."""
    # lazily: collect imports torch and the training loop
    from .collect import collect, parse_seeds

    seeds = parse_seeds(args.seeds)
    overrides = parse_overrides(args.overrides)
    if args.data_root is not None:
        overrides["data_root"] = args.data_root
    if args.download:
        overrides["download"] = True
    out = args.out or f"trajectories/{args.task}-{args.variant}"
    with executor_from_args(args) as executor:
        result = collect(
            args.task,
            variant=args.variant,
            seeds=seeds,
            out=out,
            steps=args.steps,
            eval_every=args.eval_every,
            device=args.device,
            ensemble=args.ensemble,
            size=args.size,
            overrides=overrides,
            ensemble_size=args.ensemble_size,
            progress=args.progress,
            executor=executor,
        )
    paths = sorted(set(result.trainer.values()))
    print(
        f"{args.task} ({args.variant}): {len(result.trained)} run(s) trained"
        f"{' (' + ', '.join(paths) + ')' if paths else ''}, {len(result.skipped)} already finished, "
        f"{len(result.diverged)} diverged -> {result.out}"
    )
    if result.diverged:
        print("diverged: " + ", ".join(f"seed {s} at step {t}" for s, t in sorted(result.diverged.items())))
    return 0


def add_tasks_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``tasks`` options to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print the full default configurations as JSON")
    return parser


def task_table() -> list[dict[str, Any]]:
    """One entry per task: name, description, variants, and per variant threshold and config.

    Read from the task specs (:mod:`tasks.catalog`), so no task's training code is imported.
    """
    # lazily: the registry is needed only by the commands, not by building the parser
    from .registry import task_names, task_spec

    return [task_spec(name).describe() for name in task_names()]


def run_tasks(args: argparse.Namespace) -> int:
    """Print the tasks with their variants and main defaults; returns 0."""
    rows = task_table()
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, default=str))
        return 0
    keys = ("steps", "eval_every", "batch_size", "optimizer", "lr", "weight_decay")
    header = ["task", "variant", *keys, "threshold"]
    table = [header]
    for row in rows:
        for variant, config in row["config"].items():
            table.append([row["task"], variant, *(str(config.get(k, "")) for k in keys), str(row["threshold"][variant])])
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print()
    for row in rows:
        print(f"{row['task']}: {row['description']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m tasks.cli {collect,tasks} ...``."""
    parser = argparse.ArgumentParser(prog="python -m tasks.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_collect_arguments(sub.add_parser("collect", help="train seeds of a task and record trajectories"))
    add_tasks_arguments(sub.add_parser("tasks", help="list the training tasks and their defaults"))
    args = parser.parse_args(argv)
    try:
        return run_collect(args) if args.command == "collect" else run_tasks(args)
    except (BayesTrainmapError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
