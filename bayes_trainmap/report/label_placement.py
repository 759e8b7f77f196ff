"""Collision-free placement of text boxes on a drawing (pure geometry, display pixels).

Each label has candidate centres (with a cost) near the thing it names. A
candidate is *feasible* if its box stays inside the bounds and clears every
obstacle box (nodes, already placed tags) and every polyline (edges) except the
label's own. Labels are placed greedily, most constrained first, each at its
cheapest feasible candidate that clears the labels placed before it; labels
that find none are moved to the front and the pass is repeated a few times.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelRequest", "place_labels", "resample_polyline", "boxes_overlap", "box_hits_points"]


@dataclass
class LabelRequest:
    """One label to place.

    Attributes
    ----------
    size : (width, height)
        Box size in pixels (including any padding).
    candidates : sequence of (cx, cy, cost)
        Candidate box centres in pixels, with a preference cost (lower is better).
    owner : hashable or None
        The polyline this label belongs to (it may cover it), if any.
    """

    size: tuple[float, float]
    candidates: Sequence[tuple[float, float, float]]
    owner: Hashable | None = None


def resample_polyline(points: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Points along a polyline (shape (n, 2)) at most ``step`` apart, endpoints included."""
    points = np.asarray(points, dtype=float)
    if len(points) < 2:
        return points
    out = [points[:1]]
    for p, q in zip(points[:-1], points[1:]):
        n = max(int(np.ceil(np.hypot(*(q - p)) / step)), 1)
        t = np.arange(1, n + 1)[:, None] / n
        out.append(p + t * (q - p))
    return np.concatenate(out)


def boxes_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Whether boxes ``(x0, y0, x1, y1)`` overlap after growing ``a`` by ``margin``."""
    return bool(a[0] - margin < b[2] and b[0] < a[2] + margin and a[1] - margin < b[3] and b[1] < a[3] + margin)


def box_hits_points(box: np.ndarray, points: np.ndarray, margin: float = 0.0) -> bool:
    """Whether any of ``points`` (shape (n, 2)) lies inside ``box`` grown by ``margin``."""
    if not len(points):
        return False
    x, y = points[:, 0], points[:, 1]
    inside = (x > box[0] - margin) & (x < box[2] + margin) & (y > box[1] - margin) & (y < box[3] + margin)
    return bool(inside.any())


def _box(cx, cy, w, h) -> np.ndarray:
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def place_labels(
    requests: Mapping[Hashable, LabelRequest],
    *,
    obstacles: Sequence[np.ndarray] = (),
    polylines: Mapping[Hashable, np.ndarray] | None = None,
    bounds: np.ndarray | None = None,
    margin: float = 2.0,
    passes: int = 4,
) -> tuple[dict[Hashable, np.ndarray], list[Hashable]]:
    """Place every label without overlaps (see the module docstring).

    Parameters
    ----------
    requests : mapping key -> LabelRequest
    obstacles : sequence of array (4,)
        Boxes ``(x0, y0, x1, y1)`` no label may touch.
    polylines : mapping owner -> array (n, 2), optional
        Dense points of lines no label may cover, except the label's own
        (:func:`resample_polyline`).
    bounds : array (4,), optional
        Box every label must stay inside.
    margin : float
        Clearance in pixels.
    passes : int
        Greedy passes before giving up.

    Returns
    -------
    placed : dict key -> array (4,)
        The box chosen for each label that could be placed.
    failed : list of key
        Labels without a feasible place (empty on success).
    """
    polylines = dict(polylines or {})
    feasible: dict[Hashable, list[tuple[float, np.ndarray]]] = {}
    for key, req in requests.items():
        w, h = req.size
        options = []
        for cx, cy, cost in req.candidates:
            box = _box(cx, cy, w, h)
            if bounds is not None and (box[0] < bounds[0] or box[1] < bounds[1] or box[2] > bounds[2] or box[3] > bounds[3]):
                continue
            if any(boxes_overlap(box, ob, margin) for ob in obstacles):
                continue
            if any(box_hits_points(box, pts, margin) for owner, pts in polylines.items() if owner != req.owner):
                continue
            options.append((float(cost), box))
        options.sort(key=lambda o: o[0])
        feasible[key] = options

    order = sorted(requests, key=lambda k: (len(feasible[k]), str(k)))
    placed: dict[Hashable, np.ndarray] = {}
    failed: list[Hashable] = []
    for _ in range(max(passes, 1)):
        placed, failed = {}, []
        for key in order:
            for _, box in feasible[key]:
                if not any(boxes_overlap(box, other, margin) for other in placed.values()):
                    placed[key] = box
                    break
            else:
                failed.append(key)
        if not failed:
            break
        order = failed + [k for k in order if k not in failed]
    return placed, failed
