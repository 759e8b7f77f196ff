"""The training-map layout copes with any edge set a Viterbi decoding can produce."""

import itertools
import random

import matplotlib
import networkx as nx
import pytest

matplotlib.use("Agg")

from bayes_trainmap.report.plots import map_layout  # noqa: E402


def test_two_separate_two_cycles_are_laid_out():
    # Real sparse-parities maps had this shape: 3 -> 1 <-> 2 -> 0 and 3 <-> 4.
    states, edges = [0, 1, 2, 3, 4], [(3, 1), (1, 2), (2, 1), (2, 0), (3, 4), (4, 3)]
    layout = map_layout(states, edges, initial=[3])
    assert set(layout.positions) == set(states)
    assert len(layout.back_edges) == 2
    kept = [e for e in edges if e not in layout.back_edges]
    assert nx.is_directed_acyclic_graph(nx.DiGraph(kept))


@pytest.mark.parametrize("seed", range(5))
def test_back_edges_leave_a_dag_and_only_break_cycles(seed):
    rng = random.Random(seed)
    pairs = list(itertools.permutations(range(6), 2))
    for _ in range(100):
        edges = rng.sample(pairs, rng.randint(1, 14))
        layout = map_layout(range(6), edges, initial=[0])
        kept = [e for e in edges if e not in layout.back_edges]
        graph = nx.DiGraph(kept)
        graph.add_nodes_from(range(6))
        assert nx.is_directed_acyclic_graph(graph)
        if nx.is_directed_acyclic_graph(nx.DiGraph(edges)):
            assert not layout.back_edges
        # Layers increase along every kept edge: the map reads left to right.
        for u, v in kept:
            assert layout.positions[u][0] < layout.positions[v][0]
