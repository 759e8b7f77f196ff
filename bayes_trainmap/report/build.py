"""The report of a fit directory: terminal tables, Markdown, self-contained HTML, JSON, figures.

Everything is rendered from the fit directory's files alone (``config.json``,
``model.json``, ``summary.json``, ``selection_curve.csv``, ``zscored.parquet``,
``decoded.parquet`` and ``analysis.json``; the analysis is recomputed from the
other files and saved if ``analysis.json`` is missing), so
``python -m bayes_trainmap report FITDIR`` re-renders it at any time.

Files written
-------------
``report.md``, ``report.html`` (figures inlined as base64 PNG; no external
reference of any kind), ``report.json`` and ``figures/{training_map,
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
                      top_importance, coefficient, ci_low, ci_high, detour}]``, one per state
``edges``             ``[{source, target, trans_prob, n_runs, n_uses, runs, conv_mean,
                      conv_sd, conv_n, top_features, importance, mean_change, label}]``
``initial_states``    [int]; ``final_states``: [int]
``regression``        ``RegressionResult.to_dict()``: per-state lists ``coefficients,
                      std_errors, ci_low, ci_high, pvalues, visited_by, detour``; scalars
                      ``r_squared, f_statistic, f_pvalue, df_model, df_resid, n_runs``;
                      ``dropped_states``, ``runs``, ``step_mean``, ``step_sd``, ``warning``
``detour_states``     [int]
``convergence``       ``{outcome, threshold, higher_is_better, steps: {run: step|null},
                      never_converged: [str], censored_runs: [str], n_converged,
                      mean, sd}``
``baselines``         ``[{model, best_n_components, best_bic, curve: [...]}]`` or null
``uncertainty``       ``Analysis.uncertainty`` (see :mod:`bayes_trainmap.analysis`) or null
``robustness``        ``Analysis.robustness`` (:func:`bayes_trainmap.fitting.robustness.robustness_section`:
                      share of resampled fits reproducing each edge, the fork and each
                      detour; the K chosen on resamples) or null
``warnings``          [str]
``figures``           ``{name: {png: relative path, svg: relative path}}``
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from bayes_trainmap.analysis import Analysis, analyze, validate_uncertainty
from bayes_trainmap.analysis.baselines import baselines_table, hmm_selection_from_curve
from bayes_trainmap.analysis.training_map import feature_label
from bayes_trainmap.core.errors import BayesTrainmapError, FitDirectoryError
from bayes_trainmap.core.version import __version__
from bayes_trainmap.data.fitdir import load_fit_dir, write_json
from bayes_trainmap.report import plots
from bayes_trainmap.report.robustness import (
    convergence_warnings,
    interval_kind,
    predictive_cell,
    robustness_html,
    robustness_markdown,
    robustness_sentence,
    robustness_tables,
    uncertainty_sentence,
    uncertainty_title,
)

__all__ = [
    "REPORT_FORMAT",
    "load_analysis",
    "build_report",
    "validate_report_json",
    "write_report",
    "render_terminal",
    "render_markdown",
    "render_html",
]

logger = logging.getLogger(__name__)

REPORT_FORMAT = "bayes_trainmap.report"
REPORT_VERSION = 1
ANALYSIS_FILE = "analysis.json"
NO_EDGES = "No transitions: every run stays in a single state."
STATES_NOTE = (
    "Occupancy: share of all checkpoints decoded as the state; runs: runs whose Viterbi path visits it; "
    "top features: largest mean |d log p(s_t = k | z_1:t) / d z_t| over the checkpoints decoded as k "
    "(appendix A); coefficient: the convergence regression below."
)
FIGURE_NAMES = (
    "training_map",
    "regression_coefficients",
    "convergence_histogram",
    "state_timeline",
    "selection_curves",
    "elbo",
)


# ----------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------
def _fit_dir(fit_dir):
    return load_fit_dir(fit_dir)


def load_analysis(fit_dir, *, recompute: bool = False, **analyze_options) -> Analysis:
    """The fit directory's :class:`~bayes_trainmap.analysis.Analysis`.

    Read from ``analysis.json``; if it is missing (or ``recompute``), computed
    from the directory's model, z-scored features, outcomes and decoded paths
    with the outcome, threshold and searched K range recorded in ``config.json``
    (``analyze_options`` are passed on to :func:`~bayes_trainmap.analysis.analyze`
    and take precedence), and saved.
    """
    fd = _fit_dir(fit_dir)
    path = fd.path / ANALYSIS_FILE
    if path.is_file() and not recompute:
        try:
            return Analysis.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise FitDirectoryError(f"'{path}' is not a valid analysis file: {exc}") from exc
    config = fd.config
    Z, lengths, paths = fd.arrays()
    frame = fd.zscored
    run_ids = list(dict.fromkeys(frame["run"].astype(str)))
    split = frame.groupby("run", sort=False)["split"].first().reindex(run_ids).tolist() if "split" in frame else None
    outcome = config.get("outcome") or "eval_accuracy"
    threshold = config.get("threshold")
    kwargs: dict[str, Any] = {}
    if threshold is not None:
        kwargs["threshold"] = float(threshold)
    if config.get("states_searched"):
        kwargs["states_range"] = [int(k) for k in config["states_searched"]]
    kwargs.update(analyze_options)
    outcomes = {c: frame[c].to_numpy(dtype=float) for c in frame.columns if c not in (*fd.feature_names, "run", "step", "split")}
    kwargs.setdefault("outcome", outcome)
    analysis = analyze(fd.params, Z, lengths, run_ids, frame["step"].to_numpy(), outcomes, paths=paths, split=split, **kwargs)
    write_json(path, analysis.to_dict())
    return analysis


# ----------------------------------------------------------------------------------
# the report dictionary
# ----------------------------------------------------------------------------------
def _finite(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (float, int, np.floating, np.integer, np.bool_, bool)) or obj is None:
        return _finite(obj)
    return obj


def _hmm_curve(fd) -> pd.DataFrame | None:
    curve = fd.curve
    if curve is None:
        rows = fd.summary.get("curve")
        curve = pd.DataFrame(rows) if rows else None
    return curve


def build_report(fit_dir, analysis: Analysis | None = None, figures: dict | None = None) -> dict[str, Any]:
    """The ``report.json`` dictionary (structure in the module docstring)."""
    fd = _fit_dir(fit_dir)
    analysis = analysis if analysis is not None else load_analysis(fd.path)
    summary, config = fd.summary, fd.config
    reg = analysis.regression
    tmap = analysis.training_map

    states = []
    for row in tmap.to_dict()["states"]:
        k = int(row["state"])
        row.update(
            coefficient=reg.coefficients[k],
            ci_low=reg.ci_low[k],
            ci_high=reg.ci_high[k],
            detour=bool(reg.detour[k]),
        )
        states.append(row)

    curve = _hmm_curve(fd)
    table4 = []
    if curve is not None and len(curve):
        table4.append(hmm_selection_from_curve(curve))
    if analysis.baselines:
        table4.extend(analysis.baselines)
    conv = analysis.convergence
    converged = conv.converged
    warnings_ = []
    if reg.warning:
        warnings_.append(reg.warning)
    if conv.never_converged:
        verb = "included, censored at their last step" if analysis.censored_runs else "excluded from the regression"
        warnings_.append(
            f"{len(conv.never_converged)} run(s) never reached {conv.outcome} "
            f"{'>=' if conv.higher_is_better else '<='} {conv.threshold:g} ({verb}): {', '.join(conv.never_converged)}"
        )
    if reg.dropped_states:
        warnings_.append(f"state(s) {reg.dropped_states} are visited by no converged run and have no coefficient")
    unvisited = [int(s["state"]) for s in states if s["n_runs"] == 0]
    if unvisited:
        warnings_.append(f"state(s) {unvisited} are never visited by any Viterbi path")
    warnings_ += convergence_warnings(config)
    if analysis.uncertainty is not None:
        validate_uncertainty(analysis.uncertainty)

    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "package_version": __version__,
        "fit": {
            "mode": summary.get("mode", config.get("mode")),
            "n_states": int(summary.get("n_states", analysis.settings["n_states"])),
            "covariance": summary.get("covariance", config.get("covariance")),
            "features": list(fd.feature_names),
            "n_runs": int(summary.get("n_runs", analysis.settings["n_runs"])),
            "n_train_runs": summary.get("n_train_runs"),
            "n_val_runs": summary.get("n_val_runs"),
            "n_checkpoints": int(summary.get("n_checkpoints", analysis.settings["n_checkpoints"])),
            "bic": summary.get("bic"),
            "val_log_likelihood": summary.get("val_log_likelihood"),
            "selected_by": summary.get("selected_by"),
            "task": config.get("task") or (config.get("data") or {}).get("metadata", {}).get("task"),
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
    }
    return _clean(report)


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


# ----------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------
def _write_figures(fd, analysis: Analysis) -> dict[str, dict[str, str]]:
    out_dir = fd.figures_dir
    written: dict[str, dict[str, str]] = {}

    def save(name, fig):
        paths = plots.save_figure(fig, out_dir, name)
        written[name] = {ext: str(Path(p).relative_to(fd.path)) for ext, p in paths.items()}

    unc = analysis.uncertainty
    tm = plots.plot_training_map(analysis.training_map, detour_states=analysis.detour_states, uncertainty=unc)
    save("training_map", tm["nodes"].figure)

    fig, ax = plots.new_axes(figsize=(6.0, 0.45 * max(analysis.settings["n_states"], 2) + 1.4))
    plots.plot_regression_coefficients(analysis.regression.table(), uncertainty=unc, ax=ax)
    save("regression_coefficients", fig)

    fig, ax = plots.new_axes(figsize=(5.5, 3.2))
    conv = analysis.convergence
    plots.plot_convergence_histogram(
        conv.steps, n_never=len(conv.never_converged), threshold=conv.threshold, outcome=conv.outcome, ax=ax
    )
    save("convergence_histogram", fig)

    res = plots.plot_state_timeline(
        fd.decoded, conv.steps, analysis.settings["n_states"], detour_states=analysis.detour_states
    )
    save("state_timeline", res["bars"][0].axes.figure if res["bars"] else plots.new_axes()[0])

    curves, chosen = {}, {}
    hmm_curve = _hmm_curve(fd)
    if hmm_curve is not None and len(hmm_curve):
        sel = hmm_selection_from_curve(hmm_curve)
        curves["HMM"], chosen["HMM"] = sel.curve, int(fd.summary.get("n_states", sel.best_n_components))
    for b in analysis.baselines or []:
        curves[b.model], chosen[b.model] = b.curve, b.best_n_components
    if curves and max(len(c) for c in curves.values()) > 1:  # a fixed K has no curve to show
        fig, axes = plots.new_axes(figsize=(3.6 * len(curves), 3.2), ncols=len(curves))
        plots.plot_selection_curves(curves, chosen, ax=axes)
        fig.tight_layout()
        save("selection_curves", fig)

    if unc and unc.get("elbo"):
        fig, ax = plots.new_axes(figsize=(5.0, 3.0))
        plots.plot_elbo(unc["elbo"], ax=ax)
        save("elbo", fig)
    return written


# ----------------------------------------------------------------------------------
# formatting helpers
# ----------------------------------------------------------------------------------
def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    if abs(v) < 1e-12:  # round-off (e.g. a coefficient that is zero in exact arithmetic)
        v = 0.0
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_interval(lo, hi, digits: int = 2) -> str:
    if lo is None or hi is None:
        return "–"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _unc_edges(report) -> dict:
    unc = report.get("uncertainty") or {}
    return {(e["source"], e["target"]): e for e in unc.get("edges", [])}


def _unc_states(report) -> dict:
    unc = report.get("uncertainty") or {}
    return {s["state"]: s for s in unc.get("states", [])}


def _tables(report: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every report table as (header, rows of strings); shared by Markdown, HTML and terminal."""
    unc = report.get("uncertainty")
    level = f"{round(100 * unc['interval'])}%" if unc else ""
    kind = interval_kind(unc)
    bagged = kind == "bagged"
    t1 = report["table1"]
    header = ["R²", "p-value", "dissimilarity", "forking"]
    row = [_fmt(t1["r_squared"]), _fmt_p(t1["p_value"]), _fmt(t1["dissimilarity"]), "✓" if t1["forking"] else "–"]
    if unc:
        r2 = unc["r_squared"]
        header.append(f"R² {kind} {level}")
        row.append(f"{_fmt(r2['median'])} {_fmt_interval(r2['lo'], r2['hi'])}")
        if bagged:
            header.append(f"R² predictive {level}")
            row.append(predictive_cell(r2, "pred_lo", "pred_hi", lambda v: f"{v:.2f}"))
    tables = {"table1": (header, [row])}

    ustates = _unc_states(report)
    header = ["state", "occupancy", "runs", "mean dwell", "start/end", "top features", "coefficient", "95% CI", "detour"]
    if unc:
        header += [f"coef. {kind} {level}"] + ([f"coef. predictive {level}"] if bagged else []) + ["P(detour)"]
    rows = []
    for s in report["states"]:
        ends = "/".join(x for x, flag in (("start", s["is_initial"]), ("end", s["is_final"])) if flag) or "–"
        r = [
            str(s["state"]),
            f"{100 * s['occupancy']:.1f}%",
            f"{s['n_runs']}/{report['fit']['n_runs']}",
            _fmt(s.get("mean_dwell"), 1),
            ends,
            ", ".join(feature_label(f) for f in s["top_features"]) or "–",
            _fmt(s["coefficient"], 2),
            _fmt_interval(s["ci_low"], s["ci_high"]),
            "DETOUR" if s["detour"] else "",
        ]
        if unc:
            u = ustates.get(s["state"], {})
            r += [f"{_fmt(u.get('coef_median'), 2)} {_fmt_interval(u.get('coef_lo'), u.get('coef_hi'))}" if u else "–"]
            if bagged:
                r.append(predictive_cell(u, "coef_pred_lo", "coef_pred_hi", lambda v: f"{v:.2f}"))
            r.append(_fmt(u.get("p_detour"), 2) if u else "–")
        rows.append(r)
    tables["states"] = (header, rows)

    uedges = _unc_edges(report)
    header = ["edge", "p(k|j)", "runs", "convergence (mean ± sd)", "label (top features, μk − μj)"]
    if unc:
        header += ["P(edge)", f"p(k|j) {kind} {level}"] + ([f"runs predictive {level}"] if bagged else [])
    rows = []
    for e in report["edges"]:
        conv = "–" if e["conv_mean"] is None else f"{e['conv_mean']:.0f}" + ("" if e["conv_sd"] is None else f" ± {e['conv_sd']:.0f}")
        r = [f"{e['source']} → {e['target']}", _fmt(e["trans_prob"]), str(e["n_runs"]), conv, e["label"]]
        if unc:
            u = uedges.get((e["source"], e["target"]), {})
            r += [
                _fmt(u.get("p_exists"), 2) if u else "–",
                _fmt_interval(u.get("trans_prob_lo"), u.get("trans_prob_hi"), 3) if u else "–",
            ]
            if bagged:
                r.append(predictive_cell(u, "n_runs_lo", "n_runs_hi", lambda v: f"{v:.0f}"))
        rows.append(r)
    if unc:
        known = {(e["source"], e["target"]) for e in report["edges"]}
        for (a, b), u in sorted(uedges.items()):
            if (a, b) in known:
                continue
            extra = [predictive_cell(u, "n_runs_lo", "n_runs_hi", lambda v: f"{v:.0f}")] if bagged else []
            rows.append(
                [f"{a} → {b}", "–", "–", "–", ("bagged fits only" if bagged else "posterior draws only") + " (not on the point estimate's Viterbi paths)",
                 _fmt(u.get("p_exists"), 2), _fmt_interval(u.get("trans_prob_lo"), u.get("trans_prob_hi"), 3)]
                + extra
            )
    tables["edges"] = (header, rows)

    reg = report["regression"]
    header = ["state", "coefficient", "std. error", "95% CI", "p-value", "runs visiting", "detour"]
    rows = [
        [
            str(k),
            _fmt(reg["coefficients"][k], 3),
            _fmt(reg["std_errors"][k], 3),
            _fmt_interval(reg["ci_low"][k], reg["ci_high"][k]),
            _fmt_p(reg["pvalues"][k]),
            f"{reg['visited_by'][k]}/{reg['n_runs']}",
            "DETOUR" if reg["detour"][k] else "",
        ]
        for k in range(len(reg["coefficients"]))
    ]
    tables["regression"] = (header, rows)

    header = ["model", "components", "BIC"]
    rows = [[t["model"], str(t["components"]), _fmt(t["bic"], 1)] for t in report["table4"]]
    tables["table4"] = (header, rows)
    return tables


