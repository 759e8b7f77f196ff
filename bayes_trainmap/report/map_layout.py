"""Layered left-to-right layout of a training map (a small Sugiyama layout).

The drawing reads like the paper's figures: states that runs reach early sit on
the left, states they end in on the right. Nothing here depends on how the
states are numbered except as the last tie-break.

1. **Cycle breaking.** Edges that agree with the order of first arrival (the
   mean position, as a share of the run, at which runs first reach a state) are
   kept as they are; they cannot form a cycle. The others are added one by one,
   most-used first, unless they would close a cycle; those that would are *back
   edges* and are laid out reversed. An acyclic map has no back edges.
2. **Layers.** Longest path from the sources of the acyclic graph, so a detour
   gets its own layer between the fork and the rejoin.
3. **Bend points.** An edge spanning more than one layer gets a bend point in
   every layer it skips; bend points take part in the ordering, so long edges are
   routed around the states they skip. Edges ``j -> k`` and ``k -> j`` get
   separate bend points, or (between adjacent layers) bow to opposite sides.
4. **Ordering.** Barycentre sweeps (down and up, keeping the order with the
   fewest crossings), starting from the order of first arrival.
5. **Coordinates.** Each layer is pulled towards the mean height of its
   neighbours subject to a minimum gap (an isotonic regression per layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["MapLayout", "map_layout", "first_arrival", "hop_arrival", "edge_keys"]

#: Vertical gap between two states of a layer, and between a state and a bend point (layout units).
NODE_GAP = 1.0
BEND_GAP = 0.55


@dataclass
class MapLayout:
    """Positions of a layered training-map drawing, in layout units.

    Attributes
    ----------
    positions : dict state -> (x, y)
        ``x`` is the layer (0 = leftmost), ``y`` the height (larger is higher).
    routes : dict (j, k) -> list of (x, y)
        Bend points of edge ``j -> k`` in drawing order (from ``j`` to ``k``); empty
        for edges between adjacent layers.
    back_edges : set of (j, k)
        Edges laid out reversed because they close a cycle.
    layers : dict state -> int
    bow : dict (j, k) -> float
        Sideways offset (layout units, to the right of the direction of travel) of
        the midpoint of an edge between adjacent layers; non-zero when the reverse
        edge runs between the same two states.
    """

    positions: dict[int, tuple[float, float]]
    routes: dict[tuple[int, int], list[tuple[float, float]]]
    back_edges: set[tuple[int, int]]
    layers: dict[int, int] = field(default_factory=dict)
    bow: dict[tuple[int, int], float] = field(default_factory=dict)

    def control_points(self, edge: tuple[int, int]) -> list[tuple[float, float]]:
        """Source, bend points and target of ``edge`` (layout units)."""
        a, b = edge
        return [self.positions[a], *self.routes.get(edge, []), self.positions[b]]


def first_arrival(decoded: pd.DataFrame) -> dict[int, float]:
    """Mean share of a run elapsed when runs first reach each state.

    Parameters
    ----------
    decoded : pandas.DataFrame
        Columns ``run``, ``state`` (and rows in step order within each run), as in
        a fit directory's ``decoded.parquet``.

    Returns
    -------
    dict state -> float in [0, 1]
        Over the runs visiting the state: position of the first checkpoint in the
        state divided by the run's length minus one (0 for a run's first state).
    """
    out: dict[int, list[float]] = {}
    for _, g in decoded.groupby(decoded["run"].astype(str), sort=False):
        states = g["state"].to_numpy(dtype=np.int64)
        if states.size == 0:
            continue
        uniq, first = np.unique(states, return_index=True)
        denom = max(states.size - 1, 1)
        for s, i in zip(uniq.tolist(), first.tolist()):
            out.setdefault(int(s), []).append(i / denom)
    return {s: float(np.mean(v)) for s, v in out.items()}


def hop_arrival(states: Sequence[int], edges: Sequence[tuple[int, int]], initial: Sequence[int]) -> dict[int, float]:
    """Fallback arrival order without decoded paths: hops from the initial states.

    States unreachable from the initial states come after every reachable one.
    """
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(states)
    graph.add_edges_from(edges)
    roots = [s for s in initial if s in graph]
    dist = nx.multi_source_dijkstra_path_length(graph, roots) if roots else {}
    far = max(dist.values(), default=0) + 1
    return {s: float(dist.get(s, far)) for s in states}


def edge_keys(pairs: Sequence[tuple[int, int]], uncertainty: Mapping | None = None) -> dict[tuple[int, int], str]:
    """Short keys ``"e1", "e2", ...`` of a map's edges, as the figure and the edge table show them.

    Parameters
    ----------
    pairs : sequence of (source, target)
        The point estimate's edges, in table order.
    uncertainty : dict, optional
        ``Analysis.uncertainty``; its edges that the point estimate lacks
        (posterior-only transitions) get the following keys, in sorted order.
    """
    keys = {(int(a), int(b)): f"e{i + 1}" for i, (a, b) in enumerate(pairs)}
    extra = sorted(
        {(int(e["source"]), int(e["target"])) for e in (uncertainty or {}).get("edges", [])} - set(keys)
    )
    for a, b in extra:
        if a != b:
            keys[(a, b)] = f"e{len(keys) + 1}"
    return keys


def _break_cycles(states, pairs, rank, weight) -> set[tuple[int, int]]:
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(states)
    forward = [e for e in pairs if rank[e[0]] < rank[e[1]]]
    dag.add_edges_from(forward)
    rest = sorted((e for e in pairs if rank[e[0]] >= rank[e[1]]), key=lambda e: (-weight.get(e, 0.0), rank[e[1]], rank[e[0]]))
    back = set()
    for a, b in rest:
        if nx.has_path(dag, b, a):
            back.add((a, b))
        else:
            dag.add_edge(a, b)
    return back


def _crossings(order: dict, links: list[tuple]) -> int:
    """Crossings between two adjacent layers: ``links`` are (upper item, lower item) pairs."""
    n = 0
    for i in range(len(links)):
        for j in range(i + 1, len(links)):
            (a, b), (c, d) = links[i], links[j]
            if (order[a] - order[c]) * (order[b] - order[d]) < 0:
                n += 1
    return n


def _isotonic_heights(desired: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Heights closest to ``desired`` (top to bottom) with ``y[i] - y[i+1] >= gaps[i]``.

    Substituting ``z_i = y_i + sum(gaps[:i])`` turns the constraints into ``z``
    non-increasing: pool-adjacent-violators on ``desired + offsets``.
    """
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])
    target = desired + offsets
    blocks: list[list[float]] = []  # [mean, count]
    for v in target:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    z = np.concatenate([np.full(int(n), m) for m, n in blocks])
    return z - offsets


def map_layout(
    states: Sequence[int],
    edges: Sequence[tuple[int, int]],
    initial: Sequence[int] = (),
    *,
    arrival: Mapping[int, float] | None = None,
    weights: Mapping[tuple[int, int], float] | None = None,
    sweeps: int = 8,
) -> MapLayout:
    """Left-to-right layered layout of a training map (see the module docstring).

    Parameters
    ----------
    states : sequence of int
        The states to draw.
    edges : sequence of (j, k)
        Transitions; self-loops and edges to states not in ``states`` are ignored.
    initial : sequence of int
        States runs start in (used by the fallback arrival order).
    arrival : mapping state -> float, optional
        When runs first reach each state (:func:`first_arrival`); default
        :func:`hop_arrival`.
    weights : mapping (j, k) -> float, optional
        Edge importance for cycle breaking (e.g. runs using the edge); heavier
        edges keep their direction.
    sweeps : int
        Barycentre sweeps of the ordering step.

    Returns
    -------
    MapLayout
    """
    states = [int(s) for s in states]
    state_set = set(states)
    pairs = list(dict.fromkeys((int(a), int(b)) for a, b in edges if a != b and a in state_set and b in state_set))
    arrival = dict(arrival) if arrival is not None else hop_arrival(states, pairs, initial)
    weights = dict(weights or {})
    order0 = sorted(states, key=lambda s: (arrival.get(s, np.inf), s))
    rank = {s: i for i, s in enumerate(order0)}
    back = _break_cycles(states, pairs, rank, weights)
    oriented = {e: (e if e not in back else (e[1], e[0])) for e in pairs}
    layer = _longest_path_layers(order0, oriented, rank)
    items, chains, links = _layer_items(order0, pairs, oriented, layer)
    n_layers = max(items) + 1 if items else 0
    up = {i: [] for d in items for i in items[d]}
    down = {i: [] for d in items for i in items[d]}
    for d, ls in links.items():
        for p, q in ls:
            down[p].append(q)
            up[q].append(p)
    current = _order_layers(items, links, up, down, rank, n_layers, sweeps)
    height = _layer_heights(current, up, down, n_layers)

    positions = {s: (float(layer[s]), height[s]) for s in states}
    routes, bow = _routes_and_bows(pairs, chains, back, height)
    return MapLayout(positions, routes, back, {s: layer[s] for s in states}, bow)


def _longest_path_layers(order0: list[int], oriented: dict, rank: dict[int, int]) -> dict[int, int]:
    """Layer of each state: the longest path to it in the acyclic orientation
    ``oriented`` (edge -> drawn direction), visiting ties in ``rank`` order."""
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(order0)
    dag.add_edges_from(oriented.values())
    layer: dict[int, int] = {}
    for v in nx.lexicographical_topological_sort(dag, key=lambda s: rank[s]):
        preds = list(dag.predecessors(v))
        layer[v] = 1 + max(layer[u] for u in preds) if preds else 0
    return layer


