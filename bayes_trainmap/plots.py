"""Figures of the analysis (matplotlib; networkx for the training-map graph).

Every function takes ``ax=None`` (a new figure is made on a headless Agg canvas,
without pyplot's global state), draws, and returns what it drew; none calls
``plt.show()``. :func:`save_figure` writes PNG and SVG.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "new_axes",
    "save_figure",
    "state_colors",
    "map_layout",
    "plot_training_map",
    "plot_selection_curves",
    "plot_convergence_histogram",
    "plot_state_timeline",
    "plot_regression_coefficients",
    "plot_elbo",
]

DETOUR_COLOR = "#d95f02"
NODE_COLOR = "#7aa6c2"
INITIAL_EDGE = "#1b9e77"
FINAL_EDGE = "#4a1486"


def new_axes(figsize=(6.0, 4.0), ncols: int = 1):
    """A fresh figure on an Agg canvas (no pyplot state) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, (axes[0] if ncols == 1 else axes)


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


def state_colors(n_states: int) -> list:
    """One distinct colour per state (tab10, then tab20)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n_states <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n_states)]


def _edge_pairs(edges: pd.DataFrame) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in zip(edges["source"], edges["target"])]


def map_layout(states: Sequence[int], edges: Sequence[tuple[int, int]], initial: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Left-to-right layered layout: x = BFS depth from the initial states.

    Within a layer, nodes are ordered by the mean height of their predecessors
    (one barycentre pass), which keeps forks and their rejoins readable.

    Returns
    -------
    dict state -> (x, y)
    """
    states = list(states)
    succ: dict[int, list[int]] = {s: [] for s in states}
    pred: dict[int, list[int]] = {s: [] for s in states}
    for a, b in edges:
        if a != b and a in succ and b in succ:
            succ[a].append(b)
            pred[b].append(a)
    depth: dict[int, int] = {}
    queue = deque()
    for s in initial:
        if s in succ and s not in depth:
            depth[s] = 0
            queue.append(s)
    while queue:
        v = queue.popleft()
        for w in sorted(succ[v]):
            if w not in depth:
                depth[w] = depth[v] + 1
                queue.append(w)
    last = max(depth.values(), default=-1)
    for s in states:  # states not reachable from a start (not expected for decoded paths)
        if s not in depth:
            last += 1
            depth[s] = last
    layers: dict[int, list[int]] = {}
    for s in states:
        layers.setdefault(depth[s], []).append(s)
    pos: dict[int, tuple[float, float]] = {}
    for d in sorted(layers):
        nodes = layers[d]
        key = {}
        for s in nodes:
            ys = [pos[p][1] for p in pred[s] if p in pos]
            key[s] = (np.mean(ys) if ys else 0.0, s)
        nodes = sorted(nodes, key=lambda s: key[s])
        ys = np.linspace((len(nodes) - 1) / 2, -(len(nodes) - 1) / 2, len(nodes))
        for s, y in zip(nodes, ys):
            pos[s] = (float(d), float(y))
    return pos


def _edge_text(row, max_features: int = 3) -> str:
    from bayes_trainmap.training_map import format_change

    lines = [format_change(f, c) for f, c in list(zip(row["top_features"], row["mean_change"]))[:max_features]]
    runs = int(row["n_runs"])
    lines.append(f"{runs} run{'s' if runs != 1 else ''}, p={row['trans_prob']:.3f}")
    if np.isfinite(row.get("conv_mean", np.nan)):
        sd = row.get("conv_sd", np.nan)
        conv = f"{row['conv_mean']:.0f}" + (f" ± {sd:.0f}" if np.isfinite(sd) else "")
        lines.append(f"conv. {conv}")
    return "\n".join(lines)


