"""Normalising the checkpoints of a new run the way a fitted map expects.

The fit z-scores every run with the mean and SD (ddof=0) of its own first
``min(T, window)`` checkpoints (:func:`bayes_trainmap.data.zscore_per_run`). A
finished run can be normalised exactly that way (``"run"``). A run that is still
training does not have its window yet, so online use needs an explicit choice:

``"reference"``
    Every checkpoint is z-scored with statistics pooled from the windows of the
    fit's training runs: the window-size-weighted mean of their per-run means and
    the pooled within-run SD ``sqrt(sum n_i s_i^2 / sum n_i)``. Fixed from the first
    checkpoint; wrong by the new run's offset from a typical run.
``"prefix"``
    Checkpoint ``t`` is z-scored with the mean and SD of the checkpoints seen so far
    within the window (``1 .. min(t, window)``); from checkpoint ``window`` on this
    equals the offline normalisation. Early checkpoints are scaled by a short,
    noisy prefix (the first one is always 0).

``"blend"``
    The prefix statistics shrunk towards the reference ones, as if the reference
    had been observed ``prior_weight`` times (default 10 checkpoints): mean
    ``(n0 m_ref + t m_t) / (n0 + t)``, variance ``(n0 s_ref^2 + t s_t^2) / (n0 + t)``,
    ``t`` counted within the window. The first checkpoints lean on the reference,
    later ones on the run itself.

All are causal: the value given to checkpoint ``t`` never changes later.
``"given"`` passes values through unchanged, for callers that normalise themselves
(e.g. with the offline z-scores of a finished run, as an upper bound in benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.data.preprocess import CONSTANT_RTOL, zscore_per_run

__all__ = [
    "NORMALIZATIONS",
    "PrefixNormalizer",
    "Reference",
    "ReferenceNormalizer",
    "make_normalizer",
    "normalize_offline",
    "normalize_online",
    "reference_from_fit",
]

#: Online normalisation choices (see the module docstring).
NORMALIZATIONS = ("reference", "prefix", "blend")

#: Pseudo-count of the reference statistics in ``"blend"`` (checkpoints).
BLEND_PRIOR_WEIGHT = 10


@dataclass(frozen=True)
class Reference:
    """What a fit directory says about normalisation.

    Attributes
    ----------
    features : list of str
        Model features, in column order.
    window : int
        z-scoring window (checkpoints).
    mean, std : numpy.ndarray, shape (d,)
        Statistics pooled from the training runs' windows (``std`` 0 where the
        feature was constant in all of them).
    n_runs : int
        Training runs pooled.
    """

    features: list[str]
    window: int
    mean: np.ndarray
    std: np.ndarray
    n_runs: int


def reference_from_fit(fd) -> Reference:
    """The normalisation of a fit directory (``zscore.json``, ``config.json``, ``summary.json``).

    Pools over the runs of the training split, so that held-out runs are normalised
    without their own statistics. Older fit directories need nothing new: the
    per-run raw means and SDs are in ``zscore.json``, the window sizes follow from
    the run lengths in ``summary.json``.

    Raises
    ------
    FitDirectoryError-compatible BayesTrainmapError
        If ``zscore.json`` lacks the per-run statistics of a model feature.
    """
    features = list(fd.feature_names)
    info = fd.zscore
    window = int(info.get("window", fd.config.get("config", {}).get("window", 1000)))
    names = list(info.get("feature_names", []))
    runs = [str(r) for r in info.get("run_ids", [])]
    if info.get("method", "zscore_per_run") != "zscore_per_run":
        raise BayesTrainmapError(f"fit directory '{fd.path}' uses normalisation {info.get('method')!r}; "
                                 "only 'zscore_per_run' is supported")
    missing = [f for f in features if f not in names]
    if missing or "means" not in info or "stds" not in info:
        raise BayesTrainmapError(f"zscore.json of '{fd.path}' has no per-run statistics for {missing or features}")
    cols = [names.index(f) for f in features]
    means = np.asarray(info["means"], dtype=float)[:, cols]
    stds = np.asarray(info["stds"], dtype=float)[:, cols]
    train = set(map(str, fd.resolved.get("split", {}).get("train", runs)))
    lengths = {str(r["run"]): int(r["n_checkpoints"]) for r in fd.summary.get("runs", [])}
    rows = [i for i, r in enumerate(runs) if r in train]
    if not rows:
        raise BayesTrainmapError(f"fit directory '{fd.path}' names no training run in zscore.json")
    counts = np.array([min(lengths.get(runs[i], window), window) for i in rows], dtype=float)
    weight = counts / counts.sum()
    mean = weight @ means[rows]
    std = np.sqrt(weight @ stds[rows] ** 2)
    return Reference(features=features, window=window, mean=mean, std=std, n_runs=len(rows))


def _scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    flat = (std == 0) | (std <= CONSTANT_RTOL * np.abs(mean))
    return np.where(flat, 0.0, (x - mean) / np.where(flat, 1.0, std))


def normalize_offline(X: np.ndarray, lengths: np.ndarray, window: int) -> np.ndarray:
    """Per-run z-scores exactly as the fit computed them, shape (n, d)."""
    return zscore_per_run(X, lengths, window)[0]


class ReferenceNormalizer:
    """z-score every checkpoint with the fit's pooled reference statistics."""

    def __init__(self, reference: Reference):
        self.reference = reference

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise one checkpoint ``x`` of shape (d,)."""
        return _scale(np.asarray(x, dtype=float), self.reference.mean, self.reference.std)


class PrefixNormalizer:
    """z-score checkpoint ``t`` with the mean/SD of checkpoints ``1 .. min(t, window)``.

    Keeps the window's values (at most ``window`` rows of d floats) and computes the
    statistics with numpy's two-pass mean and SD, the same arithmetic as the offline
    normalisation, so the values agree with it from checkpoint ``window`` on.
    """

    def __init__(self, window: int):
        if int(window) < 1:
            raise BayesTrainmapError(f"window must be a positive number of checkpoints, got {window}")
        self.window = int(window)
        self._head: list[np.ndarray] = []
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise the next checkpoint ``x`` of shape (d,)."""
        x = np.asarray(x, dtype=float)
        if len(self._head) < self.window:
            self._head.append(x)
            head = np.vstack(self._head)
            self._mean, self._std = head.mean(axis=0), head.std(axis=0)
        return _scale(x, self._mean, self._std)


