"""Command line: ``python -m bayes_trainmap {fit,report,collect,tasks}``.

A thin layer over :mod:`bayes_trainmap.fitting.pipeline`, :mod:`bayes_trainmap.report` and
:mod:`tasks.cli`. Errors caused by the input (any :class:`BayesTrainmapError`, the
``ValueError`` types of the ``inference`` and ``tasks`` packages, and OS errors such
as a missing file) are printed as one line ``error: ...`` on stderr with exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterator, Sequence

from bayes_trainmap.core.version import __version__
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.executors import add_executor_arguments, executor_from_args

__all__ = ["build_parser", "main"]

#: Exit status for bad input or configuration (argparse uses the same).
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Packages whose ValueError subclasses describe bad input, not bugs.
_USER_ERROR_PACKAGES = ("bayes_trainmap", "inference", "tasks")

_DELEGATED = ("collect", "tasks")


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


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        metavar="PATH",
        help="trajectory set: directory of per-run Parquet files, one .parquet/.csv file, "
        "or a directory of the paper authors' per-run CSVs (default: the built-in demo data)",
    )
    source.add_argument("--demo", metavar="NAME", default="default", help="built-in demo set (default: %(default)s)")
    data.add_argument(
        "--features",
        nargs="+",
        metavar="NAME",
        help="feature columns, space or comma separated (default: the weight statistics present)",
    )
    data.add_argument("--window", type=int, default=1000, help="z-score window in checkpoints (default: %(default)s)")
    data.add_argument("--val-fraction", type=float, default=0.2, help="share of runs held out (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--mode", choices=("mle", "map", "svi"), default="mle", help="inference mode (default: %(default)s)"
    )
    model.add_argument(
        "--states",
        default="auto",
        metavar="auto|K|A-B",
        help="number of hidden states: 'auto' (1-8, by held-out BIC), K, or a range A-B (default: %(default)s)",
    )
    model.add_argument("--restarts", type=int, default=5, help="Baum-Welch restarts per K (default: %(default)s)")
    model.add_argument("--covariance", choices=("full", "diag"), default="full", help="(default: %(default)s)")
    model.add_argument("--n-iter", type=int, default=100, help="maximum EM iterations (default: %(default)s)")
    model.add_argument("--tol", type=float, default=1e-4, help="EM convergence tolerance (default: %(default)s)")
    model.add_argument("--device", default="cpu", metavar="auto|cpu|cuda", help="(default: %(default)s)")
    model.add_argument("--seed", type=int, default=0, help="seed of the run split and restarts (default: %(default)s)")

    bayes = parser.add_argument_group("Bayesian modes (map, svi)")
    bayes.add_argument("--draws", type=int, help="posterior draws for the credible intervals")
    bayes.add_argument("--steps", type=int, help="optimisation steps")
    bayes.add_argument("--lr", type=float, help="learning rate")
    bayes.add_argument("--guide", help="variational family")
    bayes.add_argument(
        "--intervals",
        choices=("bagged", "posterior"),
        default="bagged",
        help="interval method: BayesBag over runs (carries seed-to-seed variation) or the model's plain "
        "posterior (default: %(default)s)",
    )

    robust = parser.add_argument_group("uncertainty and robustness (all modes)")
    robust.add_argument(
        "--interval", type=float, default=0.9, help="level of every interval in the report (default: %(default)s)"
    )
    robust.add_argument(
        "--bootstrap",
        type=int,
        metavar="B",
        help="resamples of the runs for the robustness section and the bagged intervals (default: 16; 0 skips)",
    )
    robust.add_argument(
        "--k-resamples",
        type=int,
        metavar="R",
        help="resamples of the K selection for the stability of K (default: 2; 0 skips)",
    )

    analysis = parser.add_argument_group("convergence")
    analysis.add_argument("--outcome", help="outcome column defining convergence (default: eval_accuracy if present)")
    analysis.add_argument("--threshold", type=float, help="convergence threshold on the outcome")
    analysis.add_argument("--task", help="task preset for the threshold (e.g. sparse_parities, mnist)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="fit directory (default: fits/<data-name>-<mode>)")
    output.add_argument("--no-report", action="store_true", help="skip report.md/html/json")
    output.add_argument("--quiet", action="store_true", help="no progress bar, summary or warnings")
    add_executor_arguments(parser, per="task")


def _first_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser. ``collect``/``tasks`` options (from :mod:`tasks.cli`) are
    added only when ``argv`` selects that command, so ``fit`` never imports the
    training code."""
    parser = argparse.ArgumentParser(
        prog="python -m bayes_trainmap",
        description="Latent state models of training dynamics (Hu et al., TMLR 2023).",
    )
    parser.add_argument("--version", action="version", version=f"bayes_trainmap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = commands.add_parser("fit", help="fit an HMM to trajectories and write a fit directory")
    _add_fit_arguments(fit)
    fit.set_defaults(handler=_cmd_fit)

    report = commands.add_parser("report", help="(re)write the report of a fit directory")
    report.add_argument("fit_dir", metavar="FITDIR")
    report.add_argument("--quiet", action="store_true", help="do not print the summary")
    report.set_defaults(handler=_cmd_report)

    selected = _first_command(argv)
    collect = commands.add_parser("collect", help="train a built-in task over many seeds and record trajectories")
    tasks_parser = commands.add_parser("tasks", help="list the built-in training tasks")
    if selected in _DELEGATED:
        import bayes_trainmap.tasks.cli as tasks_cli  # lazily: it imports the training code

        if selected == "collect":
            tasks_cli.add_collect_arguments(collect)
            collect.set_defaults(handler=tasks_cli.run_collect)
        else:
            tasks_cli.add_tasks_arguments(tasks_parser)
            tasks_parser.set_defaults(handler=tasks_cli.run_tasks)
    return parser


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


def _cmd_fit(args: argparse.Namespace) -> int:
    # lazily: the pipeline imports torch and pyro, which `tasks` and `--help` do not need
    from bayes_trainmap import data
    from bayes_trainmap.data.fitdir import check_output_dir
    from bayes_trainmap.fitting import pipeline
    from bayes_trainmap.report import build as report

    if args.out:
        check_output_dir(args.out)  # fail before the (long) fit, not after
    ts = data.load_trajectories(args.data) if args.data else data.demo_trajectories(args.demo)
    out = check_output_dir(args.out or _default_out(args, ts))
    bayes_options = {k: getattr(args, k) for k in ("draws", "steps", "lr", "guide") if getattr(args, k) is not None}
    with executor_from_args(args) as executor:
        result = pipeline.fit(
            ts,
            mode=args.mode,
            states=args.states,
            restarts=args.restarts,
            covariance=args.covariance,
            features=_features_arg(args.features) if args.features else None,
            device=args.device,
            seed=args.seed,
            val_fraction=args.val_fraction,
            window=args.window,
            n_iter=args.n_iter,
            tol=args.tol,
            outcome=args.outcome,
            threshold=args.threshold,
            task=args.task,
            progress=not args.quiet,
            bayes_options=bayes_options,
            executor=executor,
            intervals=args.intervals,
            bootstrap=args.bootstrap,
            k_resamples=args.k_resamples,
            interval=args.interval,
        )
    options = {k: v for k, v in vars(args).items() if k != "handler"}
    pipeline.write_fit_dir(result, out, extra_config=options, report=not args.no_report)
    if not args.quiet:
        print(pipeline.render_summary(result.summary()))
        html = out / "report.html"
        if html.is_file():
            print()
            print(report.render_terminal(out))
            print(f"report: {html}")
        print(f"fit directory: {out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    # lazily, as in _cmd_fit
    from bayes_trainmap.data.fitdir import load_fit_dir
    from bayes_trainmap.fitting import pipeline
    from bayes_trainmap.report import build as report

    fit_dir = load_fit_dir(args.fit_dir)
    html = pipeline.write_report(fit_dir.path)
    if not args.quiet:
        print(pipeline.render_summary(fit_dir.summary))
        print()
        print(report.render_terminal(fit_dir.path))
        print(f"report: {html}")
    return 0


# ----------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------
class _PrefixFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}"


@contextlib.contextmanager
def _console(quiet: bool) -> Iterator[None]:
    """Route log records and warnings to stderr as one ``warning: ...`` line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrefixFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.ERROR if quiet else logging.WARNING)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not quiet:
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
    args = build_parser(argv).parse_args(argv)
    with _console(getattr(args, "quiet", False)):
        try:
            return int(args.handler(args) or 0)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's input
            if not _is_user_error(exc):
                raise
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE

