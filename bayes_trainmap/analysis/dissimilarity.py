"""Trajectory dissimilarity (equation 1 of Hu et al., 2023) and the forking flag.

Trajectory dissimilarity is the mean Wasserstein distance between the
occupancy distributions of two different runs, over all distinct pairs:

    D = 2 / (N (N - 1)) * sum_{i < j} W(p_i, p_j).

State numbers are arbitrary, so the ground metric between states must not
depend on them: the default is the 0/1 cost (W is then the total variation
distance), the option ``"means"`` is the Euclidean distance between the
states' emission means. For the 0/1 cost the transport problem has the closed
form ``W(p, q) = TV(p, q) = (1/2) sum_k |p_k - q_k|`` (mass that stays in its state
costs nothing, every unit moved costs 1, and exactly ``sum_k (p_k - q_k)^+`` must
move), computed for all pairs at once; the ``"means"`` metric needs a real
transport problem per pair, solved exactly with POT.

The forking flag looks at the map's **structure**, which ignores flicker: a
*flicker* is a one-checkpoint excursion ``j -> k -> j`` (the run leaves ``j`` for a
single checkpoint and returns to ``j``), the signature of a decoding that wavers
at one noisy checkpoint rather than of a route through ``k``. The structural
edges are the transitions of the paths with every flicker checkpoint relabelled
as the state around it; the structural states are those visited outside
flickers. (The training map itself still shows every edge.) The map is linear iff
the structural edges form one directed path through every structural state.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["ground_metric", "pairwise_wasserstein", "total_variation", "trajectory_dissimilarity", "structural_edges", "is_forking"]

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
    occ = np.ascontiguousarray(occupancy, dtype=float)
    if occ.ndim != 2:
        raise BayesTrainmapError(f"occupancy must be (N, K), got shape {occ.shape}")
    if not np.allclose(occ.sum(axis=1), 1.0, atol=1e-8) or np.any(occ < 0):
        raise BayesTrainmapError("occupancy rows must be probability vectors")
    cost = np.ascontiguousarray(ground_metric(occ.shape[1], ground, means))
    if ground == "zero_one":
        return total_variation(occ)
    import ot

    n = occ.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i):
            out[i, j] = out[j, i] = float(ot.emd2(occ[i], occ[j], cost))
    return out


def total_variation(occupancy: np.ndarray, block: int = 256) -> np.ndarray:
    """Total-variation distance between every pair of rows, ``(1/2) sum_k |p_ik - p_jk|``.

    Equal to the Wasserstein distance under the 0/1 ground metric.

    Parameters
    ----------
    occupancy : numpy.ndarray, shape (N, K)
        Rows are probability vectors (not checked here).
    block : int
        Rows per vectorised block (bounds the (block, N, K) temporary).

    Returns
    -------
    numpy.ndarray, shape (N, N)
        Symmetric, zero diagonal.
    """
    occ = np.asarray(occupancy, dtype=float)
    n = occ.shape[0]
    out = np.empty((n, n))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        out[lo:hi] = 0.5 * np.abs(occ[lo:hi, None, :] - occ[None, :, :]).sum(-1)
    np.fill_diagonal(out, 0.0)
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


def structural_edges(paths: np.ndarray, lengths: np.ndarray) -> tuple[list[tuple[int, int]], list[int]]:
    """Transitions and states of the decoded paths once flickers are removed.

    A flicker is a stay of exactly one checkpoint in a state ``k`` between two
    stays in the same state ``j`` (``... j, k, j ...`` within one run); it is
    relabelled ``j``. Flickers are found on the original paths in one pass (a
    stay that is itself only the middle of ``k, j, k`` counts as a flicker too).

    Parameters
    ----------
    paths : numpy.ndarray of int, shape (n,)
        Decoded state of every checkpoint, concatenated over runs.
    lengths : numpy.ndarray of int, shape (N,)
        Checkpoints per run.

    Returns
    -------
    edges : list of (int, int)
        Distinct transitions ``j -> k`` (``j != k``) of the flicker-free paths, sorted.
    states : list of int
        States visited outside flickers, sorted.
    """
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != paths.size:
        raise BayesTrainmapError(f"lengths sum to {lengths.sum()}, expected len(paths) = {paths.size}")
    edges: set[tuple[int, int]] = set()
    states: set[int] = set()
    lo = 0
    for T in lengths.tolist():
        run = paths[lo : lo + T]
        lo += T
        if run.size == 0:
            continue
        starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
        seg_state = run[starts]
        seg_len = np.diff(np.r_[starts, run.size])
        flicker = np.zeros(seg_state.size, dtype=bool)
        if seg_state.size >= 3:
            flicker[1:-1] = (seg_len[1:-1] == 1) & (seg_state[:-2] == seg_state[2:])
        kept = seg_state[~flicker]
        states.update(int(v) for v in kept)
        change = kept[1:] != kept[:-1]
        edges.update(zip(kept[:-1][change].tolist(), kept[1:][change].tolist()))
    return sorted(edges), sorted(states)


def _edge_pairs(edges) -> list[tuple[int, int]]:
    if hasattr(edges, "columns"):
        return [(int(a), int(b)) for a, b in zip(edges["source"], edges["target"])]
    return [(int(a), int(b)) for a, b in edges]


def is_forking(edges, n_states: int | None = None, *, visited_states: Iterable[int] | None = None) -> bool:
    """Whether a training map forks, i.e. is not one linear path.

    The map is linear iff its non-self-loop edges form a single directed simple
    path that covers every visited state (a single visited state with no
    edges is linear too). To judge a decoded map robustly to one-checkpoint
    flicker, pass the output of :func:`structural_edges` (as the analysis does).

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
