"""What a fit produced, in memory: :class:`FitResult`, with its summary and ``save``."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayes_trainmap.analysis import Analysis
from bayes_trainmap.core.version import __version__
from bayes_trainmap.data import TrajectorySet, ZScoreInfo
from bayes_trainmap.data.fitdir import (
    FIGURES_DIR,
    FIT_DIR_FORMAT,
    FIT_DIR_VERSION,
    write_fit_dir,
)
from bayes_trainmap.data.fitted import SPLIT_TRAIN, SPLIT_VAL, FittedRuns
from bayes_trainmap.fitting.bayesian import BayesianResult
from bayes_trainmap.fitting.config import FitConfig
from bayes_trainmap.fitting.selection import SelectionResult
from bayes_trainmap.fitting.steps import Prepared, bayes_settings
from bayes_trainmap.inference.params import HMMParams
from bayes_trainmap.report import plots
from bayes_trainmap.report import write_report as _write_report
from bayes_trainmap.report.terminal import render_summary

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """Everything a fit produced.

    Attributes
    ----------
    config : FitConfig
        The options of the fit.
    prepared : Prepared
        The validated, z-scored, split data (and what was resolved from the options).
    selection : SelectionResult
        The BIC sweep over K and restarts.
    params : HMMParams
        The model used for decoding (the selected MLE, or the Bayesian point estimate).
    runs : FittedRuns
        The decoded runs.
    analysis : Analysis or None
        The training map, detours, ... (None when no outcome could be analysed).
    bayesian : BayesianResult or None
        The Bayesian fit of the ``map``/``svi`` modes.
    warnings : list of str
        What the reader of the fit should know (e.g. K at the top of the searched range).
    resampling : dict
        The settings of the resampling over runs (robustness section, bagged intervals).
    """

    config: FitConfig
    prepared: Prepared
    selection: SelectionResult
    params: HMMParams
    runs: FittedRuns
    analysis: Analysis | None = None
    bayesian: BayesianResult | None = None
    warnings: list[str] = field(default_factory=list)
    resampling: dict[str, Any] = field(default_factory=dict)

    # -- views -----------------------------------------------------------------------
    @property
    def trajectories(self) -> TrajectorySet:
        return self.prepared.trajectories

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def n_states(self) -> int:
        """Number of hidden states of the fitted model."""
        return int(self.params.n_states)

    @property
    def features(self) -> list[str]:
        return list(self.runs.features)

    @property
    def dropped_features(self) -> list[str]:
        return list(self.prepared.dropped_features)

    @property
    def zscore_info(self) -> ZScoreInfo:
        return self.prepared.zscore_info

    @property
    def train_ids(self) -> list[str]:
        return self.runs.run_ids_in(SPLIT_TRAIN)

    @property
    def val_ids(self) -> list[str]:
        return self.runs.run_ids_in(SPLIT_VAL)

    @property
    def resolved(self) -> dict[str, Any]:
        """What the fit resolved from its options (features, K searched, outcome, split, ...)."""
        return {
            **self.prepared.resolved(),
            "bayes_settings": bayes_settings(self.config, self.bayesian),
            "resampling": self.resampling,
        }

    # -- outputs ---------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: chosen K, BIC curve, occupancy and per-run state paths."""
        return summarise(self)

    def render(self) -> str:
        """The terminal summary of the fit."""
        return render_summary(self.summary())

    def config_record(self, cli: dict[str, Any] | None = None) -> dict[str, Any]:
        """The content of ``config.json``: the config, what it resolved to, the analysis options."""
        options = self.prepared.analysis_options(self.config)
        record = {
            "format": FIT_DIR_FORMAT,
            "format_version": FIT_DIR_VERSION,
            "package_version": __version__,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.config.to_dict(),
            "resolved": self.resolved,
            "analysis": options.to_dict() if options is not None else None,
        }
        if cli:
            record["cli"] = dict(cli)
        return record

    def save(self, out: str | os.PathLike, *, report: bool = True, cli: dict[str, Any] | None = None) -> Path:
        """Write the fit directory (see :mod:`bayes_trainmap.data.fitdir`) atomically.

        Parameters
        ----------
        out : path-like
            Target directory; an existing fit directory there is replaced, anything
            else there is refused before anything is written.
        report : bool
            Also write ``report.md/html/json`` and the figures (when the analysis ran).
        cli : dict, optional
            Command-line options, recorded in ``config.json`` under ``"cli"``.

        Returns
        -------
        pathlib.Path
            ``out``.
        """
        extras = [self._plot_selection_curve]
        if self.bayesian is not None:
            extras.append(self.bayesian.write_posterior)
        if report and self.analysis is not None:
            extras.append(lambda tmp: _write_report(tmp, analysis=self.analysis))
        return write_fit_dir(
            out,
            config=self.config_record(cli),
            params=self.params,
            runs=self.runs,
            zscore=self.zscore_info.to_dict(),
            summary=self.summary(),
            selection_table=self.selection.table,
            selection_curve=self.selection.curve,
            analysis=self.analysis.to_dict() if self.analysis is not None else None,
            resampling=self._resampling_record(),
            extras=extras,
        )

    def _resampling_record(self) -> dict[str, Any] | None:
        """What ``resampling.json`` keeps so that re-analysing the directory does not lose it."""
        if self.analysis is None or (self.analysis.robustness is None and self.analysis.uncertainty is None):
            return None
        return {"robustness": self.analysis.robustness, "uncertainty": self.analysis.uncertainty}

    def _plot_selection_curve(self, directory: Path) -> None:
        """BIC against K (the paper's appendix-H curve) as ``figures/selection_curve.png/svg``."""
        curve = self.selection.curve.rename(columns={"n_states": "n_components"})
        fig, ax = plots.new_axes(figsize=(4.5, 3.2))
        plots.plot_selection_curves({"HMM": curve}, {"HMM": self.selection.best_n_states}, ax=ax)
        plots.save_figure(fig, directory / FIGURES_DIR, "selection_curve")


