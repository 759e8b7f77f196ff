"""The training-map figure: a layered state diagram whose labels never collide.

States are laid out by :func:`bayes_trainmap.report.map_layout.map_layout` (left to
right by when runs first reach them); edges are smooth curves through their
bend points, so long edges go round the states they skip and ``j -> k`` /
``k -> j`` pairs are drawn apart. Every label -- the occupancy tag under each
state and the label of each edge -- is placed by
:func:`bayes_trainmap.report.label_placement.place_labels` so that it overlaps no
other label, no state and no edge other than its own. If the full edge labels
do not fit (or the map has many edges), edges carry their short keys
(``e1``, ``e2``, ... from :func:`~bayes_trainmap.report.map_layout.edge_keys`, the
first column of the report's edge table) and the figure grows until every key
fits.

Artists carry SVG ids (``tm-state-<k>``, ``tm-edge-<key>`` and the same with
``-label``/``-tag``) that the interactive HTML report uses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from bayes_trainmap.analysis.training_map import format_change
from bayes_trainmap.report.canvas import new_axes, state_colors
from bayes_trainmap.report.graphviz_layout import dot_layout
from bayes_trainmap.report.label_placement import (
    LabelRequest,
    place_labels,
    resample_polyline,
)
from bayes_trainmap.report.map_layout import edge_keys, map_layout

__all__ = ["plot_training_map", "FULL_LABEL_MAX_EDGES", "edge_label_text"]

logger = logging.getLogger(__name__)

DETOUR_COLOR = "#c0392b"
NODE_COLOR = "#7aa6c2"
#: Maps with more drawn edges than this carry short keys instead of full labels.
FULL_LABEL_MAX_EDGES = 10
#: Layer spacing and height unit in inches, for full labels and for keys.
SPACING = {"full": (3.0, 1.35), "keys": (1.9, 1.05)}
#: Successive enlargements tried when some label does not fit.
SCALES = (1.0, 1.25, 1.6, 2.0, 2.6)
EDGE_FONT = 7.5
KEY_FONT = 8.0
TAG_FONT = 8.0


def edge_label_text(row, key: str, p_exists: float | None = None, max_features: int = 3) -> str:
    """Full label of an edge: key, runs and p(k|j); top features; convergence; P(edge)."""
    j, k = int(row["source"]), int(row["target"])
    runs = int(row["n_runs"])
    lines = [f"{key} · {runs} run{'s' if runs != 1 else ''} · p({k}|{j}){_prob(row['trans_prob'])}"]
    lines += [format_change(f, c) for f, c in list(zip(row["top_features"], row["mean_change"]))[:max_features]]
    conv_mean = row.get("conv_mean", np.nan)
    if conv_mean is not None and np.isfinite(conv_mean):
        sd = row.get("conv_sd", np.nan)
        lines.append(f"converge at {conv_mean:.0f}" + (f" ± {sd:.0f}" if sd is not None and np.isfinite(sd) else ""))
    if p_exists is not None:
        lines.append(f"P(edge)={p_exists:.2f}")
    return "\n".join(lines)


def _prob(p: float) -> str:
    return f"={p:.3f}" if p >= 0.001 else "<0.001"


def _radius(occupancy: float) -> float:
    """Node radius in inches (area grows with occupancy)."""
    return 0.12 + 0.40 * float(np.sqrt(max(occupancy, 0.0)))


def _catmull_rom(points: np.ndarray, per_segment: int = 24) -> np.ndarray:
    """Centripetal-free (uniform) Catmull-Rom curve through ``points`` (n, 2)."""
    if len(points) == 2:
        return np.linspace(points[0], points[1], per_segment + 1)
    ext = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out = [points[:1]]
    t = np.linspace(0, 1, per_segment + 1)[1:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(
            0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    return np.concatenate(out)


def _clip(curve: np.ndarray, center_a, r_a: float, center_b, r_b: float) -> np.ndarray:
    """The part of ``curve`` outside the two node circles."""
    da = np.hypot(*(curve - center_a).T)
    db = np.hypot(*(curve - center_b).T)
    keep = (da > r_a) & (db > r_b)
    idx = np.flatnonzero(keep)
    if idx.size < 2:
        return curve[[0, -1]]
    return curve[idx[0] : idx[-1] + 1]


def plot_training_map(
    training_map,
    *,
    detour_states: Sequence[int] = (),
    uncertainty: Mapping | None = None,
    ax=None,
    show_labels: bool = True,
    arrival: Mapping[int, float] | None = None,
    labels: str = "auto",
    engine: str = "layered",
):
    """Draw the training map as a layered state diagram (see the module docstring).

    Nodes: one per visited state, area proportional to occupancy, in the state's
    colour; detour states get a thick red ring; the tag next to each node gives its
    occupancy and whether runs start or end there. Edges: the pruned transitions,
    labelled with their key, runs using them, ``p(k|j)``, the top features (the
    paper's "l2 ↓ 0.59", in column names) and the mean ± SD convergence step of
    those runs. With ``uncertainty`` (Bayesian modes) each edge's opacity is its
    posterior probability of existing, edges with ``p_exists < 0.5`` are dashed,
    the label adds ``P(edge)``, and transitions that only posterior draws use are
    dotted grey arrows.

    Parameters
    ----------
    training_map : bayes_trainmap.analysis.training_map.TrainingMap
    detour_states : sequence of int
    uncertainty : dict, optional
        ``Analysis.uncertainty``.
    ax : matplotlib Axes, optional
        Drawn into as given (the figure is not resized); default a new figure
        sized to the map.
    show_labels : bool
        Draw the edge labels (node tags are always drawn).
    arrival : mapping state -> float, optional
        When runs first reach each state (:func:`bayes_trainmap.report.map_layout.first_arrival`);
        default: hops from the initial states.
    labels : {"auto", "full", "keys"}
        Full edge labels, short keys, or full labels when they fit.
    engine : {"layered", "graphviz"}
        Our layered layout (:func:`bayes_trainmap.report.map_layout.map_layout`, always
        available) or Graphviz ``dot`` (:func:`bayes_trainmap.report.graphviz_layout.dot_layout`,
        needs ``pydot`` and the ``dot`` binary).

    Returns
    -------
    dict
        ``figure``, ``ax``, ``nodes`` (state -> Circle), ``edges`` (list of arrow
        patches), ``edge_patches`` ((j, k) -> patch), ``edge_paths`` ((j, k) ->
        array (n, 2) of the drawn curve in data coordinates), ``node_labels`` and
        ``node_tags`` (state -> Text), ``edge_labels`` ((j, k) -> Text), ``keys``
        ((j, k) -> key), ``label_mode`` ("full" or "keys"), ``layout``, ``legend``.
    """
    if labels not in ("auto", "full", "keys"):
        raise ValueError(f"labels must be 'auto', 'full' or 'keys', got {labels!r}")
    if engine not in ("layered", "graphviz"):
        raise ValueError(f"engine must be 'layered' or 'graphviz', got {engine!r}")
    states = training_map.states
    visited = states.loc[states["n_runs"] > 0]
    nodes = [int(s) for s in visited["state"]]
    edges = training_map.edges
    pairs = [(int(a), int(b)) for a, b in zip(edges["source"], edges["target"])]
    p_exists: dict[tuple[int, int], float] = {}
    if uncertainty:
        p_exists = {(int(e["source"]), int(e["target"])): float(e["p_exists"]) for e in uncertainty.get("edges", [])}
    keys = edge_keys(pairs, uncertainty)
    pair_set, node_set = set(pairs), set(nodes)
    extra = [e for e in keys if e not in pair_set and e[0] in node_set and e[1] in node_set]
    weights = {(int(r.source), int(r.target)): float(r.n_runs) for r in edges.itertuples()}
    if engine == "graphviz":
        layout = dot_layout(nodes, pairs + extra, training_map.initial_states, arrival=arrival, weights=weights)
    else:
        layout = map_layout(nodes, pairs + extra, training_map.initial_states, arrival=arrival, weights=weights)
    n_drawn = len(pairs) + len(extra)

    if not show_labels:
        modes = ["none"]
    elif labels == "auto":
        modes = (["full"] if n_drawn <= FULL_LABEL_MAX_EDGES else []) + ["keys"]
    else:
        modes = [labels]
    attempts = [(m, s) for m in modes for s in (SCALES if ax is None else (1.0,))]
    drawn = None
    for mode, scale in attempts:
        if drawn is not None and ax is not None:
            ax.cla()
        drawn = _draw(
            training_map, layout, nodes, pairs, extra, keys, p_exists, detour_states, mode, scale, ax
        )
        failed = drawn.pop("failed")
        if not failed:
            break
    else:
        if failed:
            logger.warning("training map: %d label(s) overlap others (no free place found): %s", len(failed), failed)
    return drawn


def _draw(training_map, layout, nodes, pairs, extra, keys, p_exists, detour_states, mode, scale, ax):
    """One attempt at the map in label ``mode`` and spacing ``scale``; the dict of
    :func:`plot_training_map` plus ``failed`` (the labels no free place was found for)."""
    dx, dy = SPACING["keys" if mode == "none" else mode]
    dx, dy = dx * scale, dy * scale
    pos = {s: np.array([x * dx, y * dy]) for s, (x, y) in layout.positions.items()}
    states = training_map.states
    occupancy = dict(zip(states["state"].astype(int), states["occupancy"].astype(float)))
    radius = {s: _radius(occupancy[s]) for s in nodes}
    fig, ax = _map_axes(layout, pos, dx, dy, mode, scale, ax)
    detours = {int(s) for s in detour_states}
    node_patches, node_labels = _draw_states(ax, nodes, pos, radius, state_colors(len(states)), detours)
    edge_patches, edge_paths = _draw_edges(ax, layout, pairs, extra, keys, p_exists, pos, radius, dx, dy)

    # Display geometry (the aspect is applied first so transforms are final).
    ax.apply_aspect()
    renderer = fig.canvas.get_renderer()
    polylines = {e: resample_polyline(ax.transData.transform(c)) for e, c in edge_paths.items()}
    obstacles = []
    for s in nodes:
        c, r = _node_px(ax, pos[s], radius[s])
        obstacles.append(np.array([c[0] - r, c[1] - r, c[0] + r, c[1] + r]))
    bounds = ax.get_window_extent(renderer).extents

    requests, texts = {}, {}
    node_tags = _state_tags(ax, training_map, nodes, pos, radius, occupancy, detours, renderer, requests, texts)
    edge_labels = {}
    if mode != "none":
        edge_labels = _edge_labels(ax, training_map, pairs + extra, keys, p_exists, mode, renderer, polylines,
                                   requests, texts)
    placed, failed = place_labels(requests, obstacles=obstacles, polylines=polylines, bounds=bounds, margin=2.5)
    _move_labels(ax, requests, texts, placed)
    legend = _legend_and_title(ax, p_exists, mode)
    return {
        "failed": failed,
        "figure": fig,
        "ax": ax,
        "nodes": node_patches,
        "edges": list(edge_patches.values()),
        "edge_patches": edge_patches,
        "edge_paths": edge_paths,
        "node_labels": node_labels,
        "node_tags": node_tags,
        "edge_labels": edge_labels,
        "keys": keys,
        "label_mode": mode,
        "layout": layout,
        "legend": legend,
    }


def _map_axes(layout, pos, dx, dy, mode, scale, ax):
    """The axes to draw on, limited to the layout plus a margin: ``ax`` or a new figure
    sized to the drawing (1 data unit = 1 inch). Returns ``(figure, axes)``."""
    all_pts = list(pos.values()) + [np.array([x * dx, y * dy]) for r in layout.routes.values() for x, y in r]
    pts = np.array(all_pts) if all_pts else np.zeros((1, 2))
    margin_x = {"full": 1.25, "keys": 0.6, "none": 0.6}[mode] * max(scale, 1.0) ** 0.5
    margin_y = {"full": 1.0, "keys": 0.7, "none": 0.7}[mode]
    x0, x1 = pts[:, 0].min() - margin_x, pts[:, 0].max() + margin_x
    y0, y1 = pts[:, 1].min() - margin_y, pts[:, 1].max() + margin_y
    if ax is None:
        width, height = x1 - x0, y1 - y0
        top, bottom = 0.35, 0.55
        fig, ax = new_axes(figsize=(width, height + top + bottom))
        ax.set_position([0.0, bottom / (height + top + bottom), 1.0, height / (height + top + bottom)])
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    return ax.figure, ax


def _draw_states(ax, nodes, pos, radius, colors, detours):
    """A numbered circle per state (detours ringed); returns ``(circles, numbers)`` by state."""
    from matplotlib.patches import Circle

    node_patches, node_labels = {}, {}
    for s in nodes:
        circle = Circle(
            pos[s], radius[s], facecolor=colors[s], edgecolor=DETOUR_COLOR if s in detours else "white",
            linewidth=4.0 if s in detours else 1.0, zorder=3,
        )
        circle.set_gid(f"tm-state-{s}")
        circle.set_clip_on(False)  # no clip path: the inline SVG has no url() references
        ax.add_patch(circle)
        node_patches[s] = circle
        label = ax.text(*pos[s], f"{s}", ha="center", va="center", fontsize=11, fontweight="bold", zorder=4)
        label.set_gid(f"tm-state-{s}-label")
        node_labels[s] = label
    return node_patches, node_labels


def _draw_edges(ax, layout, pairs, extra, keys, p_exists, pos, radius, dx, dy):
    """An arrow per edge along its routed curve; returns ``(patches, curves)`` by edge,
    each curve an ``(n, 2)`` array in data coordinates."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    edge_patches, edge_paths = {}, {}
    for e in pairs + extra:
        a, b = e
        posterior_only = e not in set(pairs)
        ctrl = [np.array([x * dx, y * dy]) for x, y in layout.control_points(e)]
        if e in layout.bow:
            p, q = ctrl[0], ctrl[-1]
            d = (q - p) / max(np.hypot(*(q - p)), 1e-9)
            right = np.array([d[1], -d[0]])
            ctrl = [p, (p + q) / 2 + layout.bow[e] * dy * right, q]
        curve = _catmull_rom(np.array(ctrl))
        curve = _clip(curve, pos[a], radius[a] + 0.03, pos[b], radius[b] + 0.05)
        pe = p_exists.get(e, 1.0)
        if posterior_only:
            style, color, lw, alpha = ":", "0.45", 1.2, max(pe, 0.15)
        else:
            style = "--" if p_exists and pe < 0.5 else "-"
            color, lw, alpha = "black", 1.5, max(pe, 0.15)
        arrow = FancyArrowPatch(
            path=Path(curve), arrowstyle="-|>", mutation_scale=14, lw=lw, color=color, alpha=alpha,
            linestyle=style, zorder=2,
        )
        arrow.set_gid(f"tm-edge-{keys[e]}")
        arrow.set_clip_on(False)
        ax.add_patch(arrow)
        edge_patches[e], edge_paths[e] = arrow, curve
    return edge_patches, edge_paths


def _node_px(ax, center, radius: float):
    """A state's centre ``(2,)`` and radius in display pixels."""
    return ax.transData.transform(center), radius * ax.figure.dpi * _data_scale(ax)


def _state_tags(ax, training_map, nodes, pos, radius, occupancy, detours, renderer, requests, texts):
    """The occupancy/start/end tag of each state, with its candidate places around the
    circle added to ``requests`` and ``texts``; returns the tags by state."""
    initial, final = set(training_map.initial_states), set(training_map.final_states)
    node_tags = {}
    for s in nodes:
        tags = [f"{100 * occupancy[s]:.0f}%"] + [t for t, on in (("start", s in initial), ("end", s in final)) if on]
        text = ax.text(
            0, 0, " · ".join(tags) + ("\nDETOUR" if s in detours else ""), ha="center", va="center",
            fontsize=TAG_FONT, color=DETOUR_COLOR if s in detours else "0.25",
            fontweight="bold" if s in detours else "normal", zorder=5, linespacing=1.1,
        )
        text.set_gid(f"tm-state-{s}-tag")
        node_tags[s] = text
        w, h = _size(text, renderer)
        c, r = _node_px(ax, pos[s], radius[s])
        gap = 3.0
        cands = []
        for i, (ux, uy) in enumerate([(0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1), (1, 0), (-1, 0)]):
            for extra_gap in (0.0, 6.0, 14.0):
                cx = c[0] + ux * (r + w / 2 + gap + extra_gap) * (0.75 if uy else 1.0)
                cy = c[1] + uy * (r + h / 2 + gap + extra_gap)
                cands.append((cx, cy, i + extra_gap / 10))
        requests[("tag", s)] = LabelRequest((w, h), cands, owner=None)
        texts[("tag", s)] = text
    return node_tags


def _edge_labels(ax, training_map, drawn_edges, keys, p_exists, mode, renderer, polylines, requests, texts):
    """The label of each drawn edge (its key, or the full text in ``"full"`` mode), with
    candidate places along its curve added to ``requests`` and ``texts``; returns the
    labels by edge."""
    edge_labels = {}
    rows = {(int(r["source"]), int(r["target"])): r for _, r in training_map.edges.iterrows()}
    for e in drawn_edges:
        if mode == "keys":
            body = keys[e]
        elif e in rows:
            body = edge_label_text(rows[e], keys[e], p_exists.get(e) if p_exists else None)
        else:
            body = f"{keys[e]} · P(edge)={p_exists[e]:.2f}\nposterior draws only"
        posterior_only = e not in rows
        text = ax.text(
            0, 0, body, ha="center", va="center", fontsize=KEY_FONT if mode == "keys" else EDGE_FONT,
            color="0.35" if posterior_only else "black", linespacing=1.15, zorder=6,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6" if not posterior_only else "0.8", "alpha": 0.95},
        )
        text.set_gid(f"tm-edge-{keys[e]}-label")
        edge_labels[e] = text
        w, h = _size(text, renderer)
        requests[("edge", e)] = LabelRequest((w, h), _edge_candidates(polylines[e], w, h), owner=e)
        texts[("edge", e)] = text
    return edge_labels


def _move_labels(ax, requests, texts, placed) -> None:
    """Move each label to the centre of its placed box (an unplaced one to its first candidate)."""
    inv = ax.transData.inverted()
    for key, text in texts.items():
        box = placed.get(key)
        if box is None:  # only on the last attempt: put it at its first candidate
            cx, cy, _ = requests[key].candidates[0]
        else:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        text.set_position(inv.transform((cx, cy)))


def _legend_and_title(ax, p_exists, mode: str):
    """Add the legend (below the map) and the title; returns the legend."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", ms=10, mfc=NODE_COLOR, mec="white", label="state (area: share of checkpoints)"),
        Line2D([], [], marker="o", ls="", ms=10, mfc="none", mec=DETOUR_COLOR, mew=3, label="detour state"),
        Line2D([], [], ls="-", color="black", label="transition used by ≥ 1 run"),
    ]
    if p_exists:
        handles += [
            Line2D([], [], ls="--", color="black", label="P(edge) < 0.5"),
            Line2D([], [], ls=":", color="0.45", label="posterior draws only"),
        ]
    legend = ax.legend(
        handles=handles, loc="upper left", fontsize=7.5, frameon=False, ncol=min(len(handles), 3),
        bbox_to_anchor=(0.0, 0.0), borderaxespad=0.2,
    )
    title = "Training map"
    if mode == "keys":
        title += " (edge keys e1, e2, …: see the edge table)"
    ax.set_title(title, fontsize=10)
    return legend


def _data_scale(ax) -> float:
    """Display pixels per data unit divided by the figure dpi (1 on a figure sized by this module)."""
    p0 = ax.transData.transform((0.0, 0.0))
    p1 = ax.transData.transform((1.0, 0.0))
    return float(abs(p1[0] - p0[0]) / ax.figure.dpi)


def _size(text, renderer) -> tuple[float, float]:
    """Pixel size of a text artist including its bbox patch padding."""
    ext = text.get_window_extent(renderer)
    pad = 0.0
    patch = text.get_bbox_patch()
    if patch is not None:
        pad = 0.25 * text.get_fontsize() * text.figure.dpi / 72.0 + 1.0
    return ext.width + 2 * pad, ext.height + 2 * pad


def _edge_candidates(points: np.ndarray, w: float, h: float) -> list[tuple[float, float, float]]:
    """Label centres along an edge: beside it (preferred) or on it, nearest the middle first."""
    if len(points) < 2:
        return [(float(points[0][0]), float(points[0][1]), 0.0)]
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1] if s[-1] > 0 else 1.0
    gap = 3.0
    offsets = [
        (0.0, h / 2 + gap, 0.0), (0.0, -(h / 2 + gap), 0.0), (w / 2 + gap, 0.0, 0.1), (-(w / 2 + gap), 0.0, 0.1),
        (w / 2 + gap, h / 2 + gap, 0.2), (-(w / 2 + gap), h / 2 + gap, 0.2),
        (w / 2 + gap, -(h / 2 + gap), 0.2), (-(w / 2 + gap), -(h / 2 + gap), 0.2), (0.0, 0.0, 0.6),
    ]
    out = []
    for t in np.linspace(0.12, 0.88, 20):
        i = min(int(np.searchsorted(s, t * total)), len(points) - 1)
        x, y = points[i]
        for ox, oy, cost in offsets:
            for far in (1.0, 1.6):
                if far > 1.0 and (ox, oy) == (0.0, 0.0):
                    continue
                out.append((x + ox * far, y + oy * far, abs(t - 0.5) * 2 + cost + (far - 1.0)))
    return out
