"""Command line: ``python -m bayes_trainmap {fit,report,decode,watch,collect,tasks}``.

A thin layer over :mod:`bayes_trainmap.fitting.pipeline`, :mod:`bayes_trainmap.report` and
:mod:`tasks.cli`. Errors caused by the input (any :class:`BayesTrainmapError`, the
``ValueError`` types of the ``inference`` and ``tasks`` packages, and OS errors such
as a missing file) are printed as one line ``error: ...`` on stderr with exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.executors import add_executor_arguments, executor_from_args
from bayes_trainmap.core.version import __version__

if TYPE_CHECKING:
    from bayes_trainmap.fitting.config import FitConfig

__all__ = ["build_parser", "main"]

#: Exit status for bad input or configuration (argparse uses the same).
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Packages whose ValueError subclasses describe bad input, not bugs.
_USER_ERROR_PACKAGES = ("bayes_trainmap", "inference", "tasks")

def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, (BayesTrainmapError, OSError)):
        return True
    if isinstance(exc, ValueError) and type(exc) is not ValueError:
        return type(exc).__module__.split(".")[0] in _USER_ERROR_PACKAGES
    return False


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.strerror}: '{exc.filename}'"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# ----------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------
def _features_arg(values: list[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def _add_uncertainty_arguments(parser: argparse.ArgumentParser, defaults: FitConfig) -> None:
    """The Bayesian modes' options and the resampling options of every mode."""
    # lazily: the defaults live in the fitting layer and the engine (torch, pyro), which only `fit` needs
    from bayes_trainmap.fitting.bayesian import DEFAULT_DRAWS, DEFAULT_LR, DEFAULT_STEPS
    from bayes_trainmap.fitting.robustness import INTERVAL_METHODS
    from bayes_trainmap.inference.guides import GUIDES

    bayes = parser.add_argument_group("Bayesian modes (map, svi)")
    bayes.add_argument(
        "--draws", type=int, help=f"posterior draws for the credible intervals (default: {DEFAULT_DRAWS}; svi)"
    )
    bayes.add_argument(
        "--steps", type=int,
        help=f"optimisation steps (default: {DEFAULT_STEPS['map']} for map, {DEFAULT_STEPS['svi']} for svi)",
    )
    bayes.add_argument(
        "--lr", type=float, help=f"learning rate (default: {DEFAULT_LR['map']} for map, {DEFAULT_LR['svi']} for svi)"
    )
    bayes.add_argument(
        "--guide", choices=GUIDES,
        help="variational family (default: auto: full rank for small models, else low rank)",
    )
    bayes.add_argument(
        "--intervals",
        choices=INTERVAL_METHODS,
        default=defaults.intervals,
        help="interval method: BayesBag over runs (carries seed-to-seed variation) or the model's plain "
        "posterior (default: %(default)s)",
    )

    robust = parser.add_argument_group("uncertainty and robustness (all modes)")
    robust.add_argument(
        "--interval", type=float, default=defaults.interval,
        help="level of every interval in the report (default: %(default)s)",
    )
    robust.add_argument(
        "--bootstrap", type=int, metavar="B", default=defaults.bootstrap,
        help="resamples of the runs for the robustness section and the bagged intervals (default: %(default)s; 0 skips)",
    )
    robust.add_argument(
        "--k-resamples", type=int, metavar="R", default=defaults.k_resamples,
        help="resamples of the K selection for the stability of K (default: %(default)s; 0 skips)",
    )


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``fit`` option, its default (from :class:`FitConfig`) and choices shown in ``--help``."""
    # lazily: the defaults live in the data and fitting layers (pandas, torch), which only `fit` needs
    from bayes_trainmap.data.demos import available_demos
    from bayes_trainmap.fitting.config import MODES, OUTCOME_DIRECTIONS, FitConfig
    from bayes_trainmap.inference.params import COVARIANCE_TYPES

    DEFAULTS = FitConfig()
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        metavar="PATH",
        help="trajectory set: directory of per-run Parquet files, one .parquet/.csv file, "
        "or a directory of the paper authors' per-run CSVs (default: the built-in demo data)",
    )
    source.add_argument(
        "--demo", metavar="NAME", default="default",
        help=f"built-in demo set: {', '.join(available_demos())} (default: %(default)s = sparse_parities)",
    )
    data.add_argument(
        "--features",
        nargs="+",
        metavar="NAME",
        help="feature columns, space or comma separated (default: the weight statistics present)",
    )
    data.add_argument("--window", type=int, default=DEFAULTS.window, help="z-score window in checkpoints (default: %(default)s)")
    data.add_argument(
        "--val-fraction", type=float, default=DEFAULTS.val_fraction, help="share of runs held out (default: %(default)s)"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--mode", choices=MODES, default=DEFAULTS.mode, help="inference mode (default: %(default)s)"
    )
    model.add_argument(
        "--states",
        default="auto",
        metavar="auto|K|A-B",
        help="number of hidden states: 'auto' (1-8, by held-out BIC), K, or a range A-B (default: %(default)s)",
    )
    model.add_argument(
        "--n-restarts", "--restarts", type=int, dest="n_restarts", default=DEFAULTS.n_restarts,
        help="Baum-Welch restarts per K (default: %(default)s; --restarts is the deprecated spelling)",
    )
    model.add_argument(
        "--covariance-type", "--covariance", dest="covariance_type", choices=COVARIANCE_TYPES,
        default=DEFAULTS.covariance_type, help="emission covariance (default: %(default)s)",
    )
    model.add_argument("--n-iter", type=int, default=DEFAULTS.n_iter, help="maximum EM iterations (default: %(default)s)")
    model.add_argument("--tol", type=float, default=DEFAULTS.tol, help="EM convergence tolerance (default: %(default)s)")
    model.add_argument("--device", default=DEFAULTS.device, metavar="auto|cpu|cuda[:N]", help="(default: %(default)s)")
    model.add_argument(
        "--random-state", "--seed", type=int, dest="random_state", default=DEFAULTS.random_state,
        help="seed of the run split, the restarts and the baselines (default: %(default)s)",
    )

    _add_uncertainty_arguments(parser, DEFAULTS)

    analysis = parser.add_argument_group("convergence")
    analysis.add_argument("--outcome", help="outcome column defining convergence (default: eval_accuracy if present)")
    analysis.add_argument("--threshold", type=float, help="convergence threshold on the outcome")
    analysis.add_argument("--task", help="task preset for the threshold (e.g. sparse_parities, mnist)")
    analysis.add_argument(
        "--outcome-direction",
        choices=OUTCOME_DIRECTIONS,
        default=DEFAULTS.outcome_direction,
        help="crossing means outcome >= threshold (higher) or <= threshold (lower); "
        "auto: lower for names containing 'loss'",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="fit directory (default: fits/<data-name>-<mode>)")
    output.add_argument("--no-report", action="store_true", help="skip report.md/html/json")
    output.add_argument("--quiet", action="store_true", help="no progress bar, summary or warnings")
    output.add_argument("--verbose", action="store_true", help="also list every run's state path")
    add_executor_arguments(parser, per="task")


def _first_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fit_dir", metavar="FITDIR")
    parser.add_argument("--quiet", action="store_true", help="print only the report's path")
    parser.add_argument("--verbose", action="store_true", help="also list every run's state path")
    parser.add_argument("--extra-runs", metavar="NEWRUNS",
                        help="also decode these runs (any format fit reads) against the fit and list them in the report")
    parser.set_defaults(handler=_cmd_report)


def _add_monitor_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    # lazily: the monitor imports the engine; only `decode` and `watch` need it
    from bayes_trainmap.monitor import commands as monitor_commands

    getattr(monitor_commands, f"add_{command}_arguments")(parser)
    parser.set_defaults(handler=getattr(monitor_commands, f"run_{command}"))


def _add_training_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    # lazily: the task front ends; `collect` imports the training code when it runs
    import bayes_trainmap.tasks.cli as tasks_cli

    getattr(tasks_cli, f"add_{command}_arguments")(parser)
    parser.set_defaults(handler=getattr(tasks_cli, f"run_{command}"))


def _add_fit_command(parser: argparse.ArgumentParser) -> None:
    _add_fit_arguments(parser)
    parser.set_defaults(handler=_cmd_fit)


#: Command -> (one-line help, the function that adds its options and handler).
_COMMANDS = {
    "fit": ("fit an HMM to trajectories and write a fit directory", _add_fit_command),
    "report": ("(re)write the report of a fit directory", _add_report_arguments),
    "decode": ("decode new runs against a fit directory", functools.partial(_add_monitor_arguments, "decode")),
    "watch": ("follow a folder of training runs against a fit directory",
              functools.partial(_add_monitor_arguments, "watch")),
    "collect": ("train a built-in task over many seeds and record trajectories",
                functools.partial(_add_training_arguments, "collect")),
    "tasks": ("list the built-in training tasks", functools.partial(_add_training_arguments, "tasks")),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser.

    With ``argv``, only the command it selects gets its options, so ``tasks`` imports
    nothing of the fitting code and ``fit`` nothing of the training code; without it,
    every command gets them (the whole interface, e.g. for documentation).
    """
    parser = argparse.ArgumentParser(
        prog="python -m bayes_trainmap",
        description="Latent state models of training dynamics (Hu et al., TMLR 2023).",
    )
    parser.add_argument("--version", action="version", version=f"bayes_trainmap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    selected = None if argv is None else _first_command(argv)
    for name, (text, add_arguments) in _COMMANDS.items():
        command = commands.add_parser(name, help=text)
        if argv is None or name == selected:
            add_arguments(command)
    parser.set_defaults(subparsers=commands.choices)
    return parser


def _refuse_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> int:
    """The command's own usage and one ``error:`` line naming the unknown option, with a suggestion."""
    command = args.subparsers.get(args.command, parser)
    known = [s for action in command._actions for s in action.option_strings]
    bad = unknown[0].split("=", 1)[0]
    close = difflib.get_close_matches(bad, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; see 'python -m bayes_trainmap {args.command} --help'"
    command.print_usage(sys.stderr)
    print(f"error: unrecognized argument {bad}{hint}", file=sys.stderr)
    return EXIT_USAGE


# ----------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------
def _default_out(args: argparse.Namespace, ts) -> Path:
    if args.data:
        name = Path(args.data).name
        name = Path(name).stem if Path(name).suffix.lower() in (".parquet", ".csv") else name
    else:
        name = str(ts.metadata.get("demo", "demo"))
    return Path("fits") / f"{name or 'data'}-{args.mode}"


def _fit_config(args: argparse.Namespace) -> FitConfig:
    """The :class:`FitConfig` of the parsed ``fit`` options: every flag is named after its field."""
    # lazily: see _add_fit_arguments
    from bayes_trainmap.fitting.config import BAYES_OPTION_NAMES, FitConfig

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig) if hasattr(args, f.name)}
    options["features"] = tuple(_features_arg(args.features)) if args.features else None
    options["bayes_options"] = {k: getattr(args, k) for k in BAYES_OPTION_NAMES if getattr(args, k, None) is not None}
    return FitConfig(**options)


