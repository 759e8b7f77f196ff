"""Baselines of appendix C (Hu et al., 2023): k-means and HMM-1, each selected by BIC.

Both are scored like the HMM: fitted on the training runs, their
log-likelihood evaluated on the held-out runs, and

    BIC = -2 LL_val + p ln(n_val),     n_val = number of held-out checkpoints,

minimised over the same range of component counts. BICs are comparable only
within a model class (the paper's caveat, repeated in the report).

k-means likelihood
------------------
k-means has no likelihood of its own; it is scored as the hard-assignment
Gaussian mixture it is the zero-temperature limit of (as in X-means, Pelleg &
Moore 2000): spherical components with one **shared** variance

    sigma^2 = inertia_train / (n_train * d),

mixing weights ``pi_c = n_c / n_train`` (training cluster sizes), and each
held-out point assigned to its nearest centroid ``c(x)``:

    LL_val = sum_x [ ln pi_c(x) - d/2 ln(2 pi sigma^2) - ||x - mu_c(x)||^2 / (2 sigma^2) ],

with ``p = (K - 1) + K d + 1`` free parameters (weights, centroids, variance).

HMM-1
-----
A Gaussian HMM (:class:`inference.baum_welch.GaussianHMM`) on the ``l2``
feature alone (d = 1), with ``p = (K-1) + K(K-1) + 2K``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import BayesTrainmapError, ModelSelectionError
from bayes_trainmap.inference.baum_welch import GaussianHMM

__all__ = [
    "BaselineSelection",
    "kmeans_log_likelihood",
    "kmeans_selection",
    "hmm1_selection",
    "baselines_table",
    "hmm_selection_from_curve",
    "DEFAULT_STATES_RANGE",
]

logger = logging.getLogger(__name__)

DEFAULT_STATES_RANGE = tuple(range(1, 9))


@dataclass
class BaselineSelection:
    """BIC selection of one model class.

    Attributes
    ----------
    model : str
        ``"k-means"``, ``"HMM-1"`` or ``"HMM"``.
    curve : pandas.DataFrame
        Columns ``n_components, val_log_likelihood, n_parameters, bic``.
    best_n_components : int
    best_bic : float
    """

    model: str
    curve: pd.DataFrame
    best_n_components: int
    best_bic: float

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "best_n_components": int(self.best_n_components),
            "best_bic": float(self.best_bic),
            "curve": [
                {
                    "n_components": int(r.n_components),
                    "val_log_likelihood": float(r.val_log_likelihood) if np.isfinite(r.val_log_likelihood) else None,
                    "n_parameters": int(r.n_parameters),
                    "bic": float(r.bic),
                }
                for r in self.curve.itertuples()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "BaselineSelection":
        curve = pd.DataFrame(d["curve"], columns=["n_components", "val_log_likelihood", "n_parameters", "bic"])
        curve["val_log_likelihood"] = curve["val_log_likelihood"].astype(float)
        return cls(d["model"], curve, int(d["best_n_components"]), float(d["best_bic"]))


def _selection(model: str, rows: list[dict]) -> BaselineSelection:
    curve = pd.DataFrame(rows, columns=["n_components", "val_log_likelihood", "n_parameters", "bic"])
    best = curve.loc[curve["bic"].idxmin()]
    return BaselineSelection(model, curve, int(best["n_components"]), float(best["bic"]))


def _check_range(states_range, n_train: int) -> list[int]:
    ks = sorted({int(k) for k in states_range})
    if not ks or ks[0] < 1:
        raise ModelSelectionError(f"states_range must contain positive integers, got {list(states_range)}")
    if ks[-1] > n_train:
        raise ModelSelectionError(f"cannot fit {ks[-1]} components to {n_train} training checkpoints")
    return ks


def kmeans_log_likelihood(kmeans, X_train: np.ndarray, X_val: np.ndarray) -> float:
    """Held-out log-likelihood of a fitted k-means under the hard-assignment mixture above.

    Parameters
    ----------
    kmeans : sklearn.cluster.KMeans
        Fitted on ``X_train``.
    X_train : numpy.ndarray, shape (n_train, d)
    X_val : numpy.ndarray, shape (n_val, d)

    Returns
    -------
    float
    """
    n_train, d = X_train.shape
    sigma2 = max(float(kmeans.inertia_) / (n_train * d), 1e-12)
    counts = np.bincount(kmeans.labels_, minlength=kmeans.n_clusters).astype(float)
    log_pi = np.log(np.maximum(counts, 1e-300) / n_train)
    labels = kmeans.predict(X_val)
    sq = ((X_val - kmeans.cluster_centers_[labels]) ** 2).sum(axis=1)
    return float(np.sum(log_pi[labels] - 0.5 * d * np.log(2 * np.pi * sigma2) - sq / (2 * sigma2)))


def kmeans_selection(
    X_train: np.ndarray,
    X_val: np.ndarray,
    states_range=DEFAULT_STATES_RANGE,
    *,
    n_init: int = 5,
    random_state: int = 0,
) -> BaselineSelection:
    """Select the number of k-means clusters by held-out BIC.

    Parameters
    ----------
    X_train : numpy.ndarray, shape (n_train, d)
        Training checkpoints (z-scored features, all runs concatenated).
    X_val : numpy.ndarray, shape (n_val, d)
        Held-out checkpoints.
    states_range : iterable of int
        Cluster counts to try (the HMM's range).
    n_init : int
        k-means restarts per count.
    random_state : int

    Returns
    -------
    BaselineSelection
    """
    from sklearn.cluster import KMeans

    X_train = np.asarray(X_train, dtype=float)
    X_val = np.asarray(X_val, dtype=float)
    if X_train.ndim != 2 or X_val.ndim != 2 or X_train.shape[1] != X_val.shape[1]:
        raise BayesTrainmapError(f"X_train {X_train.shape} and X_val {X_val.shape} must be (n, d) with equal d")
    n_val, d = X_val.shape
    rows = []
    for k in _check_range(states_range, X_train.shape[0]):
        km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(X_train)
        ll = kmeans_log_likelihood(km, X_train, X_val)
        p = (k - 1) + k * d + 1
        rows.append({"n_components": k, "val_log_likelihood": ll, "n_parameters": p, "bic": -2 * ll + p * np.log(n_val)})
    return _selection("k-means", rows)


def hmm1_selection(
    x_train: np.ndarray,
    len_train: np.ndarray,
    x_val: np.ndarray,
    len_val: np.ndarray,
    states_range=DEFAULT_STATES_RANGE,
    *,
    n_restarts: int = 2,
    n_iter: int = 100,
    random_state: int = 0,
) -> BaselineSelection:
    """Select the number of states of a one-feature Gaussian HMM (HMM-1) by held-out BIC.

    Parameters
    ----------
    x_train : numpy.ndarray, shape (n_train,) or (n_train, 1)
        The ``l2`` feature of the training runs, concatenated.
    len_train : numpy.ndarray of int, shape (N_train,)
    x_val : numpy.ndarray, shape (n_val,) or (n_val, 1)
    len_val : numpy.ndarray of int, shape (N_val,)
    states_range : iterable of int
    n_restarts, n_iter : int
        Passed to :class:`inference.baum_welch.GaussianHMM`.
    random_state : int

    Returns
    -------
    BaselineSelection
    """
    x_train = np.asarray(x_train, dtype=float).reshape(-1, 1)
    x_val = np.asarray(x_val, dtype=float).reshape(-1, 1)
    n_val = x_val.shape[0]
    rows = []
    for k in _check_range(states_range, x_train.shape[0]):
        model = GaussianHMM(
            k, covariance_type="full", n_iter=n_iter, n_restarts=n_restarts, random_state=random_state
        ).fit(x_train, len_train)
        ll = float(model.score(x_val, len_val))
        p = int(model.n_parameters())
        rows.append({"n_components": k, "val_log_likelihood": ll, "n_parameters": p, "bic": -2 * ll + p * np.log(n_val)})
    return _selection("HMM-1", rows)


def baselines_table(selections: list[BaselineSelection]) -> pd.DataFrame:
    """The paper's Table-4 row: components and BIC per model class.

    Returns
    -------
    pandas.DataFrame
        One row per model class: ``model, components, bic``.
    """
    return pd.DataFrame(
        [{"model": s.model, "components": s.best_n_components, "bic": s.best_bic} for s in selections],
        columns=["model", "components", "bic"],
    )


def hmm_selection_from_curve(curve: pd.DataFrame) -> BaselineSelection:
    """Wrap the full HMM's selection curve (``n_states, bic, val_log_likelihood``) as a row of Table 4."""
    if curve is None or len(curve) == 0:
        raise BayesTrainmapError("the HMM selection curve is empty")
    frame = pd.DataFrame(
        {
            "n_components": curve["n_states"].astype(int),
            "val_log_likelihood": curve["val_log_likelihood"].astype(float)
            if "val_log_likelihood" in curve
            else np.nan,
            "n_parameters": curve["n_parameters"].astype(int) if "n_parameters" in curve else -1,
            "bic": curve["bic"].astype(float),
        }
    )
    return _selection("HMM", frame.to_dict(orient="records"))
