"""The report's figures, written into a fit directory's ``figures/``."""

from __future__ import annotations

import logging
from pathlib import Path

from bayes_trainmap.analysis import Analysis
from bayes_trainmap.analysis.baselines import hmm_selection_from_curve
from bayes_trainmap.data.fitdir import FitDirectory
from bayes_trainmap.report import plots
from bayes_trainmap.report.data import hmm_curve
from bayes_trainmap.report.map_layout import first_arrival

logger = logging.getLogger(__name__)

def write_figures(fd: FitDirectory, analysis: Analysis) -> dict[str, dict[str, str]]:
    """Draw every report figure into ``fd``'s ``figures/``; ``{name: {"png", "svg": relative path}}``."""
    out_dir = fd.figures_dir
    written: dict[str, dict[str, str]] = {}

    def save(name, fig):
        paths = plots.save_figure(fig, out_dir, name)
        written[name] = {ext: str(Path(p).relative_to(fd.path)) for ext, p in paths.items()}

    unc = analysis.uncertainty
    tm = plots.plot_training_map(
        analysis.training_map, detour_states=analysis.detour_states, uncertainty=unc, arrival=first_arrival(fd.decoded)
    )
    save("training_map", tm["figure"])

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
    curve = hmm_curve(fd)
    if curve is not None and len(curve):
        sel = hmm_selection_from_curve(curve)
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


