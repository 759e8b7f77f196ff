"""Formatting shared by the renderers: numbers, intervals, the report's tables and sentences."""

from __future__ import annotations

import logging
import math

import numpy as np

from bayes_trainmap.analysis.training_map import feature_label
from bayes_trainmap.report.glossary import glossary_table
from bayes_trainmap.report.map_layout import edge_keys
from bayes_trainmap.report.robustness import interval_kind, predictive_cell

logger = logging.getLogger(__name__)

NO_EDGES = "No transitions: every run stays in a single state."
STATES_NOTE = (
    "Occupancy: share of all checkpoints decoded as the state; runs: runs whose Viterbi path visits it; "
    "top features: largest mean |d log p(s_t = k | z_1:t) / d z_t| over the checkpoints decoded as k "
    "(appendix A); coefficient: the convergence regression below."
)


def fmt(v, digits: int = 3) -> str:
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


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_equals(p) -> str:
    """``p = 0.012`` or ``p < 0.001`` for running text."""
    text = fmt_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_interval(lo, hi, digits: int = 2) -> str:
    if lo is None or hi is None:
        return "–"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _unc_edges(report) -> dict:
    unc = report.get("uncertainty") or {}
    return {(e["source"], e["target"]): e for e in unc.get("edges", [])}


def _unc_states(report) -> dict:
    unc = report.get("uncertainty") or {}
    return {s["state"]: s for s in unc.get("states", [])}


def report_tables(report: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every report table as (header, rows of strings); shared by Markdown, HTML and terminal."""
    unc = report.get("uncertainty")
    level = f"{round(100 * unc['interval'])}%" if unc else ""
    kind = interval_kind(unc)
    bagged = kind == "bagged"
    t1 = report["table1"]
    header = ["R²", "p-value", "dissimilarity", "forking"]
    row = [fmt(t1["r_squared"]), fmt_p(t1["p_value"]), fmt(t1["dissimilarity"]), "✓" if t1["forking"] else "–"]
    if unc:
        r2 = unc["r_squared"]
        header.append(f"R² {kind} {level}")
        row.append(f"{fmt(r2['median'])} {fmt_interval(r2['lo'], r2['hi'])}")
        if bagged:
            header.append(f"R² predictive {level}")
            row.append(predictive_cell(r2, "pred_lo", "pred_hi", lambda v: f"{v:.2f}"))
    tables = {"table1": (header, [row])}

    ustates = _unc_states(report)
    header = ["state", "occupancy", "runs", "mean dwell (checkpoints)", "runs start / end here", "top features", "coefficient", "95% CI", "detour"]
    if unc:
        header += [f"coef. {kind} {level}"] + ([f"coef. predictive {level}"] if bagged else []) + ["P(detour)"]
    rows = []
    for s in report["states"]:
        ends = f"{s.get('n_runs_start', 0)} / {s.get('n_runs_end', 0)}"
        r = [
            str(s["state"]),
            f"{100 * s['occupancy']:.1f}%",
            f"{s['n_runs']}/{report['fit']['n_runs']}",
            fmt(s.get("mean_dwell"), 1),
            ends,
            ", ".join(feature_label(f) for f in s["top_features"]) or "–",
            _coef_cell(s["coefficient"], s.get("identified", True), s["n_runs"] > 0, 2),
            fmt_interval(s["ci_low"], s["ci_high"]),
            "DETOUR" if s["detour"] else "",
        ]
        if unc:
            u = ustates.get(s["state"], {})
            r += [f"{fmt(u.get('coef_median'), 2)} {fmt_interval(u.get('coef_lo'), u.get('coef_hi'))}" if u else "–"]
            if bagged:
                r.append(predictive_cell(u, "coef_pred_lo", "coef_pred_hi", lambda v: f"{v:.2f}"))
            r.append(fmt(u.get("p_detour"), 2) if u else "–")
        rows.append(r)
    tables["states"] = (header, rows)

    uedges = _unc_edges(report)
    keys = edge_keys([(e["source"], e["target"]) for e in report["edges"]], unc)
    header = ["key", "edge", "p(k|j)", "runs", "convergence (mean ± sd)", "label (top features, μk − μj)"]
    if unc:
        header += ["P(edge)", f"p(k|j) {kind} {level}"] + ([f"runs predictive {level}"] if bagged else [])
    rows = []
    for e in report["edges"]:
        conv = "–" if e["conv_mean"] is None else f"{e['conv_mean']:.0f}" + ("" if e["conv_sd"] is None else f" ± {e['conv_sd']:.0f}")
        rare = " (rare: fewer than 1 in 1000 steps from the source, yet runs take it)" if e["trans_prob"] is not None and e["trans_prob"] < 1e-3 and e["n_runs"] else ""
        r = [keys[(e["source"], e["target"])], f"{e['source']} → {e['target']}", fmt(e["trans_prob"]) + rare, str(e["n_runs"]), conv, e["label"]]
        if unc:
            u = uedges.get((e["source"], e["target"]), {})
            r += [
                fmt(u.get("p_exists"), 2) if u else "–",
                fmt_interval(u.get("trans_prob_lo"), u.get("trans_prob_hi"), 3) if u else "–",
            ]
            if bagged:
                r.append(predictive_cell(u, "n_runs_lo", "n_runs_hi", lambda v: f"{v:.0f}"))
        rows.append(r)
    if unc:
        known = {(e["source"], e["target"]) for e in report["edges"]}
        for (a, b), u in sorted(uedges.items()):
            if (a, b) not in keys or (a, b) in known:
                continue
            extra = [predictive_cell(u, "n_runs_lo", "n_runs_hi", lambda v: f"{v:.0f}")] if bagged else []
            source = "bagged fits only" if bagged else "posterior draws only"
            rows.append(
                [keys[(a, b)], f"{a} → {b}", "–", "–", "–", f"{source} (not on the point estimate's Viterbi paths)",
                 fmt(u.get("p_exists"), 2), fmt_interval(u.get("trans_prob_lo"), u.get("trans_prob_hi"), 3)]
                + extra
            )
    tables["edges"] = (header, rows)

    reg = report["regression"]
    header = ["state", "coefficient", "std. error", "95% CI", "p-value", "runs visiting", "detour"]
    rows = [
        [
            str(k),
            _coef_cell(reg["coefficients"][k], _reg_identified(reg, k), reg["visited_by"][k] > 0, 3),
            fmt(reg["std_errors"][k], 3),
            fmt_interval(reg["ci_low"][k], reg["ci_high"][k]),
            fmt_p(reg["pvalues"][k]),
            f"{reg['visited_by'][k]}/{reg['n_runs']}",
            "DETOUR" if reg["detour"][k] else "",
        ]
        for k in range(len(reg["coefficients"]))
    ]
    tables["regression"] = (header, rows)

    header = ["model", "components", "BIC"]
    rows = [[t["model"], str(t["components"]), fmt(t["bic"], 1)] for t in report["table4"]]
    tables["table4"] = (header, rows)
    tables["glossary"] = glossary_table(report["fit"]["features"])
    return tables


def _reg_identified(reg: dict, k: int) -> bool:
    ident = reg.get("identified")
    return True if ident is None else bool(ident[k])


def _coef_cell(value, identified: bool, visited: bool, digits: int) -> str:
    """A coefficient, or "not identified" for a visited state the data do not identify."""
    return "not identified" if visited and not identified else fmt(value, digits)


def _identification_sentence(reg: dict) -> str:
    """Why the non-identified visited states have no coefficient ('' when all are identified)."""
    reasons = reg.get("not_identified_reasons") or []
    by_reason: dict[str, list[int]] = {}
    for k, why in enumerate(reasons):
        if why and reg["visited_by"][k] > 0 and not _reg_identified(reg, k):
            by_reason.setdefault(why, []).append(k)
    if not by_reason:
        return ""
    parts = [f"state{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}: {why}" for why, ks in by_reason.items()]
    return " Not identified (no coefficient, never a detour) -- " + "; ".join(parts) + "."


def regression_sentence(report: dict) -> str:
    reg = report["regression"]
    conv = report["convergence"]
    return (
        f"Convergence step = first checkpoint with {conv['outcome']} "
        f"{'≥' if conv['higher_is_better'] else '≤'} {conv['threshold']:g}; "
        f"{conv['n_converged']} of {report['fit']['n_runs']} runs converged"
        + (f" (mean step {conv['mean']:.0f} ± {conv['sd']:.0f})" if conv.get("mean") is not None and conv.get("sd") is not None else "")
        + f". OLS of the standardised convergence step on occupancy fractions ({reg['n_runs']} runs, "
        f"no separate intercept since fractions sum to one): R² = {fmt(reg['r_squared'])}, "
        f"F = {fmt(reg['f_statistic'], 2)}, {p_equals(reg['f_pvalue'])}. "
        "Coefficients are in standard deviations of the convergence step per unit of occupancy; "
        "a state is a detour if its coefficient is positive and some converged run never visits it."
        + _identification_sentence(reg)
    )


def headline(report: dict) -> str:
    fit = report["fit"]
    task = f" · task {fit['task']}" if fit.get("task") else ""
    return (
        f"{fit['mode'].upper() if fit.get('mode') else 'MLE'} fit · K = {fit['n_states']} state{'s' if fit['n_states'] != 1 else ''} "
        f"({fit.get('selected_by') or 'fixed'}) · {fit['n_runs']} runs · {fit['n_checkpoints']:,} checkpoints · "
        f"{len(fit['features'])} features{task}"
    )


# ----------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------
