"""Optional Graphviz ``dot`` layout of a training map (via ``pydot``), same result type as ``map_layout``.

Used when asked for (``plot_training_map(..., engine="graphviz")``) and both the
``pydot`` package and the ``dot`` binary are present; the pure-Python layered
layout of :mod:`bayes_trainmap.report.map_layout` stays the default, as Graphviz is not
a dependency. Cycles are broken the same way (by first arrival, then use), so
both engines read left to right in the same order; ``dot`` then ranks, orders
and routes (its splines become the edges' bend points).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping, Sequence

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.report.map_layout import MapLayout, _break_cycles, hop_arrival

__all__ = ["graphviz_available", "dot_layout"]

#: dot settings (inches): fixed node width, gap between nodes of a rank, gap between ranks.
NODE_WIDTH, NODESEP, RANKSEP = 0.5, 0.5, 1.0


def graphviz_available() -> bool:
    """Whether ``pydot`` is importable and the ``dot`` binary is on the PATH."""
    return shutil.which("dot") is not None and importlib.util.find_spec("pydot") is not None


def _bezier_points(ctrl: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """Points on a piecewise cubic Bezier curve with control points ``ctrl`` (1 + 3m, 2)."""
    out = [ctrl[:1]]
    t = np.linspace(0, 1, per_segment + 1)[1:, None]
    for i in range(0, len(ctrl) - 3, 3):
        p0, p1, p2, p3 = ctrl[i : i + 4]
        out.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3)
    return np.concatenate(out)


def dot_layout(
    states: Sequence[int],
    edges: Sequence[tuple[int, int]],
    initial: Sequence[int] = (),
    *,
    arrival: Mapping[int, float] | None = None,
    weights: Mapping[tuple[int, int], float] | None = None,
) -> MapLayout:
    """Layout by Graphviz ``dot`` (left to right), in the layout units of :func:`~bayes_trainmap.report.map_layout.map_layout`.

    Parameters and return value as :func:`bayes_trainmap.report.map_layout.map_layout`;
    ``routes`` hold points sampled from dot's spline of each edge, and ``bow`` is
    empty (dot keeps parallel edges apart itself).

    Raises
    ------
    BayesTrainmapError
        If Graphviz is not available.
    """
    if not graphviz_available():
        raise BayesTrainmapError("the graphviz engine needs the pydot package and the Graphviz 'dot' binary")
    import pydot

    states = [int(s) for s in states]
    state_set = set(states)
    pairs = list(dict.fromkeys((int(a), int(b)) for a, b in edges if a != b and a in state_set and b in state_set))
    arrival = dict(arrival) if arrival is not None else hop_arrival(states, pairs, initial)
    order = sorted(states, key=lambda s: (arrival.get(s, np.inf), s))
    rank = {s: i for i, s in enumerate(order)}
    back = _break_cycles(states, pairs, rank, dict(weights or {}))

    graph = pydot.Dot(graph_type="digraph", rankdir="LR", nodesep=str(NODESEP), ranksep=str(RANKSEP), splines="spline")
    for s in order:
        graph.add_node(pydot.Node(f"s{s}", shape="circle", width=str(NODE_WIDTH), fixedsize="true", label=""))
    emitted: list[tuple[int, int, tuple[int, int]]] = []  # (tail, head, edge) in the order dot lists them
    for a, b in pairs:
        w = str(max(1, round((weights or {}).get((a, b), 1))))
        if (a, b) in back:
            graph.add_edge(pydot.Edge(f"s{b}", f"s{a}", dir="back", weight=w))
            emitted.append((b, a, (a, b)))
        else:
            graph.add_edge(pydot.Edge(f"s{a}", f"s{b}", weight=w))
            emitted.append((a, b, (a, b)))
    plain = graph.create(prog="dot", format="plain").decode("utf-8")

    pos_in: dict[int, np.ndarray] = {}
    splines: dict[tuple[int, int], np.ndarray] = {}
    for line in plain.splitlines():
        f = line.split()
        if f and f[0] == "node":
            pos_in[int(f[1][1:])] = np.array([float(f[2]), float(f[3])])
        elif f and f[0] == "edge":
            tail, head, n = int(f[1][1:]), int(f[2][1:]), int(f[3])
            pts = np.array(f[4 : 4 + 2 * n], dtype=float).reshape(n, 2)
            i = next(i for i, (t, h, _) in enumerate(emitted) if (t, h) == (tail, head))
            _, _, key = emitted.pop(i)
            splines[key] = pts if key == (tail, head) else pts[::-1]
    step = NODE_WIDTH + RANKSEP
    x_min = min(p[0] for p in pos_in.values())
    y_mid = (max(p[1] for p in pos_in.values()) + min(p[1] for p in pos_in.values())) / 2
    unit = np.array([step, NODE_WIDTH + NODESEP])

    def to_units(p):
        return ((p[0] - x_min) / unit[0], (p[1] - y_mid) / unit[1])

    positions = {s: tuple(float(v) for v in to_units(pos_in[s])) for s in states}
    layers = {s: round(positions[s][0]) for s in states}
    routes = {}
    for e, ctrl in splines.items():
        curve = _bezier_points(ctrl)
        inner = [to_units(p) for p in curve[1:-1]]
        routes[e] = [(float(x), float(y)) for x, y in inner]
    return MapLayout(positions, routes, back, layers, {})
