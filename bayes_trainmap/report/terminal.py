"""The terminal renderings: the fit summary and the report's tables (rich)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Sequence

from bayes_trainmap.data.fitdir import REPORT_FILES, load_fit_dir
from bayes_trainmap.report.data import build_report
from bayes_trainmap.report.robustness import (
    robustness_sentence,
    robustness_tables,
    uncertainty_sentence,
)
from bayes_trainmap.report.text import NO_EDGES, headline, report_tables

logger = logging.getLogger(__name__)

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
    fd = load_fit_dir(fit_dir)
    path = fd.path / REPORT_FILES["json"]
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else build_report(fd.path)
    t = report_tables(report)
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(headline(report))
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


def _arrow(states: Sequence[int]) -> str:
    return " -> ".join(str(s) for s in states)


def render_summary(summary: dict[str, Any], max_runs: int = 12) -> str:
    """Plain-text terminal summary of a fit (chosen K, BIC table, occupancy, paths).

    Parameters
    ----------
    summary : dict
        :meth:`FitResult.summary` or a fit directory's ``summary.json``.
    max_runs : int
        Runs listed individually; the distinct state sequences of all runs are
        always counted.
    """
    lines = [
        f"Fit ({summary['mode']}): {summary['n_runs']} runs ({summary['n_train_runs']} train, "
        f"{summary['n_val_runs']} held out), {summary['n_checkpoints']} checkpoints, "
        f"{len(summary['features'])} features, {summary['covariance']} covariance",
        f"Chosen K = {summary['n_states']} ({summary['selected_by']}; BIC = -2 LL_val + p ln(n_val), "
        f"n_val = {summary['n_val_checkpoints']})",
    ]
    if summary.get("dropped_features"):
        lines.append(f"Left out (constant in every run): {', '.join(summary['dropped_features'])}")
    dropped = set(summary.get("dropped_features", []))
    partly = {f: r for f, r in summary.get("constant_features", {}).items() if f not in dropped}
    if partly:
        lines.append(
            "Constant in some runs (z-scored to 0 there): "
            + ", ".join(f"{f} ({len(r)} runs)" for f, r in partly.items())
        )
    lines += ["", f"{'K':>4} {'BIC':>14} {'val LL':>14} {'train LL':>14} {'params':>7}"]
    for row in summary["curve"]:
        mark = "*" if row["n_states"] == summary["n_states"] else " "
        lines.append(
            f"{mark}{row['n_states']:>3} {_num(row['bic']):>14} {_num(row['val_log_likelihood']):>14} "
            f"{_num(row['train_log_likelihood']):>14} {row['n_parameters']:>7}"
        )
    lines += ["", "State occupancy (share of all checkpoints, runs visiting):"]
    for occ in summary["occupancy"]:
        lines.append(f"  state {occ['state']:>2}: {100 * occ['fraction']:5.1f}%  {occ['n_runs']:>4} runs")
    lines += ["", "Viterbi state sequences:"]
    patterns: dict[str, int] = {}
    for run in summary["runs"]:
        key = _arrow(run["states"])
        patterns[key] = patterns.get(key, 0) + 1
    for key, count in sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:>4} run(s): {key}")
    lines += ["", "Per run (state [first step-last step]):"]
    for run in summary["runs"][:max_runs]:
        parts = " -> ".join(f"{s}[{a}-{b}]" for s, a, b, _ in run["segments"])
        lines.append(f"  {run['run']} ({run['split']}): {parts}")
    if len(summary["runs"]) > max_runs:
        lines.append(f"  ... {len(summary['runs']) - max_runs} more runs in decoded.parquet")
    for w in summary.get("warnings", []):
        lines.append(f"Warning: {w}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "nan" if value is None else f"{float(value):.6g}"