def plot_training_map(
    training_map,
    *,
    detour_states: Sequence[int] = (),
    uncertainty: Mapping | None = None,
    ax=None,
    show_labels: bool = True,
):
    """Draw the training map.

    Nodes: one per visited state, area proportional to occupancy; detour states
    in orange; initial states with a green ring, final states with a purple one.
    Edges: the pruned transitions, labelled with the top features (the paper's
    "L2 ↓ 0.59"), the number of runs using them, the transition probability and
    the mean ± SD convergence step of those runs. With ``uncertainty`` (Bayesian
    modes) each edge's opacity is its posterior probability of existing and edges
    with ``p_exists < 0.5`` are dashed.

    Parameters
    ----------
    training_map : bayes_trainmap.training_map.TrainingMap
    detour_states : sequence of int
    uncertainty : dict, optional
        ``Analysis.uncertainty``.
    ax : matplotlib Axes, optional
    show_labels : bool
        Draw the edge labels.

    Returns
    -------
    dict
        ``{"nodes", "edges", "node_labels", "edge_labels", "positions"}``.
    """
    import networkx as nx

    if ax is None:
        states_df = training_map.states
        n_layers = max(2, len(states_df))
        _, ax = new_axes(figsize=(min(3.3 * n_layers, 22), 5.5))
    states = training_map.states
    visited = states.loc[states["n_runs"] > 0]
    nodes = [int(s) for s in visited["state"]]
    edges = training_map.edges
    pairs = _edge_pairs(edges)
    pos = map_layout(nodes, pairs, training_map.initial_states)
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(pairs)

    occupancy = dict(zip(visited["state"].astype(int), visited["occupancy"].astype(float)))
    sizes = [300 + 5000 * occupancy[s] for s in nodes]
    detours = set(int(s) for s in detour_states)
    colors = [DETOUR_COLOR if s in detours else NODE_COLOR for s in nodes]
    initial, final = set(training_map.initial_states), set(training_map.final_states)
    ring = [INITIAL_EDGE if s in initial else (FINAL_EDGE if s in final else "white") for s in nodes]
    widths = [3.0 if (s in initial or s in final) else 1.0 for s in nodes]
    node_artist = nx.draw_networkx_nodes(
        graph, pos, nodelist=nodes, node_size=sizes, node_color=colors, edgecolors=ring, linewidths=widths, ax=ax
    )
    node_labels = nx.draw_networkx_labels(
        graph, pos, labels={s: f"{s}\n{100 * occupancy[s]:.0f}%" for s in nodes}, font_size=9, ax=ax
    )

    p_exists = {}
    if uncertainty:
        p_exists = {(int(e["source"]), int(e["target"])): float(e["p_exists"]) for e in uncertainty.get("edges", [])}
    edge_artists = []
    reciprocal = {(a, b) for a, b in pairs if (b, a) in set(pairs)}
    for a, b in pairs:
        backward = pos[b][0] <= pos[a][0]
        rad = 0.25 if ((a, b) in reciprocal or backward) else 0.0
        alpha = p_exists.get((a, b), 1.0)
        style = "dashed" if p_exists and alpha < 0.5 else "solid"
        artist = nx.draw_networkx_edges(
            graph,
            pos,
            edgelist=[(a, b)],
            ax=ax,
            arrows=True,
            arrowstyle="-|>",
            arrowsize=16,
            width=1.6,
            alpha=max(alpha, 0.15),
            style=style,
            connectionstyle=f"arc3,rad={rad}",
            nodelist=nodes,
            node_size=sizes,
        )
        edge_artists.extend(artist if isinstance(artist, list) else [artist])

    edge_labels = {}
    if show_labels and len(edges):
        labels = {(int(r["source"]), int(r["target"])): _edge_text(r) for _, r in edges.iterrows()}
        for (a, b), text in labels.items():
            if p_exists:
                text += f"\nP(edge)={p_exists.get((a, b), float('nan')):.2f}"
            (xa, ya), (xb, yb) = pos[a], pos[b]
            # Label at the middle of the edge, nudged off the line for curved edges.
            backward = xb <= xa
            off = 0.18 if ((a, b) in reciprocal or backward) else 0.0
            x, y = (xa + xb) / 2, (ya + yb) / 2 + off
            edge_labels[(a, b)] = ax.text(
                x,
                y,
                text,
                fontsize=7,
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "alpha": 0.9},
                zorder=5,
            )
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_axis_off()
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", ms=10, mfc=NODE_COLOR, mec="white", label="state (size: occupancy)"),
        Line2D([], [], marker="o", ls="", ms=10, mfc=DETOUR_COLOR, mec="white", label="detour state"),
        Line2D([], [], marker="o", ls="", ms=10, mfc="none", mec=INITIAL_EDGE, mew=2.5, label="initial state"),
        Line2D([], [], marker="o", ls="", ms=10, mfc="none", mec=FINAL_EDGE, mew=2.5, label="final state"),
    ]
    legend = ax.legend(handles=handles, loc="lower left", fontsize=7, frameon=False, ncol=4, bbox_to_anchor=(0, -0.08))
    ax.set_title("Training map", fontsize=11)
    return {
        "nodes": node_artist,
        "edges": edge_artists,
        "node_labels": node_labels,
        "edge_labels": edge_labels,
        "positions": pos,
        "legend": legend,
    }


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
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=6 if len(order) > 20 else 8)
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