class BlendNormalizer(PrefixNormalizer):
    """Prefix statistics shrunk towards the reference (see the module docstring)."""

    def __init__(self, reference: Reference, prior_weight: float = BLEND_PRIOR_WEIGHT):
        super().__init__(reference.window)
        self.reference = reference
        self.prior_weight = float(prior_weight)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if len(self._head) < self.window:
            self._head.append(x)
            head = np.vstack(self._head)
            t, n0 = len(self._head), self.prior_weight
            ref = self.reference
            self._mean = (n0 * ref.mean + t * head.mean(axis=0)) / (n0 + t)
            self._std = np.sqrt((n0 * ref.std**2 + t * head.var(axis=0)) / (n0 + t))
        return _scale(x, self._mean, self._std)


def make_normalizer(method: str, reference: Reference):
    """A fresh per-run normaliser for ``method`` in :data:`NORMALIZATIONS` (or ``"given"``)."""
    if method == "given":
        return lambda x: np.asarray(x, dtype=float)
    if method == "reference":
        return ReferenceNormalizer(reference)
    if method == "prefix":
        return PrefixNormalizer(reference.window)
    if method == "blend":
        return BlendNormalizer(reference)
    raise BayesTrainmapError(f"unknown online normalisation {method!r}; expected one of {', '.join(NORMALIZATIONS)}")


def normalize_online(X: np.ndarray, lengths: np.ndarray, method: str, reference: Reference) -> np.ndarray:
    """Apply an online normalisation to whole runs (what streaming would have produced), shape (n, d)."""
    X = np.asarray(X, dtype=float)
    out = np.empty_like(X)
    start = 0
    for length in np.asarray(lengths, dtype=np.int64):
        norm = make_normalizer(method, reference)
        for t in range(start, start + int(length)):
            out[t] = norm(X[t])
        start += int(length)
    return out
