"""The drawn training map has no label collisions: checked on the drawn artists' boxes.

Every shipped demo set (fitted quickly at a fixed K) and a dense simulated map
(K = 8, 24 edges) are drawn as the MLE map and as a Bayesian map (edge opacity,
dashed and posterior-only edges, ``P(edge)`` in the labels). After
``fig.canvas.draw()`` the boxes matplotlib reports (``get_window_extent``) must
show that no two labels overlap, no label covers a state, and no edge label
covers a point of another edge's drawn curve.
"""

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from bayes_trainmap.fitting import pipeline  # noqa: E402
from bayes_trainmap.report import plots  # noqa: E402
from bayes_trainmap.data import available_demos, demo_trajectories  # noqa: E402
from bayes_trainmap.report.graphviz_layout import graphviz_available  # noqa: E402
from bayes_trainmap.report.label_placement import resample_polyline  # noqa: E402
from bayes_trainmap.report.map_layout import edge_keys, first_arrival  # noqa: E402
from bayes_trainmap.core.schema import STATISTIC_NAMES  # noqa: E402
from bayes_trainmap.analysis.training_map import EDGE_COLUMNS, STATE_COLUMNS, TrainingMap, format_change  # noqa: E402

DEMOS = [name for name in available_demos()]


@pytest.fixture(scope="session")
def demo_maps():
    """One quick fit per demo set: (training map, detour states, first arrival)."""
    out = {}
    for name in DEMOS:
        res = pipeline.fit(demo_trajectories(name), states=[5], n_restarts=1, n_iter=15, progress=False)
        out[name] = (res.analysis.training_map, res.analysis.detour_states, first_arrival(res.runs.decoded_frame()))
    return out


def dense_map(n_states: int = 8, n_edges: int = 24, seed: int = 0) -> TrainingMap:
    """A planted dense map: random edges (incl. 2-cycles), random labels, uneven occupancy."""
    rng = np.random.default_rng(seed)
    pairs = [p for p in itertools.permutations(range(n_states), 2)]
    chosen = sorted(pairs[i] for i in rng.choice(len(pairs), n_edges, replace=False))
    occ = rng.dirichlet(np.full(n_states, 0.8))
    runs = [f"run{i}" for i in range(30)]
    states = pd.DataFrame(
        [
            {
                "state": k, "occupancy": float(occ[k]), "n_checkpoints": int(1000 * occ[k]) + 1, "n_runs": 10,
                "runs": runs[:10], "mean_dwell": 5.0, "is_initial": k == 0, "is_final": k == n_states - 1,
                "n_runs_start": 30 * (k == 0), "n_runs_end": 30 * (k == n_states - 1),
                "top_features": list(STATISTIC_NAMES[:3]), "top_importance": [0.3, 0.2, 0.1],
            }
            for k in range(n_states)
        ],
        columns=STATE_COLUMNS,
    )
    edges = []
    for j, k in chosen:
        feats = [str(f) for f in rng.choice(STATISTIC_NAMES, 3, replace=False)]
        change = rng.normal(0, 1.5, 3)
        edges.append(
            {
                "source": j, "target": k, "trans_prob": float(rng.uniform(1e-4, 0.2)), "n_runs": int(rng.integers(1, 30)),
                "n_uses": 3, "runs": runs[:3], "conv_mean": float(rng.uniform(500, 20000)), "conv_sd": float(rng.uniform(10, 900)),
                "conv_n": 3, "top_features": feats, "importance": [0.3, 0.2, 0.1], "mean_change": change.tolist(),
                "label": ", ".join(format_change(f, c) for f, c in zip(feats, change)),
            }
        )
    return TrainingMap(states, pd.DataFrame(edges, columns=EDGE_COLUMNS), [0], [n_states - 1], list(STATISTIC_NAMES))


def bayes_uncertainty(tmap: TrainingMap, seed: int = 0) -> dict:
    """What a Bayesian fit adds to the map: P(edge) per edge and two posterior-only edges."""
    rng = np.random.default_rng(seed)
    known = set(zip(tmap.edges["source"].astype(int), tmap.edges["target"].astype(int)))
    visited = tmap.visited_states
    extra = [p for p in itertools.permutations(visited, 2) if p not in known][:2]
    rows = [
        {"source": int(a), "target": int(b), "p_exists": float(p)}
        for (a, b), p in zip(sorted(known) + extra, rng.uniform(0.05, 1.0, len(known) + len(extra)))
    ]
    return {"edges": rows, "states": [], "interval": 0.9}


