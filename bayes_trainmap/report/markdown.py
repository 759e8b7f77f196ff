"""``report.md``: the report dictionary rendered as Markdown."""

from __future__ import annotations

import logging

from bayes_trainmap.report.extra_runs import extra_runs_markdown
from bayes_trainmap.report.glossary import GLOSSARY_NOTE
from bayes_trainmap.report.robustness import (
    robustness_markdown,
    uncertainty_sentence,
    uncertainty_title,
)
from bayes_trainmap.report.text import (
    NO_EDGES,
    STATES_NOTE,
    headline,
    regression_sentence,
    report_tables,
)

logger = logging.getLogger(__name__)

def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    """``report.md`` text (figures linked from ``figures/``)."""
    t = report_tables(report)
    fig = report["figures"]
    out = ["# Training map report", "", headline(report), ""]
    for w in report["warnings"]:
        out += [f"> **Warning:** {w}", ""]
    out += ["## Summary (paper Table 1 row)", "", _md_table(*t["table1"]), ""]
    detours = report["detour_states"]
    out += [
        (f"Detour states: {', '.join(map(str, detours)) if detours else 'none'}. "
        f"The map is {'forking' if report['table1']['forking'] else 'linear'} (judged without one-checkpoint "
        "j → k → j flickers); trajectory dissimilarity is the mean "
        f"pairwise Wasserstein distance between runs' state distributions ({report['table1']['ground_metric']} ground metric)."),
        "",
        "## Training map",
        "",
    ]
    if "training_map" in fig:
        out += [f"![Training map]({fig['training_map']['png']})", ""]
    out += ["### States", "", STATES_NOTE, "", _md_table(*t["states"]), "", "### Edges", ""]
    out += [_md_table(*t["edges"]) if t["edges"][1] else NO_EDGES, ""]
    out += ["## Convergence and detour states", "", regression_sentence(report), "", _md_table(*t["regression"]), ""]
    for name, title in (
        ("regression_coefficients", "Regression coefficients"),
        ("convergence_histogram", "Convergence steps"),
        ("state_timeline", "State timeline"),
    ):
        if name in fig:
            out += [f"![{title}]({fig[name]['png']})", ""]
    out += ["## Model selection and baselines (paper Table 4 row)", ""]
    if t["table4"][1]:
        out += [
            _md_table(*t["table4"]),
            "",
            ("HMM: this fit's Gaussian HMM on all features; k-means: k-means clustering of the checkpoints; "
            "HMM-1: a Gaussian HMM on the L2 norm alone (the paper's appendix C baselines). "
            "BICs are comparable only within a model class."),
            "",
        ]
    if "selection_curves" in fig:
        out += [f"![BIC selection curves]({fig['selection_curves']['png']})", ""]
    else:
        out += ["The number of states was fixed, so there is no selection curve to show.", ""]
    out += ["## Feature glossary", "", GLOSSARY_NOTE, "", _md_table(*t["glossary"]), ""]
    if report.get("uncertainty"):
        u = report["uncertainty"]
        out += [f"## {uncertainty_title(u)}", "", uncertainty_sentence(u), ""]
        if "elbo" in fig:
            out += [f"![ELBO]({fig['elbo']['png']})", ""]
    if report.get("robustness"):
        out += robustness_markdown(report["robustness"], _md_table)
    if report.get("extra_runs"):
        out += extra_runs_markdown(report["extra_runs"], _md_table)
    out += ["---", "", f"Re-render with `python -m bayes_trainmap report <FITDIR>` (bayes_trainmap {report['package_version']}).", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------
