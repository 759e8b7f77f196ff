"""Figures of the analysis (matplotlib; networkx for the training-map graph).

Every function takes ``ax=None`` (a new figure is made on a headless Agg canvas,
without pyplot's global state), draws, and returns what it drew; none calls
``plt.show()``. :func:`save_figure` writes PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_trainmap.analysis.training_map import format_change

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

DETOUR_COLOR = "#c0392b"
NODE_COLOR = "#7aa6c2"


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


@dataclass
class MapLayout:
    """Positions of a layered training-map drawing.

    Attributes
    ----------
    positions : dict state -> (x, y)
        x is the layer (longest path from the initial states, back edges ignored).
    routes : dict (j, k) -> list of (x, y)
        Bend points of edges spanning more than one layer (one per skipped layer).
    back_edges : set of (j, k)
        Edges that close a cycle (drawn curved).
    """

    positions: dict[int, tuple[float, float]]
    routes: dict[tuple[int, int], list[tuple[float, float]]]
    back_edges: set[tuple[int, int]]


def _back_edges(graph, roots: Sequence[int]) -> set[tuple[int, int]]:
    """Edges ``u -> v`` that close a cycle in a depth-first search from ``roots``.

    An edge is a back edge when its target is still on the search stack. Removing
    every back edge leaves a DAG, however many (possibly overlapping) cycles the
    map has; successors are visited in sorted order so the layout is deterministic.
    """
    back: set[tuple[int, int]] = set()
    on_stack: set[int] = set()
    finished: set[int] = set()
    for root in roots:
        if root in on_stack or root in finished:
            continue
        on_stack.add(root)
        stack = [(root, iter(sorted(graph.successors(root))))]
        while stack:
            u, children = stack[-1]
            v = next(children, None)
            if v is None:
                stack.pop()
                on_stack.discard(u)
                finished.add(u)
            elif v in on_stack:
                back.add((u, v))
            elif v not in finished:
                on_stack.add(v)
                stack.append((v, iter(sorted(graph.successors(v)))))
    return back


def map_layout(states: Sequence[int], edges: Sequence[tuple[int, int]], initial: Sequence[int]) -> MapLayout:
    """Left-to-right layered layout of a training map (a small Sugiyama layout).

    1. Edges closing a cycle (back edges of a depth-first search from the
       initial states) are set aside; the rest form a DAG.
    2. Layer = longest path from a root, so a detour sits in its own layer
       between the fork and the rejoin.
    3. An edge skipping layers gets a bend point in every skipped layer, which
       takes part in the ordering, so it is routed around the states it skips.
    4. Within a layer, nodes and bend points are ordered by the mean height of
       their predecessors (one barycentre pass) and spread evenly around 0.

    Returns
    -------
    MapLayout
    """
    import networkx as nx

    states = [int(s) for s in states]
    pairs = [(int(a), int(b)) for a, b in edges if a != b and a in states and b in states]
    graph = nx.DiGraph()
    graph.add_nodes_from(states)
    graph.add_edges_from(pairs)
    roots = [s for s in initial if s in graph] or sorted(states)[:1]
    back = _back_edges(graph, roots + sorted(states))
    dag = nx.DiGraph()
    dag.add_nodes_from(states)
    dag.add_edges_from(e for e in pairs if e not in back)
    layer: dict[int, int] = {}
    for v in nx.topological_sort(dag):
        preds = list(dag.predecessors(v))
        layer[v] = 1 + max(layer[u] for u in preds) if preds else 0

    # Slots per layer: real nodes plus one bend point per skipped layer of each long edge.
    slots: dict[int, list] = {}
    preds_of: dict = {}
    for v in states:
        slots.setdefault(layer[v], []).append(v)
        preds_of[v] = list(dag.predecessors(v))
    for u, v in sorted(dag.edges()):
        prev = u
        for depth in range(layer[u] + 1, layer[v]):
            dummy = ("bend", u, v, depth)
            slots.setdefault(depth, []).append(dummy)
            preds_of[dummy] = [prev]
            prev = dummy
        if layer[v] - layer[u] > 1:
            preds_of[v] = [prev if p == u else p for p in preds_of[v]]
    pos: dict = {}
    for depth in sorted(slots):
        items = slots[depth]
        key = {}
        for item in items:
            ys = [pos[p][1] for p in preds_of[item] if p in pos]
            # Real states before bend points at equal height: long edges go round them.
            key[item] = (-(np.mean(ys) if ys else 0.0), isinstance(item, tuple), str(item))
        items = sorted(items, key=lambda i: key[i])
        ys = np.linspace((len(items) - 1) / 2, -(len(items) - 1) / 2, len(items))
        for item, y in zip(items, ys):
            pos[item] = (float(depth), float(y))
    positions = {s: pos[s] for s in states}
    routes = {}
    for u, v in dag.edges():
        bends = [pos[("bend", u, v, d)] for d in range(layer[u] + 1, layer[v])]
        if bends:
            routes[(u, v)] = bends
    return MapLayout(positions, routes, back)


def _edge_text(row, max_features: int = 3) -> str:
    lines = [format_change(f, c) for f, c in list(zip(row["top_features"], row["mean_change"]))[:max_features]]
    runs = int(row["n_runs"])
    lines.append(f"{runs} run{'s' if runs != 1 else ''}, p({int(row['target'])}|{int(row['source'])})={row['trans_prob']:.3f}")
    if np.isfinite(row.get("conv_mean", np.nan)):
        sd = row.get("conv_sd", np.nan)
        conv = f"{row['conv_mean']:.0f}" + (f" ± {sd:.0f}" if np.isfinite(sd) else "")
        lines.append(f"converge at {conv}")
    return "\n".join(lines)


def _bezier_mid(p0, p1, rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's ``arc3`` curve from p0 to p1 (in data units)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    return (x0 + x1) / 2 + 0.5 * rad * dy, (y0 + y1) / 2 - 0.5 * rad * dx


def plot_training_map(
    training_map,
    *,
    detour_states: Sequence[int] = (),
    uncertainty: Mapping | None = None,
    ax=None,
    show_labels: bool = True,
):
    """Draw the training map.

    Nodes: one per visited state, area proportional to occupancy, filled with the
    state's colour (the same as in :func:`plot_state_timeline`); detour states
    get a thick red ring and the tag "DETOUR"; initial and final states are
    tagged "start" and "end".
    Edges: the pruned transitions, labelled with the top features (the paper's
    "L2 ↓ 0.59"), the number of runs using them, the transition probability and
    the mean ± SD convergence step of those runs. Layout: :func:`map_layout`
    (left to right from the initial states). With ``uncertainty`` (Bayesian
    modes) each edge's opacity is its posterior probability of existing, edges
    with ``p_exists < 0.5`` are dashed, and transitions that only posterior draws
    use are added as dotted grey arrows labelled with that probability.

    Parameters
    ----------
    training_map : bayes_trainmap.analysis.training_map.TrainingMap
    detour_states : sequence of int
    uncertainty : dict, optional
        ``Analysis.uncertainty``.
    ax : matplotlib Axes, optional
    show_labels : bool
        Draw the edge labels.

    Returns
    -------
    dict
        ``{"nodes", "edges", "node_labels", "edge_labels", "layout", "legend"}``.
    """
    import networkx as nx
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    states = training_map.states
    visited = states.loc[states["n_runs"] > 0]
    nodes = [int(s) for s in visited["state"]]
    edges = training_map.edges
    pairs = _edge_pairs(edges)
    layout = map_layout(nodes, pairs, training_map.initial_states)
    pos = layout.positions
    all_points = list(pos.values()) + [p for bends in layout.routes.values() for p in bends]
    n_layers = len({x for x, _ in all_points}) or 1
    max_layer = max([sum(1 for p in all_points if p[0] == x) for x, _ in all_points], default=1)
    if ax is None:
        _, ax = new_axes(figsize=(min(1.4 + 2.6 * n_layers, 24), 2.1 + 1.6 * max_layer))
    xs = [p[0] for p in all_points] or [0.0]
    ys = [p[1] for p in all_points] or [0.0]
    ax.set_xlim(min(xs) - 0.45, max(xs) + 0.45)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.45)
    ax.set_axis_off()

    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    occupancy = dict(zip(visited["state"].astype(int), visited["occupancy"].astype(float)))
    colors = state_colors(len(states))
    sizes = {s: 350 + 5000 * occupancy[s] for s in nodes}
    detours = {int(s) for s in detour_states}
    initial, final = set(training_map.initial_states), set(training_map.final_states)
    node_artist = nx.draw_networkx_nodes(
        graph,
        pos,
        nodelist=nodes,
        node_size=[sizes[s] for s in nodes],
        node_color=[colors[s] for s in nodes],
        edgecolors=[DETOUR_COLOR if s in detours else "white" for s in nodes],
        linewidths=[4.0 if s in detours else 1.0 for s in nodes],
        ax=ax,
    )
    node_artist.set_zorder(3)
    node_labels = nx.draw_networkx_labels(
        graph, pos, labels={s: f"{s}" for s in nodes}, font_size=11, font_weight="bold", ax=ax
    )
    for text in node_labels.values():
        text.set_zorder(4)
    for s in nodes:  # occupancy and role under the node
        tags = [f"{100 * occupancy[s]:.0f}%"] + [t for t, on in (("start", s in initial), ("end", s in final)) if on]
        radius_pts = np.sqrt(sizes[s]) / 2
        ax.annotate(
            " · ".join(tags) + ("\nDETOUR" if s in detours else ""),
            pos[s],
            xytext=(0, -radius_pts - 3),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=8.5,
            color=DETOUR_COLOR if s in detours else "0.25",
            fontweight="bold" if s in detours else "normal",
            zorder=4,
        )

    p_exists = {}
    if uncertainty:
        p_exists = {(int(e["source"]), int(e["target"])): float(e["p_exists"]) for e in uncertainty.get("edges", [])}
    pair_set = set(pairs)
    edge_artists, label_at = [], {}
    for a, b in pairs:
        alpha = max(p_exists.get((a, b), 1.0), 0.15)
        style = "--" if p_exists and p_exists.get((a, b), 1.0) < 0.5 else "-"
        points = [pos[a], *layout.routes.get((a, b), []), pos[b]]
        curved = (a, b) in layout.back_edges or (b, a) in pair_set
        rad = 0.3 if curved else 0.0
        for p, q in zip(points[:-2], points[1:-1]):  # bends: plain segments
            (line,) = ax.plot([p[0], q[0]], [p[1], q[1]], color="black", lw=1.6, alpha=alpha, ls=style, zorder=1)
            edge_artists.append(line)
        # Shrink the arrow by the node radii (marker area is in points^2).
        shrink_a = np.sqrt(sizes[a]) / 2 + 2 if len(points) == 2 else 0
        arrow = FancyArrowPatch(
            points[-2],
            points[-1],
            arrowstyle="-|>",
            mutation_scale=16,
            lw=1.6,
            color="black",
            alpha=alpha,
            linestyle=style,
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=shrink_a,
            shrinkB=np.sqrt(sizes[b]) / 2 + 2,
            zorder=2,
        )
        ax.add_patch(arrow)
        edge_artists.append(arrow)
        if len(points) > 2:
            label_at[(a, b)] = points[len(points) // 2] if len(points) % 2 else (
                (points[len(points) // 2 - 1][0] + points[len(points) // 2][0]) / 2,
                (points[len(points) // 2 - 1][1] + points[len(points) // 2][1]) / 2,
            )
        else:
            label_at[(a, b)] = _bezier_mid(points[0], points[1], rad)

    # Posterior-only edges (Bayesian modes): transitions some posterior draws use but
    # the point estimate's Viterbi paths do not; dotted grey, opacity = P(edge).
    extra = [(a, b) for (a, b) in p_exists if (a, b) not in pair_set and a in pos and b in pos and a != b]
    for a, b in extra:
        arrow = FancyArrowPatch(
            pos[a],
            pos[b],
            arrowstyle="-|>",
            mutation_scale=12,
            lw=1.2,
            color="0.45",
            alpha=max(p_exists[(a, b)], 0.15),
            linestyle=":",
            connectionstyle="arc3,rad=0.25",
            shrinkA=np.sqrt(sizes[a]) / 2 + 2,
            shrinkB=np.sqrt(sizes[b]) / 2 + 2,
            zorder=1,
        )
        ax.add_patch(arrow)
        edge_artists.append(arrow)
        label_at[(a, b)] = _bezier_mid(pos[a], pos[b], 0.25)

    edge_labels = {}
    if show_labels:
        for a, b in extra:
            x, y = label_at[(a, b)]
            edge_labels[(a, b)] = ax.text(
                x, y, f"P(edge)={p_exists[(a, b)]:.2f}", fontsize=7, color="0.35", ha="center", va="center", zorder=5
            )
    if show_labels and len(edges):
        for _, row in edges.iterrows():
            key = (int(row["source"]), int(row["target"]))
            text = _edge_text(row)
            if p_exists:
                text += f"\nP(edge)={p_exists.get(key, float('nan')):.2f}"
            x, y = label_at[key]
            (xa, ya), (xb, yb) = pos[key[0]], pos[key[1]]
            # Straight horizontal edges: label above the line so the arrow stays visible.
            above = ya == yb and key not in layout.routes and label_at[key] == ((xa + xb) / 2, ya)
            edge_labels[key] = ax.text(
                x,
                y + (0.05 if above else 0.0),
                text,
                fontsize=8,
                ha="center",
                va="bottom" if above else "center",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "alpha": 0.92},
                zorder=5,
            )
    handles = [
        Line2D([], [], marker="o", ls="", ms=10, mfc=NODE_COLOR, mec="white", label="state (area: share of checkpoints)"),
        Line2D([], [], marker="o", ls="", ms=10, mfc="none", mec=DETOUR_COLOR, mew=3, label="detour state"),
        Line2D([], [], ls="-", color="black", label="transition used by >= 1 run (label: top features, runs, p(k|j), convergence)"),
    ]
    legend = ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False, ncol=3, bbox_to_anchor=(0, -0.06))
    ax.set_title("Training map", fontsize=11)
    return {
        "nodes": node_artist,
        "edges": edge_artists,
        "node_labels": node_labels,
        "edge_labels": edge_labels,
        "layout": layout,
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
