"""Trajectory dissimilarity (equation 1 of Hu et al., 2023) and the forking flag.

Trajectory dissimilarity is the mean Wasserstein distance between the
occupancy distributions of two different runs, over all distinct pairs:

    D = 2 / (N (N - 1)) * sum_{i < j} W(p_i, p_j).

State numbers are arbitrary, so the ground metric between states must not
depend on them: the default is the 0/1 cost (W is then the total variation
distance), the option ``"means"`` is the Euclidean distance between the
states' emission means. Transport problems are solved exactly with POT.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["ground_metric", "pairwise_wasserstein", "trajectory_dissimilarity", "is_forking"]

GROUND_METRICS = ("zero_one", "means")


def ground_metric(n_states: int, ground: str = "zero_one", means: np.ndarray | None = None) -> np.ndarray:
    """Cost between states, shape (K, K).

    Parameters
    ----------
    n_states : int
    ground : {"zero_one", "means"}
        0/1 cost, or Euclidean distance between the rows of ``means``.
    means : numpy.ndarray, shape (K, d), optional
        Emission means (required for ``"means"``).
    """
    if ground == "zero_one":
        return 1.0 - np.eye(n_states)
    if ground == "means":
        if means is None:
            raise BayesTrainmapError("ground='means' needs the state means (K, d)")
        means = np.asarray(means, dtype=float)
        if means.shape[0] != n_states:
            raise BayesTrainmapError(f"means has {means.shape[0]} rows, expected {n_states} states")
        diff = means[:, None, :] - means[None, :, :]
        return np.sqrt((diff**2).sum(-1))
    raise BayesTrainmapError(f"ground must be one of {GROUND_METRICS}, got {ground!r}")


def pairwise_wasserstein(occupancy: np.ndarray, ground: str = "zero_one", means: np.ndarray | None = None) -> np.ndarray:
    """Wasserstein distance between every pair of runs' occupancy distributions.

    Parameters
    ----------
    occupancy : numpy.ndarray, shape (N, K)
        Rows are probability vectors.
    ground, means
        See :func:`ground_metric`.

    Returns
    -------
    numpy.ndarray, shape (N, N)
        Symmetric, zero diagonal.
    """
    import ot

    occ = np.ascontiguousarray(occupancy, dtype=float)
    if occ.ndim != 2:
        raise BayesTrainmapError(f"occupancy must be (N, K), got shape {occ.shape}")
    if not np.allclose(occ.sum(axis=1), 1.0, atol=1e-8) or np.any(occ < 0):
        raise BayesTrainmapError("occupancy rows must be probability vectors")
    cost = np.ascontiguousarray(ground_metric(occ.shape[1], ground, means))
    n = occ.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i):
            out[i, j] = out[j, i] = float(ot.emd2(occ[i], occ[j], cost))
    return out


def trajectory_dissimilarity(occupancy: np.ndarray, ground: str = "zero_one", means: np.ndarray | None = None) -> float:
    """Mean pairwise Wasserstein distance over distinct pairs of runs (equation 1).

    Parameters
    ----------
    occupancy : numpy.ndarray, shape (N, K)
        Occupancy distributions of N >= 2 runs.
    ground : {"zero_one", "means"}
    means : numpy.ndarray, shape (K, d), optional

    Returns
    -------
    float
    """
    n = np.asarray(occupancy).shape[0]
    if n < 2:
        raise BayesTrainmapError(f"trajectory dissimilarity needs at least 2 runs, got {n}")
    dist = pairwise_wasserstein(occupancy, ground, means)
    return float(dist[np.tril_indices(n, k=-1)].mean())


def _edge_pairs(edges) -> list[tuple[int, int]]:
    if hasattr(edges, "columns"):
        return [(int(a), int(b)) for a, b in zip(edges["source"], edges["target"])]
    return [(int(a), int(b)) for a, b in edges]


def is_forking(edges, n_states: int | None = None, *, visited_states: Iterable[int] | None = None) -> bool:
    """Whether a training map forks, i.e. is not one linear path.

    The map is linear iff its non-self-loop edges form a single directed simple
    path that covers every visited state (a single visited state with no
    edges is linear too).

    Parameters
    ----------
    edges : pandas.DataFrame with ``source``/``target`` columns, or iterable of (j, k)
    n_states : int, optional
        Number of states, used to check the indices.
    visited_states : iterable of int, optional
        States some run visits; defaults to the endpoints of the edges.

    Returns
    -------
    bool
    """
    pairs = {(a, b) for a, b in _edge_pairs(edges) if a != b}
    nodes = set(visited_states) if visited_states is not None else set()
    for a, b in pairs:
        nodes.update((a, b))
    if n_states is not None and any(not 0 <= v < n_states for v in nodes):
        raise BayesTrainmapError(f"edge endpoints outside 0..{n_states - 1}: {sorted(nodes)}")
    if len(nodes) <= 1:
        return False
    out_deg = {v: 0 for v in nodes}
    in_deg = {v: 0 for v in nodes}
    successor = {}
    for a, b in pairs:
        out_deg[a] += 1
        in_deg[b] += 1
        successor[a] = b
    if len(pairs) != len(nodes) - 1 or any(d > 1 for d in out_deg.values()) or any(d > 1 for d in in_deg.values()):
        return True
    sources = [v for v in nodes if in_deg[v] == 0]
    if len(sources) != 1:
        return True
    # Walk the unique path from the source; it must reach every node.
    seen, v = {sources[0]}, sources[0]
    while v in successor:
        v = successor[v]
        if v in seen:
            return True
        seen.add(v)
    return seen != nodes
