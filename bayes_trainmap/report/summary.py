"""The terminal summary of a fit: one screen, each thing said once, the terminal's width.

:func:`render_fit_summary` reads a fit directory's ``summary.json`` and ``report.json``
and returns at most about 40 lines no wider than ``width`` (80 columns at least):
what was fitted, the states, the edges, the paper's Table-1 row, detours, how robust the
findings are to the choice of seeds, the warnings (once each), where the report is and
the commands worth running next. ``verbose=True`` adds every run's state path.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections import Counter
from pathlib import Path

from bayes_trainmap.data.fitdir import REPORT_FILES, load_fit_dir
from bayes_trainmap.report.text import fmt, fmt_interval, p_equals

__all__ = ["render_fit_summary"]

#: Rows of the state and edge tables shown before "... n more (see the report)".
MAX_ROWS = 8


def render_fit_summary(fit_dir, *, width: int | None = None, verbose: bool = False) -> str:
    """The summary of a fit directory as text (see the module docstring)."""
    width = max(80, width or shutil.get_terminal_size((80, 40)).columns)
    fd = load_fit_dir(fit_dir)
    path = fd.path / REPORT_FILES["json"]
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    summary = fd.summary
    out: list[str] = [_headline(summary, report, fd.config), *_features(summary, width)]
    if report is not None:
        out += _states(report) + _edges(report) + _findings(report, width)
    out += _paths(summary, verbose, width)
    warnings = list(dict.fromkeys([*summary.get("warnings", []), *((report or {}).get("warnings", []))]))
    for w in warnings:
        out += textwrap.wrap(f"warning: {w}", width, subsequent_indent="  ", max_lines=3, placeholder=" ...")
    out += _next(fd.path, summary, report is not None)
    lines = [piece for line in out for piece in line.split("\n")]
    return "\n".join(line if line.startswith(_WHOLE) else _fit(line, width) for line in lines)


#: Lines never cut: paths and commands must be copied whole.
_WHOLE = ("report:", "fit directory:", "next:")


def _fit(line: str, width: int) -> str:
    """``line`` cut at a word boundary to ``width`` columns (with "..." when cut)."""
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width - 3)
    return line[: cut if cut > 0 else width - 4].rstrip(" ,") + " ..."


def _headline(summary: dict, report: dict | None, config: dict) -> str:
    task = ((report or {}).get("fit") or {}).get("task")
    states = config.get("resolved", {}).get("states_searched") or []
    how = f"{summary['selected_by']} over K = {states[0]}-{states[-1]}" if len(states) > 1 else "fixed K"
    k = summary["n_states"]
    return (
        f"{summary['mode'].upper()} fit{' of ' + task if task else ''}: {summary['n_runs']} runs "
        f"({summary['n_train_runs']} train, {summary['n_val_runs']} held out),\n"
        f"  {summary['n_checkpoints']:,} checkpoints, {len(summary['features'])} features, "
        f"{summary['covariance']} covariance\n"
        f"Chosen K = {k} state{'s' if k != 1 else ''} ({how}; "
        f"BIC {fmt(summary['bic'], 1)})"
    )


def _features(summary: dict, width: int) -> list[str]:
    """Features left out of the model, and those constant (z-scored to 0) in some runs."""
    dropped = summary.get("dropped_features") or []
    partly = {f: r for f, r in (summary.get("constant_features") or {}).items() if f not in dropped}
    text = []
    if dropped:
        text.append(f"Left out (constant in every run): {', '.join(dropped)}")
    if partly:
        text.append("Constant in some runs (z-scored to 0 there): " + ", ".join(f"{f} ({len(r)} runs)" for f, r in partly.items()))
    return [line for t in text for line in textwrap.wrap(t, width, subsequent_indent="  ")]


def _states(report: dict) -> list[str]:
    rows = [f"{'state':>5} {'share':>6} {'runs':>5} {'dwell':>6}  {'coefficient [95% CI]':<24} top features"]
    for s in report["states"][:MAX_ROWS]:
        coef = "not identified" if not s.get("identified", True) and s["n_runs"] else (
            f"{fmt(s['coefficient'], 2)} {fmt_interval(s['ci_low'], s['ci_high'])}" if s["coefficient"] is not None else "–"
        )
        mark = " DETOUR" if s["detour"] else ""
        rows.append(
            f"{s['state']:>5} {100 * s['occupancy']:5.1f}% {s['n_runs']:>5} {fmt(s.get('mean_dwell'), 0):>6}  "
            f"{coef + mark:<24} {', '.join(s['top_features'][:2])}"
        )
    return ["", *rows, *_more(report["states"], "states"), "  (dwell: mean checkpoints per visit)"]


def _edges(report: dict) -> list[str]:
    if not report["edges"]:
        return ["", "No transitions: every run stays in one state."]
    share = {(e["source"], e["target"]): e["share"] for e in (report.get("robustness") or {}).get("edges", [])}
    rows = [f"{'edge':>7} {'runs':>5} {'p(k|j)':>8} {'seeds':>6}  label"]
    for e in report["edges"][:MAX_ROWS]:
        kept = share.get((e["source"], e["target"]))
        rows.append(
            f"{e['source']:>3} → {e['target']:<2}{e['n_runs']:>5} {fmt(e['trans_prob'], 2):>8} "
            f"{'–' if kept is None else f'{100 * kept:.0f}%':>6}  {e['label'].split(chr(10))[0]}"
        )
    note = "  (seeds: share of fits on resampled runs that reproduce the edge)" if share else ""
    return ["", *rows, *_more(report["edges"], "edges"), *([note] if note else [])]


def _more(items: list, what: str) -> list[str]:
    return [f"  ... {len(items) - MAX_ROWS} more {what} in the report"] if len(items) > MAX_ROWS else []


def _findings(report: dict, width: int) -> list[str]:
    t1, conv, rob = report["table1"], report["convergence"], report.get("robustness") or {}
    fork_share = (rob.get("forking") or {}).get("share")
    detours = report["detour_states"]
    detour_share = {d["state"]: d["share"] for d in rob.get("detours", [])}
    parts = [
        f"Convergence ({conv['outcome']} {'≥' if conv['higher_is_better'] else '≤'} {conv['threshold']:g}): "
        f"{conv['n_converged']} of {report['fit']['n_runs']} runs. R² {fmt(t1['r_squared'], 2)} ({p_equals(t1['p_value'])}), "
        f"dissimilarity {fmt(t1['dissimilarity'], 2)}, map {'forks' if t1['forking'] else 'is linear'}"
        + (f" ({100 * fork_share:.0f}% of resampled fits fork)." if fork_share is not None else "."),
        "Detour states: "
        + (", ".join(f"{d}" + (f" ({100 * detour_share[d]:.0f}% of resampled fits)" if d in detour_share else "") for d in detours)
           if detours else "none")
        + ".",
    ]
    k = rob.get("k") or {}
    if k.get("choices"):
        parts.append(f"K on resamples of the selection: {', '.join(map(str, k['choices']))} (chosen {k['chosen']}).")
    return [""] + [line for p in parts for line in textwrap.wrap(p, width, subsequent_indent="  ")]


def _paths(summary: dict, verbose: bool, width: int) -> list[str]:
    counts = Counter(" → ".join(map(str, r["states"])) for r in summary["runs"])
    top = counts.most_common(3)
    other = sum(counts.values()) - sum(c for _, c in top)
    text = "State paths: " + "; ".join(f"{c} runs {p}" for p, c in top) + (f"; {other} other" if other else "")
    lines = [""] + textwrap.wrap(text, width, subsequent_indent="  ")
    if verbose:
        for r in summary["runs"]:
            segs = " → ".join(f"{s}[{a}-{b}]" for s, a, b, _ in r["segments"])
            lines += textwrap.wrap(f"  {r['run']} ({r['split']}): {segs}", width, subsequent_indent="      ")
    return lines


def _next(path: Path, summary: dict, has_report: bool) -> list[str]:
    lines = [""]
    if has_report:
        lines.append(f"report: {path / REPORT_FILES['html']}")
    lines.append(f"fit directory: {path}")
    lines.append(f"next: python -m bayes_trainmap report {path}")
    if summary["mode"] == "mle":
        lines.append("      python -m bayes_trainmap fit --mode svi   (credible intervals)")
    lines.append("      python -m bayes_trainmap fit --data RUNS  (your own runs; --help)")
    return lines
