"""The report as data: the fit directory's analysis and the ``report.json`` dictionary.


Everything is rendered from the fit directory's files alone (``config.json``,
``model.json``, ``summary.json``, ``selection_curve.csv``, ``zscored.parquet``,
``decoded.parquet`` and ``analysis.json``; the analysis is recomputed from the
other files and saved if ``analysis.json`` is missing), so
``python -m bayes_trainmap report FITDIR`` re-renders it at any time.

Files written
-------------
``report.md``, ``report.html`` (figures inlined as base64 PNG, the training map as
interactive inline SVG; no external reference of any kind), ``report.json`` and ``figures/{training_map,
selection_curves, convergence_histogram, state_timeline,
regression_coefficients[, elbo]}.{png,svg}``.

``report.json`` structure (checked by :func:`validate_report_json`)
--------------------------------------------------------------------
Numbers that are undefined are ``null``; every other value is finite.

``format``            ``"bayes_trainmap.report"``
``version``           int (1)
``package_version``   str
``fit``               ``{mode, n_states, covariance, features: [str], n_runs,
                      n_train_runs, n_val_runs, n_checkpoints, bic, val_log_likelihood,
                      selected_by, task}``
``selection``         ``{best_n_states, curve: [{n_states, bic, val_log_likelihood,
                      train_log_likelihood}]}``
``table1``            ``{r_squared, p_value, dissimilarity, forking, ground_metric}``
                      (the paper's Table 1 row)
``table4``            ``[{model, components, bic}]`` (the paper's Table 4 row:
                      HMM and, when computed, k-means and HMM-1)
``states``            ``[{state, occupancy, n_checkpoints, n_runs, runs, mean_dwell,
                      is_initial, is_final, n_runs_start, n_runs_end, top_features,
                      top_importance, coefficient, ci_low, ci_high, identified, detour}]``,
                      one per state (``identified`` false: "not identified", no coefficient)
``edges``             ``[{source, target, trans_prob, n_runs, n_uses, runs, conv_mean,
                      conv_sd, conv_n, top_features, importance, mean_change, label}]``
``initial_states``    [int]; ``final_states``: [int]
``regression``        ``RegressionResult.to_dict()``: per-state lists ``coefficients,
                      std_errors, ci_low, ci_high, pvalues, visited_by, detour``; scalars
                      ``r_squared, f_statistic, f_pvalue, df_model, df_resid, n_runs``;
                      ``dropped_states``, ``runs``, ``step_mean``, ``step_sd``, ``warning``;
                      ``identified`` (K bools), ``not_identified_reasons`` (K str|null), ``rank``
``detour_states``     [int]
``convergence``       ``{outcome, threshold, higher_is_better, steps: {run: step|null},
                      never_converged: [str], censored_runs: [str], n_converged,
                      mean, sd}``
``baselines``         ``[{model, best_n_components, best_bic, curve: [...]}]`` or null
``uncertainty``       ``Analysis.uncertainty`` (see :mod:`bayes_trainmap.analysis`) or null
``robustness``        ``Analysis.robustness`` (:func:`bayes_trainmap.fitting.robustness.robustness_section`:
                      share of resampled fits reproducing each edge, the fork and each
                      detour; the K chosen on resamples) or null
``extra_runs``        only with ``report --extra-runs``: ``[{run, n_checkpoints, last_step,
                      path, new_edges: [{source, target, step}], detours: [{state,
                      first_step, last_step, n_checkpoints}], current_state,
                      converged_step, predicted_step, interval, p_converge, p_stuck}]``
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from bayes_trainmap.analysis import (
    Analysis,
    AnalysisOptions,
    analyze,
    validate_uncertainty,
)
from bayes_trainmap.analysis.baselines import baselines_table, hmm_selection_from_curve
from bayes_trainmap.core.errors import BayesTrainmapError, FitDirectoryError
from bayes_trainmap.core.storage import to_jsonable
from bayes_trainmap.core.version import __version__
from bayes_trainmap.data.fitdir import ANALYSIS_FILE, FitDirectory, load_fit_dir
from bayes_trainmap.report.robustness import convergence_warnings

logger = logging.getLogger(__name__)


logger = logging.getLogger(__name__)

REPORT_FORMAT = "bayes_trainmap.report"
REPORT_VERSION = 1
FIGURE_NAMES = (
    "training_map",
    "regression_coefficients",
    "convergence_histogram",
    "state_timeline",
    "selection_curves",
    "elbo",
)





def analysis_options(fd: FitDirectory) -> AnalysisOptions:
    """The analysis options the fit recorded in ``config.json`` (``"analysis"``)."""
    recorded = fd.config.get("analysis")
    if not isinstance(recorded, dict):
        raise FitDirectoryError(f"'{fd.path}' records no analysis options (the fit had no outcome to analyse)")
    return AnalysisOptions.from_dict(recorded)


def load_analysis(fit_dir, *, recompute: bool = False) -> Analysis:
    """The fit directory's :class:`~bayes_trainmap.analysis.Analysis`.

    Read from ``analysis.json``; if it is missing (or ``recompute``), computed by the
    same :func:`~bayes_trainmap.analysis.analyze` call as ``fit`` made, from the
    directory's model and :class:`~bayes_trainmap.data.fitted.FittedRuns` with the
    recorded analysis options, with the robustness section and interval summaries of
    ``resampling.json``. Nothing is written.
    """
    fd = load_fit_dir(fit_dir)
    stored = None if recompute else fd.analysis
    if stored is not None:
        try:
            return Analysis.from_dict(stored)
        except (KeyError, TypeError, ValueError) as exc:
            raise FitDirectoryError(f"'{fd.path / ANALYSIS_FILE}' is not a valid analysis file: {exc}") from exc
    analysis = analyze(fd.params, fd.fitted_runs(), analysis_options(fd))
    analysis.robustness = fd.resampling.get("robustness")
    analysis.uncertainty = fd.resampling.get("uncertainty")
    return analysis


# ----------------------------------------------------------------------------------
# the report dictionary
# ----------------------------------------------------------------------------------


def hmm_curve(fd) -> pd.DataFrame | None:
    curve = fd.curve
    if curve is None:
        rows = fd.summary.get("curve")
        curve = pd.DataFrame(rows) if rows else None
    return curve


def build_report(fit_dir, analysis: Analysis | None = None, figures: dict | None = None, extra_runs=None) -> dict[str, Any]:
    """The ``report.json`` dictionary (structure in the module docstring; ``extra_runs`` rows kept as given)."""
    fd = load_fit_dir(fit_dir)
    analysis = analysis if analysis is not None else load_analysis(fd)
    summary, options, resolved = fd.summary, fd.config.get("config", {}), fd.resolved
    reg = analysis.regression
    tmap = analysis.training_map

    states = []
    for row in tmap.to_dict()["states"]:
        k = int(row["state"])
        row.update(
            coefficient=reg.coefficients[k],
            ci_low=reg.ci_low[k],
            ci_high=reg.ci_high[k],
            identified=bool(reg.identified[k]),
            detour=bool(reg.detour[k]),
        )
        states.append(row)

    curve = hmm_curve(fd)
    table4 = []
    if curve is not None and len(curve):
        table4.append(hmm_selection_from_curve(curve))
    if analysis.baselines:
        table4.extend(analysis.baselines)
    conv = analysis.convergence
    converged = conv.converged
    warnings_ = [str(w) for w in summary.get("warnings", [])]  # model size, K at the top of the range
    if reg.warning:
        warnings_.append(reg.warning)
    if conv.never_converged:
        verb = "included, censored at their last step" if analysis.censored_runs else "excluded from the regression"
        warnings_.append(
            f"{len(conv.never_converged)} run(s) never reached {conv.outcome} "
            f"{'>=' if conv.higher_is_better else '<='} {conv.threshold:g} ({verb}): {', '.join(conv.never_converged)}"
        )
    if getattr(conv, "no_outcome", None):
        warnings_.append(
            f"{len(conv.no_outcome)} run(s) have no finite value of {conv.outcome} (left out of the regression; "
            f"not counted as never converged): {', '.join(conv.no_outcome)}"
        )
    if reg.dropped_states:
        warnings_.append(f"state(s) {reg.dropped_states} are visited by no converged run and have no coefficient")
    unvisited = [int(s["state"]) for s in states if s["n_runs"] == 0]
    if unvisited:
        warnings_.append(f"state(s) {unvisited} are never visited by any Viterbi path")
    warnings_ += convergence_warnings(fd.config)
    if analysis.uncertainty is not None:
        validate_uncertainty(analysis.uncertainty)

    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "package_version": __version__,
        "fit": {
            "mode": summary.get("mode", options.get("mode")),
            "n_states": int(summary.get("n_states", analysis.settings["n_states"])),
            "covariance": summary.get("covariance", options.get("covariance_type")),
            "features": list(fd.feature_names),
            "n_runs": int(summary.get("n_runs", analysis.settings["n_runs"])),
            "n_train_runs": summary.get("n_train_runs"),
            "n_val_runs": summary.get("n_val_runs"),
            "n_checkpoints": int(summary.get("n_checkpoints", analysis.settings["n_checkpoints"])),
            "bic": summary.get("bic"),
            "val_log_likelihood": summary.get("val_log_likelihood"),
            "selected_by": summary.get("selected_by"),
            "task": options.get("task") or (resolved.get("data") or {}).get("metadata", {}).get("task"),
        },
        "selection": {
            "best_n_states": int(summary.get("n_states", analysis.settings["n_states"])),
            "curve": [] if curve is None else curve.to_dict(orient="records"),
        },
        "table1": {**analysis.table1, "ground_metric": analysis.settings.get("ground_metric", "zero_one")},
        "table4": baselines_table(table4).to_dict(orient="records") if table4 else [],
        "states": states,
        "edges": tmap.to_dict()["edges"],
        "initial_states": tmap.initial_states,
        "final_states": tmap.final_states,
        "regression": reg.to_dict(),
        "detour_states": analysis.detour_states,
        "convergence": {
            **conv.to_dict(),
            "censored_runs": list(analysis.censored_runs),
            "n_converged": int(converged.size),
            "mean": float(converged.mean()) if converged.size else None,
            "sd": float(converged.std(ddof=1)) if converged.size > 1 else None,
        },
        "baselines": None if analysis.baselines is None else [b.to_dict() for b in analysis.baselines],
        "uncertainty": analysis.uncertainty,
        "robustness": analysis.robustness,
        "warnings": warnings_,
        "figures": figures or {},
        **({} if extra_runs is None else {"extra_runs": list(extra_runs)}),
    }
    return to_jsonable(report)


_REQUIRED = {
    "format": str,
    "version": int,
    "package_version": str,
    "fit": dict,
    "selection": dict,
    "table1": dict,
    "table4": list,
    "states": list,
    "edges": list,
    "initial_states": list,
    "final_states": list,
    "regression": dict,
    "detour_states": list,
    "convergence": dict,
    "warnings": list,
    "figures": dict,
}
_STATE_KEYS = ("state", "occupancy", "n_runs", "runs", "is_initial", "is_final", "top_features", "coefficient", "ci_low", "ci_high", "detour")
_EDGE_KEYS = ("source", "target", "trans_prob", "n_runs", "conv_mean", "conv_sd", "top_features", "importance", "mean_change", "label")
_REG_LISTS = ("coefficients", "std_errors", "ci_low", "ci_high", "pvalues", "visited_by", "detour")
_REG_SCALARS = ("r_squared", "f_statistic", "f_pvalue", "df_model", "df_resid", "n_runs")


def _is_number_or_null(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def validate_report_json(d: dict) -> None:
    """Check a ``report.json`` dictionary against the documented structure.

    Raises
    ------
    BayesTrainmapError
        Listing every problem found.
    """
    problems: list[str] = []
    if not isinstance(d, dict):
        raise BayesTrainmapError(f"report must be a JSON object, got {type(d).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in d:
            problems.append(f"missing key {key!r}")
        elif not isinstance(d[key], kind):
            problems.append(f"{key!r} must be {kind.__name__}, got {type(d[key]).__name__}")
    if problems:
        raise BayesTrainmapError("invalid report.json: " + "; ".join(problems))
    if d["format"] != REPORT_FORMAT:
        problems.append(f"format is {d['format']!r}, expected {REPORT_FORMAT!r}")
    k = d["fit"].get("n_states")
    if not isinstance(k, int) or k < 1:
        problems.append(f"fit.n_states must be a positive int, got {k!r}")
        k = len(d["states"])
    if len(d["states"]) != k:
        problems.append(f"{len(d['states'])} state rows for n_states = {k}")
    for i, row in enumerate(d["states"]):
        missing = [key for key in _STATE_KEYS if key not in row]
        if missing:
            problems.append(f"states[{i}] is missing {missing}")
        elif row["state"] != i:
            problems.append(f"states[{i}] has state {row['state']}")
        elif not _is_number_or_null(row["occupancy"]) or not _is_number_or_null(row["coefficient"]):
            problems.append(f"states[{i}] has a non-numeric occupancy or coefficient")
    for i, row in enumerate(d["edges"]):
        missing = [key for key in _EDGE_KEYS if key not in row]
        if missing:
            problems.append(f"edges[{i}] is missing {missing}")
            continue
        if not (0 <= row["source"] < k and 0 <= row["target"] < k) or row["source"] == row["target"]:
            problems.append(f"edges[{i}] {row['source']}->{row['target']} is not a transition between states 0..{k - 1}")
        if not _is_number_or_null(row["trans_prob"]) or not _is_number_or_null(row["conv_mean"]):
            problems.append(f"edges[{i}] has non-numeric values")
    reg = d["regression"]
    for key in _REG_LISTS:
        if not isinstance(reg.get(key), list) or len(reg[key]) != k:
            problems.append(f"regression.{key} must be a list of {k} entries")
    for key in _REG_SCALARS:
        if key not in reg or not _is_number_or_null(reg[key]):
            problems.append(f"regression.{key} must be a number or null")
    if "identified" in reg:
        ident = reg["identified"]
        if not isinstance(ident, list) or len(ident) != k or not all(isinstance(v, bool) for v in ident):
            problems.append(f"regression.identified must be a list of {k} booleans")
        elif (isinstance(reg.get("detour"), list) and len(reg["detour"]) == k
              and any(d and not i for d, i in zip(reg["detour"], ident))):
            problems.append("regression.detour flags a state that is not identified")
    for key in ("r_squared", "p_value", "dissimilarity", "forking"):
        if key not in d["table1"]:
            problems.append(f"table1 is missing {key!r}")
    if "forking" in d["table1"] and not isinstance(d["table1"]["forking"], bool):
        problems.append("table1.forking must be a bool")
    for i, row in enumerate(d["table4"]):
        if set(row) != {"model", "components", "bic"}:
            problems.append(f"table4[{i}] must have exactly model, components, bic")
    for key in ("outcome", "threshold", "steps", "never_converged"):
        if key not in d["convergence"]:
            problems.append(f"convergence is missing {key!r}")
    if any(not 0 <= s < k for s in d["detour_states"]):
        problems.append(f"detour_states {d['detour_states']} outside 0..{k - 1}")
    for name, files in d["figures"].items():
        if not isinstance(files, dict) or not {"png", "svg"} <= set(files):
            problems.append(f"figures.{name} must name a png and an svg file")
    if d.get("uncertainty") is not None:
        try:
            validate_uncertainty(d["uncertainty"])
        except BayesTrainmapError as exc:
            problems.append(str(exc))
    if problems:
        raise BayesTrainmapError("invalid report.json: " + "; ".join(problems))

