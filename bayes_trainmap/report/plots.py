"""Figures of the analysis (matplotlib; the training map is drawn by :mod:`bayes_trainmap.report.map_figure`).

Every function takes ``ax=None`` (a new figure is made on a headless Agg canvas,
without pyplot's global state), draws, and returns what it drew; none calls
``plt.show()``. :func:`save_figure` writes PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trainmap.report.canvas import new_axes, state_colors
from bayes_trainmap.report.map_figure import DETOUR_COLOR, NODE_COLOR, plot_training_map
from bayes_trainmap.report.map_layout import MapLayout, map_layout

__all__ = [
    "new_axes",
    "save_figure",
    "state_colors",
    "MapLayout",
    "map_layout",
    "plot_training_map",
    "plot_selection_curves",
    "plot_convergence_histogram",
    "plot_state_timeline",
    "plot_regression_coefficients",
    "plot_elbo",
]


def save_figure(fig, directory: str | Path, name: str) -> dict[str, str]:
    """Save ``fig`` as ``<directory>/<name>.png`` and ``.svg``; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext in ("png", "svg"):
        path = directory / f"{name}.{ext}"
        fig.savefig(path, bbox_inches="tight", **({"metadata": {"Date": None}} if ext == "svg" else {}))
        out[ext] = str(path)
    return out


def plot_selection_curves(curves: Mapping[str, pd.DataFrame], chosen: Mapping[str, int] | None = None, ax=None):
    """BIC against the number of components, one panel per model class.

    BICs are not comparable across model classes, so each class gets its own axes.

    Parameters
    ----------
    curves : mapping model name -> DataFrame with ``n_components`` and ``bic``
    chosen : mapping model name -> chosen number of components, optional
    ax : sequence of Axes (one per model), optional

    Returns
    -------
    list of matplotlib Line2D
    """
    names = list(curves)
    if ax is None:
        _, ax = new_axes(figsize=(3.6 * max(len(names), 1), 3.2), ncols=max(len(names), 1))
    axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) < len(names):
        raise ValueError(f"need {len(names)} axes (one per model class), got {len(axes)}")
    lines = []
    for axis, name in zip(axes, names):
        curve = curves[name].sort_values("n_components")
        (line,) = axis.plot(curve["n_components"], curve["bic"], marker="o", color="C0")
        lines.append(line)
        if chosen and name in chosen:
            best = curve.loc[curve["n_components"] == chosen[name]]
            axis.scatter(best["n_components"], best["bic"], s=130, facecolors="none", edgecolors="C3", zorder=3)
            axis.set_title(f"{name}: chosen {chosen[name]}", fontsize=10)
        else:
            axis.set_title(name, fontsize=10)
        axis.set_xlabel("components")
        axis.set_xticks(list(curve["n_components"]))
    axes[0].set_ylabel("held-out BIC")
    return lines


def plot_convergence_histogram(steps: pd.Series, *, n_never: int = 0, threshold=None, outcome: str = "", ax=None):
    """Histogram of convergence steps of the converged runs.

    Returns
    -------
    tuple
        ``(counts, bin_edges, patches)`` as returned by ``Axes.hist``.
    """
    if ax is None:
        _, ax = new_axes(figsize=(5.5, 3.2))
    values = pd.Series(steps, dtype=float).dropna().to_numpy()
    bins = min(20, max(5, int(np.sqrt(max(values.size, 1))) * 2))
    result = ax.hist(values, bins=bins, color=NODE_COLOR, edgecolor="white")
    ax.set_xlabel("convergence step")
    ax.set_ylabel("runs")
    crit = f" ({outcome} crosses {threshold:g})" if threshold is not None and outcome else ""
    title = f"Convergence{crit}"
    if n_never:
        title += f"; {n_never} run(s) never converged"
    ax.set_title(title, fontsize=10)
    return result