def _extent(artist, renderer) -> np.ndarray:
    box = artist.get_window_extent(renderer)
    patch = artist.get_bbox_patch() if hasattr(artist, "get_bbox_patch") else None
    if patch is not None:
        pb = patch.get_window_extent(renderer)
        box = type(box).union([box, pb])
    return np.array(box.extents)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_no_collisions(drawn) -> None:
    fig, ax = drawn["figure"], drawn["ax"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {("edge", e): _extent(t, renderer) for e, t in drawn["edge_labels"].items()}
    labels.update({("tag", s): _extent(t, renderer) for s, t in drawn["node_tags"].items()})
    numbers = {("number", s): _extent(t, renderer) for s, t in drawn["node_labels"].items()}
    nodes = {s: np.array(c.get_window_extent(renderer).extents) for s, c in drawn["nodes"].items()}
    everything = {**labels, **numbers}
    for (ka, a), (kb, b) in itertools.combinations(everything.items(), 2):
        assert not _overlap(a, b), f"labels {ka} and {kb} overlap"
    for key, box in labels.items():
        for s, node in nodes.items():
            assert not _overlap(box, node), f"label {key} covers state {s}"
    curves = {e: resample_polyline(ax.transData.transform(p), step=1.0) for e, p in drawn["edge_paths"].items()}
    for (kind, e), box in labels.items():
        for other, pts in curves.items():
            if kind == "edge" and other == e:
                continue
            inside = (pts[:, 0] > box[0]) & (pts[:, 0] < box[2]) & (pts[:, 1] > box[1]) & (pts[:, 1] < box[3])
            assert not inside.any(), f"label {(kind, e)} covers edge {other}"
    assert len(drawn["edge_labels"]) == len(drawn["edge_paths"])


@pytest.mark.parametrize("bayes", [False, True], ids=["mle", "bayes"])
@pytest.mark.parametrize("name", DEMOS)
def test_demo_maps_have_no_label_collisions(demo_maps, name, bayes):
    tmap, detours, arrival = demo_maps[name]
    unc = bayes_uncertainty(tmap) if bayes else None
    drawn = plots.plot_training_map(tmap, detour_states=detours, uncertainty=unc, arrival=arrival)
    assert_no_collisions(drawn)
    # Runs start on the left: no state is drawn left of every initial state.
    xs = {s: p[0] for s, p in drawn["layout"].positions.items()}
    assert min(xs[s] for s in tmap.initial_states if s in xs) == min(xs.values())


@pytest.mark.parametrize("bayes", [False, True], ids=["mle", "bayes"])
def test_dense_map_uses_keys_without_collisions(bayes):
    tmap = dense_map()
    unc = bayes_uncertainty(tmap) if bayes else None
    drawn = plots.plot_training_map(tmap, uncertainty=unc)
    assert drawn["label_mode"] == "keys"
    assert_no_collisions(drawn)
    # The keys on the figure are the edge table's keys, in table order.
    keys = edge_keys(list(zip(tmap.edges["source"], tmap.edges["target"])), unc)
    assert {e: t.get_text() for e, t in drawn["edge_labels"].items()} == {e: keys[e] for e in drawn["edge_labels"]}
    assert [keys[(int(a), int(b))] for a, b in zip(tmap.edges["source"], tmap.edges["target"])] == [
        f"e{i + 1}" for i in range(len(tmap.edges))
    ]


def test_layout_does_not_depend_on_state_numbering():
    tmap = dense_map(n_edges=14, seed=3)
    perm = np.random.default_rng(1).permutation(tmap.n_states)
    states = tmap.states.assign(state=perm[tmap.states["state"]]).sort_values("state").reset_index(drop=True)
    edges = tmap.edges.assign(source=perm[tmap.edges["source"]], target=perm[tmap.edges["target"]])
    edges = edges.sort_values(["source", "target"]).reset_index(drop=True)  # as a renumbered fit lists them
    renamed = TrainingMap(states, edges, [int(perm[s]) for s in tmap.initial_states], [int(perm[s]) for s in tmap.final_states], tmap.feature_names)
    arrival = {s: 0.1 * s + 0.01 * (s % 3) for s in range(tmap.n_states)}  # distinct: no id tie-breaks
    a = plots.map_layout(tmap.visited_states, list(zip(tmap.edges["source"], tmap.edges["target"])), arrival=arrival)
    b = plots.map_layout(
        renamed.visited_states, list(zip(edges["source"], edges["target"])), arrival={int(perm[s]): v for s, v in arrival.items()}
    )
    for s in range(tmap.n_states):
        assert a.positions[s] == pytest.approx(b.positions[int(perm[s])])


@pytest.mark.skipif(not graphviz_available(), reason="Graphviz 'dot' or pydot not installed")
@pytest.mark.parametrize("case", ["sparse_parities", "dense"])
def test_graphviz_engine_has_no_label_collisions(demo_maps, case):
    if case == "dense":
        tmap, detours, arrival = dense_map(), [], None
    else:
        tmap, detours, arrival = demo_maps[case]
    unc = bayes_uncertainty(tmap)
    drawn = plots.plot_training_map(tmap, detour_states=detours, uncertainty=unc, arrival=arrival, engine="graphviz")
    assert_no_collisions(drawn)
    # dot ranks left to right along every edge it kept forward.
    pos = drawn["layout"].positions
    for a, b in drawn["edge_paths"]:
        if (a, b) not in drawn["layout"].back_edges:
            assert pos[a][0] < pos[b][0]
