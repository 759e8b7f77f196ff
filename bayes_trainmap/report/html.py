"""``report.html``: one self-contained file (figures inlined, no external reference)."""

from __future__ import annotations

import base64
import html
import logging
from importlib import resources
from pathlib import Path
from string import Template

from bayes_trainmap.report import html_map
from bayes_trainmap.report.extra_runs import extra_runs_html
from bayes_trainmap.report.glossary import GLOSSARY_NOTE
from bayes_trainmap.report.robustness import (
    robustness_html,
    uncertainty_sentence,
    uncertainty_title,
)
from bayes_trainmap.report.text import (
    NO_EDGES,
    STATES_NOTE,
    fmt,
    fmt_p,
    headline,
    regression_sentence,
    report_tables,
)

logger = logging.getLogger(__name__)

def _html_table(
    header: list[str], rows: list[list[str]], *, text_cols=(), detour_col: int | None = None, row_attrs=None
) -> str:
    def cls(i):
        return ' class="text"' if i in text_cols else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = []
    for i, r in enumerate(rows):
        tr = ' class="detour"' if detour_col is not None and r[detour_col] == "DETOUR" else ""
        if row_attrs is not None:
            tr += f" {row_attrs[i]}"
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


MAP_CAPTION = (
    "Nodes are latent states (area ∝ share of checkpoints), left to right by when runs first reach them; "
    "edges are transitions used by at least one run's Viterbi path, labelled with their key (the first column "
    "of the edge table), the runs using the edge, p(k|j), the three features most influential for the target "
    "state (change of mean in z-units, ↑/↓) and the mean ± SD convergence step of those runs; dense maps show "
    "only the keys."
)


def _map_figure(fd_path: Path, files: dict | None, report: dict) -> str:
    """The interactive inline-SVG map, or the PNG when the SVG is missing."""
    if not files:
        return ""
    svg = fd_path / files.get("svg", "")
    if files.get("svg") and svg.is_file():
        return html_map.interactive_map_html(report, svg.read_text(encoding="utf-8"), MAP_CAPTION)
    return _img(fd_path, files, "training map", MAP_CAPTION)


def render_html(report: dict, fit_dir) -> str:
    """Self-contained ``report.html``: inline CSS, figures as base64 PNG, the training map as inline SVG
    with a small inline script (:mod:`bayes_trainmap.report.html_map`); no external references."""
    fd_path = Path(fit_dir)
    t = report_tables(report)
    fig = report["figures"]
    t1 = report["table1"]
    e = html.escape
    parts = [
        "<h1>Training map report</h1>",
        f'<p class="lead">{e(headline(report))}</p>',
        '<nav><a href="#summary">Summary</a><a href="#map">Training map</a><a href="#detours">Detours</a>'
        '<a href="#timeline">Timeline</a><a href="#selection">Model selection</a><a href="#glossary">Glossary</a>'
        + ('<a href="#posterior">Uncertainty</a>' if report.get("uncertainty") else "")
        + ('<a href="#robustness">Robustness</a>' if report.get("robustness") else "")
        + ('<a href="#extra-runs">Extra runs</a>' if report.get("extra_runs") else "")
        + "</nav>",
    ]
    parts += [f'<div class="warning"><strong>Warning:</strong> {e(w)}</div>' for w in report["warnings"]]
    detours = report["detour_states"]
    kpis = [
        ("R²", fmt(t1["r_squared"])),
        ("regression p-value", fmt_p(t1["p_value"])),
        ("trajectory dissimilarity", fmt(t1["dissimilarity"])),
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
        ('<p class="note">The paper\'s Table 1 row: how well occupancy of the states predicts convergence time (R², '
        "F-test p-value), the mean pairwise Wasserstein distance between runs' state distributions "
        f"({e(t1['ground_metric'])} ground metric), and whether the map forks.</p>"),
        _html_table(*t["table1"]),
        '<h2 id="map">Training map</h2>',
        _map_figure(fd_path, fig.get("training_map"), report),
        "<h3>States</h3>",
        f'<p class="note">{e(STATES_NOTE)}</p>',
        _html_table(*t["states"], text_cols=(4, 5), detour_col=8, row_attrs=html_map.state_row_attrs(report)),
        "<h3>Edges</h3>",
        _html_table(*t["edges"], text_cols=(1, 5), row_attrs=html_map.edge_row_attrs(report))
        if t["edges"][1]
        else f"<p>{e(NO_EDGES)}</p>",
        '<h2 id="detours">Convergence and detour states</h2>',
        f"<p>{e(regression_sentence(report))}</p>",
        _html_table(*t["regression"], detour_col=6),
        _img(fd_path, fig.get("regression_coefficients"), "regression coefficients", "Per-state coefficients with 95% confidence intervals; detour states in red."),
        _img(fd_path, fig.get("convergence_histogram"), "convergence histogram", "Distribution of convergence steps over the converged runs."),
        '<h2 id="timeline">State timeline</h2>',
        _img(fd_path, fig.get("state_timeline"), "state timeline", "One row per run, coloured by Viterbi state, sorted by convergence step (black tick). Runs that never converged are at the bottom."),
        '<h2 id="selection">Model selection and baselines</h2>',
        ('<p class="note">The paper\'s Table 4 row: components chosen by held-out BIC and the BIC of the chosen '
        "model, for the full HMM and the k-means and HMM-1 (L2 norm only) baselines. BICs are comparable only "
        "within a model class.</p>"),
        _html_table(*t["table4"], text_cols=(0,)) if t["table4"][1] else "<p>No baselines were computed.</p>",
        "" if fig.get("selection_curves") else '<p class="note">The number of states was fixed, so there is no selection curve to show.</p>',
        _img(fd_path, fig.get("selection_curves"), "selection curves", "Held-out BIC against the number of components; the chosen value is circled."),
        '<h2 id="glossary">Feature glossary</h2>',
        f'<p class="note">{e(GLOSSARY_NOTE)}</p>',
        _html_table(*t["glossary"], text_cols=(0, 1, 2)),
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
    if report.get("extra_runs"):
        parts += extra_runs_html(report["extra_runs"], _html_table)
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
