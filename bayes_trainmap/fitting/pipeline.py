"""The ``fit`` pipeline: trajectories in, :class:`FitResult` out.

``fit`` composes the named steps of :mod:`bayes_trainmap.fitting.steps`::

    prepare -> select -> refine -> decode -> analyse

(validate, z-score per run and split the runs; choose K by held-out BIC; optionally
refine by MAP/SVI; Viterbi-decode every run; read off the training map, detours,
dissimilarity and baselines). :meth:`FitResult.save` writes the fit directory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from bayes_trainmap.core.executors import Executor
from bayes_trainmap.data import TrajectorySet
from bayes_trainmap.fitting import steps
from bayes_trainmap.fitting.config import MODES, FitConfig
from bayes_trainmap.fitting.result import FitResult
from bayes_trainmap.fitting.steps import DEFAULT_OUTCOME, DEFAULT_THRESHOLD
from bayes_trainmap.report import write_report as _write_report
from bayes_trainmap.report.terminal import render_summary

__all__ = ["DEFAULT_OUTCOME", "DEFAULT_THRESHOLD", "MODES", "FitConfig", "FitResult", "fit", "render_summary"]


def fit(
    ts: TrajectorySet,
    config: FitConfig | None = None,
    *,
    executor: Executor | None = None,
    progress: bool = True,
    analyze: bool = True,
    **options: Any,
) -> FitResult:
    """Fit a Gaussian HMM to a trajectory set, choosing K by held-out BIC.

    Parameters
    ----------
    ts : TrajectorySet
    config : FitConfig, optional
        The options (default: :class:`FitConfig` defaults).
    executor : bayes_trainmap.core.executors.Executor, optional
        Where the (K, restart) fits of the BIC sweep run (default: in this process);
        results do not depend on it.
    progress : bool
        Show progress bars.
    analyze : bool
        Run the analysis (training map, detours, ...).
    **options
        :class:`FitConfig` fields overriding ``config`` (e.g. ``mode="svi"``, ``states=3``).

    Returns
    -------
    FitResult

    Raises
    ------
    BayesTrainmapError
        For bad options (checked before any work) or data the model cannot use.
    """
    config = FitConfig.from_options(config, **options)
    prepared = steps.prepare(ts, config)
    selection = steps.select(prepared, config, executor=executor, progress=progress)
    warnings_ = steps.data_warnings(prepared, config) + steps.selection_warnings(prepared, selection, config)
    params, bayesian = steps.refine(prepared, selection, config, progress=progress)
    resampled = steps.resample(prepared, params, config, progress=progress) if analyze else steps.NO_RESAMPLING
    runs = steps.decode(params, prepared.runs)
    analysis_options = prepared.analysis_options(config) if analyze else None
    uncertainty = resampled.uncertainty or (bayesian.uncertainty if bayesian is not None else None)
    analysis = steps.analyse(params, runs, analysis_options, uncertainty, resampled.robustness)
    return FitResult(config, prepared, selection, params, runs, analysis, bayesian, warnings_, dict(resampled.settings))


def write_fit_dir(
    result: FitResult, out: str | os.PathLike, *, extra_config: dict[str, Any] | None = None, report: bool = False
) -> Path:
    """Deprecated: use :meth:`FitResult.save`."""
    warnings.warn("write_fit_dir(result, out) is deprecated; use result.save(out)", DeprecationWarning, stacklevel=2)
    return result.save(out, report=report, cli=extra_config)


def write_report(fit_dir: str | os.PathLike, analysis: Any = None) -> Path:
    """Deprecated: use :func:`bayes_trainmap.report.write_report`; returns the HTML report's path."""
    warnings.warn(
        "pipeline.write_report is deprecated; use bayes_trainmap.report.write_report", DeprecationWarning, stacklevel=2
    )
    return Path(_write_report(Path(fit_dir), analysis=analysis)["html"])