def _regression_sentence(report: dict) -> str:
    reg = report["regression"]
    conv = report["convergence"]
    return (
        f"Convergence step = first checkpoint with {conv['outcome']} "
        f"{'≥' if conv['higher_is_better'] else '≤'} {conv['threshold']:g}; "
        f"{conv['n_converged']} of {report['fit']['n_runs']} runs converged"
        + (f" (mean step {conv['mean']:.0f} ± {conv['sd']:.0f})" if conv.get("mean") is not None and conv.get("sd") is not None else "")
        + f". OLS of the standardised convergence step on occupancy fractions ({reg['n_runs']} runs, "
        f"no separate intercept since fractions sum to one): R² = {_fmt(reg['r_squared'])}, "
        f"F = {_fmt(reg['f_statistic'], 2)}, p = {_fmt_p(reg['f_pvalue'])}. "
        "Coefficients are in standard deviations of the convergence step per unit of occupancy; "
        "a state is a detour if its coefficient is positive and some converged run never visits it."
    )


def _headline(report: dict) -> str:
    fit = report["fit"]
    task = f" · task {fit['task']}" if fit.get("task") else ""
    return (
        f"{fit['mode'].upper() if fit.get('mode') else 'MLE'} fit · K = {fit['n_states']} states "
        f"({fit.get('selected_by') or 'fixed'}) · {fit['n_runs']} runs · {fit['n_checkpoints']:,} checkpoints · "
        f"{len(fit['features'])} features{task}"
    )