def _cmd_fit(args: argparse.Namespace) -> int:
    # lazily: the pipeline imports torch and pyro, which `tasks` and `--help` do not need
    from bayes_trainmap import data
    from bayes_trainmap.data.fitdir import check_output_dir
    from bayes_trainmap.fitting.pipeline import fit
    from bayes_trainmap.report.summary import render_fit_summary

    config = _fit_config(args)  # every option is checked before any work starts
    if args.out:
        check_output_dir(args.out)
    ts = data.load_trajectories(args.data) if args.data else data.demo_trajectories(args.demo)
    out = check_output_dir(args.out or _default_out(args, ts))
    with executor_from_args(args) as executor:
        result = fit(ts, config, executor=executor, progress=not args.quiet)
    cli = {k: v for k, v in vars(args).items() if k not in ("handler", "subparsers")}
    result.save(out, report=not args.no_report, cli=cli)
    if not args.quiet:
        print(render_fit_summary(out, verbose=args.verbose))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    # lazily: the report imports the analysis and matplotlib, which `tasks` and `--help` do not need
    from bayes_trainmap.data.fitdir import load_fit_dir
    from bayes_trainmap.report import write_report
    from bayes_trainmap.report.summary import render_fit_summary

    fit_dir = load_fit_dir(args.fit_dir)
    _ = fit_dir.params  # the model must load, even when analysis.json makes it unnecessary
    extra = None
    if args.extra_runs:
        # lazily: decoding extra runs needs the monitor, which a plain report does not
        from bayes_trainmap.data import load_trajectories
        from bayes_trainmap.monitor.extra_runs import extra_runs_rows
        from bayes_trainmap.monitor.model import load_map_model

        extra = extra_runs_rows(load_map_model(fit_dir), load_trajectories(args.extra_runs))
    html = write_report(fit_dir, extra_runs=extra)["html"]
    print(f"report: {html}" if args.quiet else render_fit_summary(fit_dir.path, verbose=args.verbose))
    if extra and not args.quiet:
        # lazily: as the report imports above
        from bayes_trainmap.report.extra_runs import extra_runs_lines

        print("decoded extra runs:\n  " + "\n  ".join(extra_runs_lines(extra)))
    return 0


# ----------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------
class _PrefixFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}"


@contextlib.contextmanager
def _console(quiet: bool) -> Iterator[None]:
    """Route log records and warnings to stderr as one ``warning: ...`` line each, each text once."""
    seen: set[str] = set()

    def first_time(text: str) -> bool:
        key = " ".join(text.split())
        fresh = key not in seen
        seen.add(key)
        return fresh

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrefixFormatter())
    handler.addFilter(lambda record: first_time(record.getMessage()))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.ERROR if quiet else logging.WARNING)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not quiet and first_time(str(message)):
            print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(previous_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        return _refuse_unknown(parser, args, unknown)
    with _console(getattr(args, "quiet", False)):
        try:
            return int(args.handler(args) or 0)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of stdout went away (`... | head`): not an error
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's exit flush must not fail again
            return 0
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE

