"""The "Decoded extra runs" section of a report (``report FITDIR --extra-runs NEWRUNS``).

``report["extra_runs"]`` is a list of rows built by the command line with
:func:`bayes_trainmap.monitor.extra_runs.extra_runs_rows` (the report does not
import the monitor): per run its state path, the edges no fitted run took, its
detour visits, its current state and convergence (the step it crossed, or the
forecast from its last checkpoint). These helpers render it as a table for the
Markdown, HTML and terminal output.
"""

from __future__ import annotations

import html

__all__ = ["EXTRA_RUNS_NOTE", "extra_runs_html", "extra_runs_lines", "extra_runs_markdown", "extra_runs_table"]

EXTRA_RUNS_NOTE = (
    "Runs that were not fitted, decoded against this map (z-scored as the fit z-scores its own runs; Viterbi states). "
    "New edges are transitions no fitted run's path takes. Convergence: the step the run crossed the threshold, or "
    "the forecast from its last checkpoint (explicit-duration chain: median and 90% interval given convergence "
    "within the training budget, P(converge within the budget), P(stuck))."
)

_HEADER = ["run", "checkpoints", "state path", "new edges", "detour visits", "current state", "convergence"]


def _steps(v) -> str:
    return "beyond the budget" if v is None else f"{v:,.0f}"


def _convergence(row: dict) -> str:
    if row.get("converged_step") is not None:
        return f"converged at step {row['converged_step']:,}"
    if row.get("p_converge") is None:
        return "no forecast (no convergence outcome)"
    lo, hi = row["interval"]
    median = "-" if row["predicted_step"] is None else _steps(row["predicted_step"])
    return (f"forecast {median} [{_steps(lo)}, {_steps(hi)}]; P(conv) {row['p_converge']:.2f}, "
            f"P(stuck) {row['p_stuck']:.2f}")


def extra_runs_table(extra: list[dict]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of strings, one row per extra run."""
    rows = []
    for r in extra:
        new = ", ".join(f"NEW {e['source']}->{e['target']} at {e['step']:,}" for e in r["new_edges"]) or "none"
        visits = ", ".join(f"{v['state']} ({v['first_step']:,}-{v['last_step']:,})" for v in r["detours"]) or "none"
        rows.append([r["run"], str(r["n_checkpoints"]), " → ".join(map(str, r["path"])), new, visits,
                     str(r["current_state"]), _convergence(r)])
    return _HEADER, rows


def extra_runs_markdown(extra: list[dict], md_table) -> list[str]:
    return ["## Decoded extra runs", "", EXTRA_RUNS_NOTE, "", md_table(*extra_runs_table(extra)), ""]


def extra_runs_html(extra: list[dict], html_table) -> list[str]:
    return ['<h2 id="extra-runs">Decoded extra runs</h2>', f'<p class="note">{html.escape(EXTRA_RUNS_NOTE)}</p>',
            html_table(*extra_runs_table(extra), text_cols=(0, 2, 3, 4, 6))]


def extra_runs_lines(extra: list[dict]) -> list[str]:
    """One line per extra run for the terminal."""
    _, rows = extra_runs_table(extra)
    return [f"{r[0]}: {r[2]}; new edges: {r[3]}; detours: {r[4]}; {r[6]}" for r in rows]