def _segments(path: np.ndarray, steps: np.ndarray) -> list[list[int]]:
    """Run-length encoding of a state path: ``[state, first_step, last_step, n_checkpoints]``."""
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [path.size]]) - 1
    return [[int(path[s]), int(steps[s]), int(steps[e]), int(e - s + 1)] for s, e in zip(starts, ends)]


def _run_rows(runs: FittedRuns, n_states: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Per-run state sequences and segments, and how many runs visit each state (K,)."""
    offsets, rows = runs.offsets, []
    visits = np.zeros(n_states, dtype=np.int64)
    for i, run in enumerate(runs.run_ids):
        path = runs.paths[offsets[i] : offsets[i + 1]]
        segments = _segments(path, runs.steps[offsets[i] : offsets[i + 1]])
        visits[np.unique(path)] += 1
        rows.append(
            {
                "run": run,
                "split": str(runs.split[i]),
                "n_checkpoints": int(runs.lengths[i]),
                "states": [s[0] for s in segments],
                "segments": segments,
            }
        )
    return rows, visits


def summarise(result: FitResult) -> dict[str, Any]:
    """The content of ``summary.json`` (see :meth:`FitResult.summary`)."""
    k, runs, selection = result.n_states, result.runs, result.selection
    rows, visits = _run_rows(runs, k)
    counts = np.bincount(runs.paths, minlength=k)
    curve = selection.curve
    best = curve.loc[curve["n_states"] == selection.best_n_states].iloc[0]
    return {
        "mode": result.mode,
        "n_states": k,
        "selected_by": "held-out BIC" if len(curve) > 1 else "fixed K",
        "bic": float(best["bic"]),
        "val_log_likelihood": float(best["val_log_likelihood"]),
        "train_log_likelihood": float(best["train_log_likelihood"]),
        "n_parameters": int(best["n_parameters"]),
        "covariance": result.config.covariance_type,
        "features": list(result.features),
        "dropped_features": list(result.dropped_features),
        "constant_features": result.zscore_info.constant_runs(),
        "n_runs": runs.n_runs,
        "n_train_runs": len(result.train_ids),
        "n_val_runs": len(result.val_ids),
        "n_checkpoints": int(runs.lengths.sum()),
        "n_val_checkpoints": int(selection.n_val),
        "run_ids": list(runs.run_ids),
        "curve": curve.to_dict(orient="records"),
        "occupancy": [
            {
                "state": s,
                "fraction": float(counts[s] / counts.sum()),
                "n_checkpoints": int(counts[s]),
                "n_runs": int(visits[s]),
            }
            for s in range(k)
        ],
        "runs": rows,
        "warnings": list(result.warnings),
    }