def _layer_items(order0, pairs, oriented, layer):
    """Items per layer (states and the bend points of edges spanning several layers),
    each edge's chain of items, and the links between adjacent layers.

    Returns
    -------
    items : dict layer -> list of items
    chains : dict (j, k) -> list of items from the drawn source to the drawn target
    links : dict layer L -> list of (item in L, item in L + 1)
    """
    items: dict[int, list] = {}
    for s in order0:
        items.setdefault(layer[s], []).append(s)
    chains: dict[tuple[int, int], list] = {}
    links: dict[int, list[tuple]] = {}  # layer L -> links between L and L+1
    for e in pairs:
        u, v = oriented[e]
        chain = [u] + [("bend", e, d) for d in range(layer[u] + 1, layer[v])] + [v]
        for item, d in zip(chain[1:-1], range(layer[u] + 1, layer[v])):
            items.setdefault(d, []).append(item)
        for d, (p, q) in zip(range(layer[u], layer[v]), zip(chain[:-1], chain[1:])):
            links.setdefault(d, []).append((p, q))
        chains[e] = chain
    return items, chains, links


def _positions_of(order_by_layer) -> dict:
    """Index of each item within its layer."""
    return {item: i for d in order_by_layer for i, item in enumerate(order_by_layer[d])}


def _total_crossings(order_by_layer, links) -> int:
    pos = _positions_of(order_by_layer)
    return sum(_crossings(pos, ls) for ls in links.values())


def _initial_key(item, rank: dict[int, int]) -> tuple:
    """Initial order: states by arrival, bend points by the rank of their edge's source."""
    if isinstance(item, tuple):
        e = item[1]
        return ((rank[e[0]] + rank[e[1]]) / 2.0 + 0.25, rank[e[0]], rank[e[1]])
    return (float(rank[item]), -1, -1)


def _order_layers(items, links, up, down, rank, n_layers: int, sweeps: int) -> dict[int, list]:
    """Order within each layer by alternating barycentre sweeps; the order with the
    fewest crossings seen is kept."""
    current = {d: sorted(items[d], key=lambda item: _initial_key(item, rank)) for d in range(n_layers)}
    best, best_cross = {d: list(v) for d, v in current.items()}, _total_crossings(current, links)
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        layer_seq = range(1, n_layers) if downward else range(n_layers - 2, -1, -1)
        for d in layer_seq:
            ref = _positions_of({d - 1: current[d - 1]} if downward else {d + 1: current[d + 1]})
            old = {item: i for i, item in enumerate(current[d])}
            neighbours = up if downward else down
            current[d] = sorted(current[d], key=lambda item, ref=ref, old=old, nb=neighbours: _barycentre(item, nb, ref, old))
        cross = _total_crossings(current, links)
        if cross < best_cross:
            best, best_cross = {d: list(v) for d, v in current.items()}, cross
    return best


def _layer_heights(current, up, down, n_layers: int) -> dict:
    """Height of each item: order index 0 is the top; pulled towards its neighbours
    while keeping the gaps (isotonic fit)."""
    height: dict = {}
    for d in range(n_layers):
        gaps = _gaps(current[d])
        y = -np.concatenate([[0.0], np.cumsum(gaps)])
        y -= (y.max() + y.min()) / 2
        for item, v in zip(current[d], y):
            height[item] = float(v)
    for sweep in range(4):
        for d in range(n_layers):
            seq = current[d]
            desired = []
            for item in seq:
                nb = up[item] + down[item]
                desired.append(float(np.mean([height[n] for n in nb])) if nb else height[item])
            y = _isotonic_heights(np.asarray(desired), _gaps(seq))
            for item, v in zip(seq, y):
                height[item] = float(v)
    return height


def _routes_and_bows(pairs, chains, back, height):
    """Bend points of the edges spanning several layers (in the edge's own direction)
    and the bow of each unrouted 2-cycle edge."""
    routes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e, chain in chains.items():
        bends = [(float(item[2]), height[item]) for item in chain[1:-1]]
        if e in back:
            bends = bends[::-1]
        if bends:
            routes[e] = bends
    pair_set = set(pairs)
    bow = {}
    for a, b in pairs:
        if (b, a) in pair_set and (a, b) not in routes and (b, a) not in routes:
            bow[(a, b)] = 0.22
    return routes, bow


def _barycentre(item, neighbours: dict, ref: dict, old: dict) -> tuple[float, int]:
    """Sort key of the ordering sweeps: mean position of the item's neighbours in the reference layer."""
    vals = [ref[n] for n in neighbours[item] if n in ref]
    return (float(np.mean(vals)) if vals else float(old[item]), old[item])


def _gaps(seq: list) -> np.ndarray:
    return np.array(
        [NODE_GAP if not isinstance(p, tuple) and not isinstance(q, tuple) else BEND_GAP for p, q in zip(seq[:-1], seq[1:])],
        dtype=float,
    )
