"""Rendering of the robustness section and the interval labels of a report.

The report dictionary's ``robustness`` entry comes from
:func:`bayes_trainmap.fitting.robustness.robustness_section`; ``uncertainty`` from either the
plain posterior (:func:`bayes_trainmap.fitting.bayesian.summarize`) or the bagged fits
(:func:`bayes_trainmap.fitting.robustness.summarize_bags`, which adds ``method`` and
``labels``). These helpers turn them into tables (header, rows of strings) and the
sentences that say what each interval is; :mod:`bayes_trainmap.report.build` places them in
the Markdown, HTML and terminal output.
"""

from __future__ import annotations

import html

__all__ = [
    "ROBUSTNESS_NOTE",
    "convergence_warnings",
    "interval_kind",
    "robustness_html",
    "robustness_markdown",
    "robustness_sentence",
    "robustness_tables",
    "uncertainty_sentence",
    "uncertainty_title",
]

ROBUSTNESS_NOTE = (
    "Share of fits on resampled runs (seeds drawn with replacement, the model refitted at this K, states matched to this fit's "
    "states by role: means, occupancy and position on the path) that reproduce each finding. Read this before "
    "believing an edge, a fork or a detour."
)


def interval_kind(unc: dict | None) -> str:
    """``"bagged"`` for intervals from bagged fits, ``"posterior"`` for the plain posterior, ``""`` for none."""
    if not unc:
        return ""
    return "bagged" if str(unc.get("method", "")).startswith("bagged") else "posterior"


def uncertainty_title(unc: dict) -> str:
    """Section title naming the interval method."""
    return "Bagged uncertainty (BayesBag over seeds)" if interval_kind(unc) == "bagged" else "Posterior uncertainty"


def uncertainty_sentence(unc: dict) -> str:
    """What the intervals of the ``uncertainty`` dict are, in one paragraph."""
    level = f"{round(100 * unc['interval'])}%"
    if interval_kind(unc) == "bagged":
        labels = unc.get("labels", {})
        return (
            f"Intervals ({level}) from {unc.get('n_bags', unc['n_draws'])} bagged fits (BayesBag over runs: the runs "
            f"resampled with replacement, the Bayesian model's MAP refitted per bag). p(k|j), coefficient and R² "
            f"intervals are {labels.get('trans_prob', 'bagged posterior credible intervals')}; the run counts of "
            f"edges and the 'predictive' columns are {labels.get('n_runs', 'posterior predictive intervals for a new set of seeds')}; "
            f"P(edge) and P(detour) are the shares of bags showing the finding "
            f"(the predictive probability that a new set of seeds shows it)."
        )
    return (
        f"{unc['n_draws']} posterior draws, {level} central credible intervals of the model's posterior "
        f"(checkpoints independent given the state; this does not carry seed-to-seed variation, see the "
        f"robustness section); ambiguous state alignment in {100 * (unc.get('alignment_ambiguous_rate') or 0):.1f}% of draws."
    )


def convergence_warnings(config: dict) -> list[str]:
    """Report warnings for a Bayesian fit or resampled refits that stopped at their iteration limit.

    ``config`` is ``config.json``; the settings are read from its ``"resolved"`` section.
    """
    out = []
    config = config.get("resolved") or {}
    bayes = config.get("bayes_settings") or {}
    if bayes.get("converged") is False:
        if bayes.get("mode") == "map":
            what, done = "MAP (L-BFGS)", f"{bayes.get('steps_run')} objective evaluations"
        else:
            what, done = "SVI", f"{bayes.get('steps_run')} steps"
        out.append(
            f"the {what} fit stopped at its iteration limit ({bayes.get('steps')}) after {done} without meeting "
            f"its convergence test; raise --steps"
        )
    resampling = config.get("resampling") or {}
    share = resampling.get("converged_share")
    if share is not None and share < 1.0:
        out.append(
            f"{100 * (1 - share):.0f}% of the {resampling.get('n_bags')} refits on resampled runs stopped at their "
            "iteration limit"
        )
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{100 * float(v):.0f}%"


def robustness_tables(rob: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Edges, fork and detours with the share of resampled fits reproducing them."""
    edges = [
        [f"{e['source']} → {e['target']}", "yes" if e["in_map"] else "no", _pct(e["share"])] for e in rob["edges"]
    ]
    fork = rob["forking"]
    findings = [["map forks", "yes" if fork["in_map"] else "no", _pct(fork["share"])]]
    findings += [
        [f"state {d['state']} is a detour", "yes" if d["detour"] else "no", _pct(d["share"])] for d in rob["detours"]
    ]
    header = ["finding", "in this fit", "share of resampled fits"]
    return [("Edges", header, edges), ("Fork and detours", header, findings)]


def robustness_sentence(rob: dict) -> str:
    text = f"{rob['n_resamples']} resamples of the runs ({rob['fitter']} refit per resample). {ROBUSTNESS_NOTE}"
    k = rob.get("k")
    if k:
        same = k.get("share_same")
        text += (
            f" K chosen on {len(k['choices'])} resamples of the selection (one restart per K, fewer than the "
            f"selection's, which can favour smaller K): "
            f"{', '.join(map(str, k['choices']))}"
            + ("" if same is None else f" ({100 * same:.0f}% equal to this fit's K = {k['chosen']})")
            + "."
        )
    return text


def robustness_markdown(rob: dict, md_table) -> list[str]:
    out = ["## Robustness to the choice of seeds", "", robustness_sentence(rob), ""]
    for title, header, rows in robustness_tables(rob):
        out += [f"### {title}", "", md_table(header, rows) if rows else "none", ""]
    return out


def robustness_html(rob: dict, html_table) -> list[str]:
    parts = ['<h2 id="robustness">Robustness to the choice of seeds</h2>', f"<p>{html.escape(robustness_sentence(rob))}</p>"]
    for title, header, rows in robustness_tables(rob):
        parts += [f"<h3>{html.escape(title)}</h3>", html_table(header, rows, text_cols=(0,)) if rows else "<p>none</p>"]
    return parts


def predictive_cell(entry: dict | None, lo: str, hi: str, fmt) -> str:
    """``[lo, hi]`` of a predictive interval, or ``–``."""
    if not entry or entry.get(lo) is None or entry.get(hi) is None:
        return "–"
    return f"[{fmt(entry[lo])}, {fmt(entry[hi])}]"