def plot_state_timeline(decoded: pd.DataFrame, convergence: pd.Series, n_states: int, *, detour_states=(), ax=None):
    """One row per run coloured by Viterbi state, sorted by convergence step.

    Runs that never converged are drawn last (at the bottom); a black bar marks
    each run's convergence step.

    Parameters
    ----------
    decoded : DataFrame with ``run``, ``step``, ``state``
    convergence : Series run -> convergence step (NaN if never)
    n_states : int
    detour_states : sequence of int
        Named in the legend.

    Returns
    -------
    dict
        ``{"bars": [BrokenBarHCollection...], "markers": PathCollection | None, "order": [run ids]}``.
    """
    runs = list(dict.fromkeys(decoded["run"].astype(str)))
    if ax is None:
        _, ax = new_axes(figsize=(8.0, max(2.5, 0.14 * len(runs) + 1.2)))
    conv = pd.Series(convergence, dtype=float).reindex(runs)
    order = sorted(runs, key=lambda r: (np.isnan(conv[r]), conv[r] if np.isfinite(conv[r]) else 0.0, r))
    colors = state_colors(n_states)
    bars = []
    grouped = {r: g for r, g in decoded.assign(run=decoded["run"].astype(str)).groupby("run", sort=False)}
    for row, run in enumerate(order):
        g = grouped[run]
        steps = g["step"].to_numpy(dtype=float)
        states = g["state"].to_numpy(dtype=int)
        # Segment boundaries halfway between checkpoints.
        edges = np.concatenate([[steps[0]], (steps[1:] + steps[:-1]) / 2, [steps[-1]]])
        change = np.flatnonzero(np.diff(states)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [states.size]])
        for state in np.unique(states):
            segs = [(edges[s], edges[e] - edges[s]) for s, e in zip(starts, ends) if states[s] == state]
            bars.append(ax.broken_barh(segs, (row - 0.42, 0.84), facecolors=colors[state], linewidth=0))
    finite = [(conv[r], i) for i, r in enumerate(order) if np.isfinite(conv[r])]
    markers = None
    if finite:
        xs, ys = zip(*finite)
        markers = ax.scatter(xs, ys, marker="|", s=60, color="black", linewidths=1.5, zorder=3, label="convergence")
    ax.set_ylim(len(order) - 0.5, -0.5)
    every = max(1, int(np.ceil(len(order) / 60)))  # at most ~60 run names
    ax.set_yticks(range(0, len(order), every))
    ax.set_yticklabels(order[::every], fontsize=6 if len(order) > 20 else 8)
    ax.set_xlabel("step")
    ax.set_title("Viterbi states per run (sorted by convergence step)", fontsize=10)
    from matplotlib.patches import Patch

    detours = set(int(s) for s in detour_states)
    used = sorted(int(s) for s in decoded["state"].unique())
    handles = [Patch(color=colors[s], label=f"state {s}" + (" (detour)" if s in detours else "")) for s in used]
    if markers is not None:
        handles.append(markers)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return {"bars": bars, "markers": markers, "order": order}


def plot_regression_coefficients(table: pd.DataFrame, *, uncertainty: Mapping | None = None, ax=None):
    """Forest plot of the per-state convergence coefficients with 95 % intervals.

    Parameters
    ----------
    table : DataFrame
        ``RegressionResult.table()``: ``state, coefficient, ci_low, ci_high, detour``.
    uncertainty : dict, optional
        Adds the posterior median and credible interval of each coefficient.

    Returns
    -------
    list of matplotlib containers (errorbar)
    """
    table = table.dropna(subset=["coefficient"]).reset_index(drop=True)
    if ax is None:
        _, ax = new_axes(figsize=(5.5, 0.45 * max(len(table), 2) + 1.4))
    y = np.arange(len(table), dtype=float)
    drawn = []
    for i, row in table.iterrows():
        color = DETOUR_COLOR if bool(row["detour"]) else "C0"
        err = [[row["coefficient"] - row["ci_low"]], [row["ci_high"] - row["coefficient"]]]
        drawn.append(ax.errorbar(row["coefficient"], y[i], xerr=err, fmt="o", color=color, capsize=3))
    if uncertainty and uncertainty.get("states"):
        post = {int(s["state"]): s for s in uncertainty["states"]}
        level = uncertainty.get("interval", 0.9)
        first = True
        for i, row in table.iterrows():
            s = post.get(int(row["state"]))
            if s is None or s.get("coef_median") is None:
                continue
            med = s["coef_median"]
            err = [[med - s["coef_lo"]], [s["coef_hi"] - med]]
            drawn.append(
                ax.errorbar(
                    med, y[i] + 0.25, xerr=err, fmt="s", color="0.35", capsize=3, ms=4,
                    label=f"posterior {int(100 * level)}% interval" if first else None,
                )
            )
            first = False
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([f"state {int(s)}" + (" (detour)" if d else "") for s, d in zip(table["state"], table["detour"])])
    ax.invert_yaxis()
    ax.set_xlabel("coefficient (SD of convergence step per unit occupancy)")
    ax.set_title("Convergence-time regression, 95% CI", fontsize=10)
    if uncertainty and uncertainty.get("states"):
        ax.legend(fontsize=7, frameon=False)
    return drawn


def plot_elbo(elbo: Sequence[float], ax=None):
    """SVI objective trace (ELBO per iteration)."""
    if ax is None:
        _, ax = new_axes(figsize=(5.0, 3.0))
    (line,) = ax.plot(np.arange(1, len(elbo) + 1), np.asarray(elbo, dtype=float), color="C0")
    ax.set_xlabel("iteration")
    ax.set_ylabel("ELBO")
    ax.set_title("SVI convergence", fontsize=10)
    return line