# ----------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    """``report.md`` text (figures linked from ``figures/``)."""
    t = _tables(report)
    fig = report["figures"]
    out = ["# Training map report", "", _headline(report), ""]
    for w in report["warnings"]:
        out += [f"> **Warning:** {w}", ""]
    out += ["## Summary (paper Table 1 row)", "", _md_table(*t["table1"]), ""]
    detours = report["detour_states"]
    out += [
        f"Detour states: {', '.join(map(str, detours)) if detours else 'none'}. "
        f"The map is {'forking' if report['table1']['forking'] else 'linear'}; trajectory dissimilarity is the mean "
        f"pairwise Wasserstein distance between runs' state distributions ({report['table1']['ground_metric']} ground metric).",
        "",
        "## Training map",
        "",
    ]
    if "training_map" in fig:
        out += [f"![Training map]({fig['training_map']['png']})", ""]
    out += ["### States", "", STATES_NOTE, "", _md_table(*t["states"]), "", "### Edges", ""]
    out += [_md_table(*t["edges"]) if t["edges"][1] else NO_EDGES, ""]
    out += ["## Convergence and detour states", "", _regression_sentence(report), "", _md_table(*t["regression"]), ""]
    for name, title in (
        ("regression_coefficients", "Regression coefficients"),
        ("convergence_histogram", "Convergence steps"),
        ("state_timeline", "State timeline"),
    ):
        if name in fig:
            out += [f"![{title}]({fig[name]['png']})", ""]
    out += ["## Model selection and baselines (paper Table 4 row)", ""]
    if t["table4"][1]:
        out += [_md_table(*t["table4"]), "", "BICs are comparable only within a model class.", ""]
    if "selection_curves" in fig:
        out += [f"![BIC selection curves]({fig['selection_curves']['png']})", ""]
    else:
        out += ["The number of states was fixed, so there is no selection curve to show.", ""]
    if report.get("uncertainty"):
        u = report["uncertainty"]
        out += [f"## {uncertainty_title(u)}", "", uncertainty_sentence(u), ""]
        if "elbo" in fig:
            out += [f"![ELBO]({fig['elbo']['png']})", ""]
    if report.get("robustness"):
        out += robustness_markdown(report["robustness"], _md_table)
    out += ["---", "", f"Re-render with `python -m bayes_trainmap report <FITDIR>` (bayes_trainmap {report['package_version']}).", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------
def _html_table(header: list[str], rows: list[list[str]], *, text_cols=(), detour_col: int | None = None) -> str:
    def cls(i):
        return ' class="text"' if i in text_cols else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = []
    for r in rows:
        tr = ' class="detour"' if detour_col is not None and r[detour_col] == "DETOUR" else ""
        cells = "".join(f"<td{cls(i)}>{html.escape(str(c))}</td>" for i, c in enumerate(r))
        body.append(f"<tr{tr}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fd_path: Path, files: dict | None, alt: str, caption: str) -> str:
    if not files:
        return ""
    data = base64.b64encode((fd_path / files["png"]).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(report: dict, fit_dir) -> str:
    """Self-contained ``report.html``: inline CSS, figures as base64 PNG, no external references."""
    fd_path = Path(fit_dir)
    t = _tables(report)
    fig = report["figures"]
    t1 = report["table1"]
    e = html.escape
    parts = [
        "<h1>Training map report</h1>",
        f'<p class="lead">{e(_headline(report))}</p>',
        '<nav><a href="#summary">Summary</a><a href="#map">Training map</a><a href="#detours">Detours</a>'
        '<a href="#timeline">Timeline</a><a href="#selection">Model selection</a>'
        + ('<a href="#posterior">Uncertainty</a>' if report.get("uncertainty") else "")
        + ('<a href="#robustness">Robustness</a>' if report.get("robustness") else "")
        + "</nav>",
    ]
    parts += [f'<div class="warning"><strong>Warning:</strong> {e(w)}</div>' for w in report["warnings"]]
    detours = report["detour_states"]
    kpis = [
        ("R²", _fmt(t1["r_squared"])),
        ("regression p-value", _fmt_p(t1["p_value"])),
        ("trajectory dissimilarity", _fmt(t1["dissimilarity"])),
        ("map", "forking" if t1["forking"] else "linear"),
        (
            "detour state" + ("s" if len(detours) > 1 else ""),
            ("state " if len(detours) == 1 else "states ") + ", ".join(map(str, detours)) if detours else "none",
        ),
    ]
    parts += [
        '<h2 id="summary">Summary</h2>',
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><div class="v">{e(v)}</div><div class="k">{e(k)}</div></div>' for k, v in kpis)
        + "</div>",
        '<p class="note">The paper\'s Table 1 row: how well occupancy of the states predicts convergence time (R², '
        "F-test p-value), the mean pairwise Wasserstein distance between runs' state distributions "
        f"({e(t1['ground_metric'])} ground metric), and whether the map forks.</p>",
        _html_table(*t["table1"]),
        '<h2 id="map">Training map</h2>',
        _img(
            fd_path,
            fig.get("training_map"),
            "training map",
            "Nodes are latent states (area ∝ share of checkpoints); edges are transitions used by at least one "
            "run's Viterbi path, labelled with the three features most influential for the target state "
            "(change of mean in z-units, ↑/↓), the number of runs using the edge, p(k|j) and the mean ± SD "
            "convergence step of those runs.",
        ),
        "<h3>States</h3>",
        f'<p class="note">{e(STATES_NOTE)}</p>',
        _html_table(*t["states"], text_cols=(4, 5), detour_col=8),
        "<h3>Edges</h3>",
        _html_table(*t["edges"], text_cols=(0, 4)) if t["edges"][1] else f"<p>{e(NO_EDGES)}</p>",
        '<h2 id="detours">Convergence and detour states</h2>',
        f"<p>{e(_regression_sentence(report))}</p>",
        _html_table(*t["regression"], detour_col=6),
        _img(fd_path, fig.get("regression_coefficients"), "regression coefficients", "Per-state coefficients with 95% confidence intervals; detour states in red."),
        _img(fd_path, fig.get("convergence_histogram"), "convergence histogram", "Distribution of convergence steps over the converged runs."),
        '<h2 id="timeline">State timeline</h2>',
        _img(fd_path, fig.get("state_timeline"), "state timeline", "One row per run, coloured by Viterbi state, sorted by convergence step (black tick). Runs that never converged are at the bottom."),
        '<h2 id="selection">Model selection and baselines</h2>',
        '<p class="note">The paper\'s Table 4 row: components chosen by held-out BIC and the BIC of the chosen '
        "model, for the full HMM and the k-means and HMM-1 (L2 norm only) baselines. BICs are comparable only "
        "within a model class.</p>",
        _html_table(*t["table4"], text_cols=(0,)) if t["table4"][1] else "<p>No baselines were computed.</p>",
        "" if fig.get("selection_curves") else '<p class="note">The number of states was fixed, so there is no selection curve to show.</p>',
        _img(fd_path, fig.get("selection_curves"), "selection curves", "Held-out BIC against the number of components; the chosen value is circled."),
    ]
    unc = report.get("uncertainty")
    if unc:
        parts += [
            f'<h2 id="posterior">{e(uncertainty_title(unc))}</h2>',
            f"<p>{e(uncertainty_sentence(unc))} The intervals are shown in every table above.</p>",
            _img(fd_path, fig.get("elbo"), "ELBO trace", "SVI objective per iteration."),
        ]
    if report.get("robustness"):
        parts += robustness_html(report["robustness"], _html_table)
    parts.append(
        f'<p class="note">Generated by bayes_trainmap {e(report["package_version"])} from the fit directory alone; '
        "re-render with <code>python -m bayes_trainmap report FITDIR</code>. Every number is in "
        "<code>report.json</code>.</p>"
    )
    template = Template(resources.files("bayes_trainmap.report").joinpath("templates/report.html").read_text(encoding="utf-8"))
    return template.substitute(title=e("Training map report"), body="\n".join(p for p in parts if p))


# ----------------------------------------------------------------------------------
# terminal
# ----------------------------------------------------------------------------------
def _rich_table(title: str, header: list[str], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r, style="bold" if "DETOUR" in r else None)
    return table


def render_terminal(fit_dir, *, width: int | None = None) -> str:
    """Terminal summary of a fit directory's report: Table-1 row, states, edges, regression, detours.

    Reads ``report.json`` if present, else builds the report dictionary (no files written).
    ``width`` defaults to the terminal's width, at least 120 columns.
    """
    import shutil

    from rich.console import Console

    if width is None:
        width = max(120, shutil.get_terminal_size((120, 40)).columns)
    fd = _fit_dir(fit_dir)
    path = fd.path / "report.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else build_report(fd.path)
    t = _tables(report)
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(_headline(report))
    for w in report["warnings"]:
        console.print(f"warning: {w}", soft_wrap=True)
    console.print(_rich_table("Table 1 row", *t["table1"]))
    console.print(_rich_table("States", *t["states"]))
    if t["edges"][1]:
        console.print(_rich_table("Edges (training map)", *t["edges"]))
    else:
        console.print(f"Edges: {NO_EDGES}")
    console.print(_rich_table("Convergence regression", *t["regression"]))
    detours = report["detour_states"]
    console.print(f"Detour states: {', '.join(map(str, detours)) if detours else 'none'}")
    if t["table4"][1]:
        console.print(_rich_table("Table 4 row (BIC comparable only within a model class)", *t["table4"]))
    if report.get("uncertainty"):
        console.print(uncertainty_sentence(report["uncertainty"]), soft_wrap=True)
    if report.get("robustness"):
        console.print(robustness_sentence(report["robustness"]), soft_wrap=True)
        for title, header, rows in robustness_tables(report["robustness"]):
            console.print(_rich_table(f"Robustness: {title}", header, rows))
    return console.export_text()


# ----------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------
def write_report(fit_dir, *, analysis: Analysis | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``report.json`` and the figures into a fit directory.

    Parameters
    ----------
    fit_dir : path-like
        A fit directory written by ``fit``.
    analysis : Analysis, optional
        Use this analysis instead of ``analysis.json`` (which is then written).

    Returns
    -------
    dict
        ``{"md", "html", "json"}`` paths.
    """
    fd = _fit_dir(fit_dir)
    if analysis is None:
        analysis = load_analysis(fd.path)
    else:
        write_json(fd.path / ANALYSIS_FILE, analysis.to_dict())
    figures = _write_figures(fd, analysis)
    report = build_report(fd.path, analysis, figures)
    validate_report_json(report)
    paths = {"json": fd.path / "report.json", "md": fd.path / "report.md", "html": fd.path / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report, fd.path), encoding="utf-8")
    return paths
