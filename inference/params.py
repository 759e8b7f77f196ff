"""The Gaussian-HMM parameter container shared by every engine.

:class:`HMMParams` holds one fitted (or initial) Gaussian hidden Markov model:
initial state probabilities, the transition matrix, per-state means and
covariances, plus the names of the features and a description of the
preprocessing that produced them. The maximum-likelihood engine
(:mod:`inference.baum_welch`) and the Bayesian engine produce and consume it.

It is saved as JSON (``.json``: arrays as nested lists of floats, which Python
writes in shortest round-trip form, so a save/load cycle is bit-exact) or as NPZ
(``.npz``, read with ``allow_pickle=False``). Loading a file never runs code.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HMMParams", "COVARIANCE_TYPES", "FORMAT_VERSION"]

#: Supported covariance structures.
COVARIANCE_TYPES: tuple[str, ...] = ("full", "diag")

#: Version of the on-disk layout written by :meth:`HMMParams.save`.
FORMAT_VERSION = 1

#: Tolerance on probability rows summing to one.
_SUM_TOL = 1e-6
#: Relative tolerance on the symmetry of full covariance matrices.
_SYM_TOL = 1e-8

_ARRAY_FIELDS = ("start_prob", "trans_mat", "means", "covars")


@dataclass(eq=False)
class HMMParams:
    """Parameters of a Gaussian HMM with ``K`` states over ``d`` features.

    Parameters
    ----------
    start_prob : array, shape (K,)
        Initial state distribution p(s_1 = k).
    trans_mat : array, shape (K, K)
        Transition matrix, ``trans_mat[j, k] = p(s_{t+1} = k | s_t = j)``; rows sum to 1.
    means : array, shape (K, d)
        Emission means.
    covars : array, shape (K, d, d) for ``"full"`` or (K, d) for ``"diag"``
        Emission covariances (full matrices, or the diagonal variances).
    covariance_type : {"full", "diag"}
    feature_names : list of str, optional
        One name per feature; defaults to ``feature_0 ... feature_{d-1}``.
    normalization : dict, optional
        Free-form, JSON-serialisable description of the preprocessing, e.g.
        ``{"method": "zscore_per_run", "window": 1000}``.

    Raises
    ------
    ValueError
        If shapes disagree, probabilities are negative or rows do not sum to one,
        or a covariance is not symmetric positive definite. Arrays are converted to
        float64 copies and validated on construction.
    """

    start_prob: np.ndarray
    trans_mat: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    covariance_type: str = "full"
    feature_names: list[str] = field(default_factory=list)
    normalization: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            if hasattr(value, "detach"):  # torch tensor
                value = value.detach().cpu().numpy()
            setattr(self, name, np.array(value, dtype=np.float64, copy=True))
        self.feature_names = [str(n) for n in self.feature_names]
        if not self.feature_names and self.means.ndim == 2:
            self.feature_names = [f"feature_{i}" for i in range(self.means.shape[1])]
        self.normalization = dict(self.normalization)
        self.validate()

    # ------------------------------------------------------------------ shapes
    @property
    def n_states(self) -> int:
        """Number of hidden states ``K``."""
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        """Number of observed features ``d``."""
        return int(self.means.shape[1])

    def validate(self) -> None:
        """Check shapes, probabilities and covariances; raise ``ValueError`` if bad."""
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}"
            )
        if self.means.ndim != 2 or self.means.shape[0] < 1 or self.means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {self.means.shape}")
        K, d = self.means.shape
        if self.start_prob.shape != (K,):
            raise ValueError(f"start_prob must have shape ({K},), got {self.start_prob.shape}")
        if self.trans_mat.shape != (K, K):
            raise ValueError(f"trans_mat must have shape ({K}, {K}), got {self.trans_mat.shape}")
        expected_cov = (K, d, d) if self.covariance_type == "full" else (K, d)
        if self.covars.shape != expected_cov:
            raise ValueError(
                f"covars must have shape {expected_cov} for covariance_type="
                f"{self.covariance_type!r}, got {self.covars.shape}"
            )
        if len(self.feature_names) != d:
            raise ValueError(
                f"feature_names has {len(self.feature_names)} names, expected {d} (one per feature)"
            )
        for name in _ARRAY_FIELDS:
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} contains NaN or infinite values")
        _check_stochastic("start_prob", self.start_prob[None, :])
        _check_stochastic("trans_mat", self.trans_mat)
        if self.covariance_type == "diag":
            bad = np.argwhere(self.covars <= 0)
            if bad.size:
                k, i = bad[0]
                raise ValueError(
                    f"diagonal covariance of state {k} must be positive, got "
                    f"covars[{k}, {i}] = {float(self.covars[k, i])}"
                )
        else:
            scale = np.maximum(np.abs(self.covars).max(axis=(1, 2)), np.finfo(float).tiny)
            asym = np.abs(self.covars - self.covars.swapaxes(1, 2)).max(axis=(1, 2)) / scale
            for k in np.flatnonzero(asym > _SYM_TOL):
                raise ValueError(
                    f"covariance of state {k} is not symmetric (max relative asymmetry {asym[k]:.3g})"
                )
            for k in range(K):
                try:
                    np.linalg.cholesky(self.covars[k])
                except np.linalg.LinAlgError:
                    raise ValueError(
                        f"covariance of state {k} is not positive definite"
                    ) from None

    # ------------------------------------------------------------- derived
    def full_covars(self) -> np.ndarray:
        """Covariances as full matrices, shape (K, d, d) (a copy)."""
        if self.covariance_type == "full":
            return self.covars.copy()
        K, d = self.covars.shape
        out = np.zeros((K, d, d))
        idx = np.arange(d)
        out[:, idx, idx] = self.covars
        return out

    def n_free_parameters(self) -> int:
        """Number of free parameters ``p`` used by BIC/AIC.

        ``(K-1) + K(K-1) + K d`` plus ``K d(d+1)/2`` (full) or ``K d`` (diag).
        """
        return n_free_parameters(self.n_states, self.n_features, self.covariance_type)

    def permute(self, order) -> HMMParams:
        """Relabel the states: new state ``i`` is old state ``order[i]``.

        Parameters
        ----------
        order : sequence of int, shape (K,)
            A permutation of ``range(K)``.
        """
        order = np.asarray(order)
        if order.shape != (self.n_states,) or not np.array_equal(
            np.sort(order), np.arange(self.n_states)
        ):
            raise ValueError(
                f"order must be a permutation of range({self.n_states}), got {order.tolist()}"
            )
        return HMMParams(
            start_prob=self.start_prob[order],
            trans_mat=self.trans_mat[np.ix_(order, order)],
            means=self.means[order],
            covars=self.covars[order],
            covariance_type=self.covariance_type,
            feature_names=list(self.feature_names),
            normalization=dict(self.normalization),
        )

    def copy(self) -> HMMParams:
        """A deep copy."""
        return self.permute(np.arange(self.n_states))

    def allclose(self, other: HMMParams, rtol: float = 1e-10, atol: float = 0.0) -> bool:
        """Whether all arrays agree to the given tolerance and the metadata is equal."""
        return (
            self.covariance_type == other.covariance_type
            and self.feature_names == other.feature_names
            and self.normalization == other.normalization
            and all(
                getattr(self, n).shape == getattr(other, n).shape
                and np.allclose(getattr(self, n), getattr(other, n), rtol=rtol, atol=atol)
                for n in _ARRAY_FIELDS
            )
        )

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: arrays become nested lists of floats."""
        out: dict[str, Any] = {"format_version": FORMAT_VERSION}
        for name in _ARRAY_FIELDS:
            out[name] = getattr(self, name).tolist()
        out["covariance_type"] = self.covariance_type
        out["feature_names"] = list(self.feature_names)
        out["normalization"] = dict(self.normalization)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HMMParams:
        """Inverse of :meth:`to_dict`; validates the result."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a dict of HMM parameters, got {type(data).__name__}")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported HMMParams format_version {version!r} (this version reads {FORMAT_VERSION})"
            )
        missing = [n for n in (*_ARRAY_FIELDS, "covariance_type") if n not in data]
        if missing:
            raise ValueError(f"HMM parameter data is missing {missing}")
        return cls(
            start_prob=np.asarray(data["start_prob"], dtype=np.float64),
            trans_mat=np.asarray(data["trans_mat"], dtype=np.float64),
            means=np.asarray(data["means"], dtype=np.float64),
            covars=np.asarray(data["covars"], dtype=np.float64),
            covariance_type=str(data["covariance_type"]),
            feature_names=list(data.get("feature_names", [])),
            normalization=dict(data.get("normalization", {})),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` as JSON (``.json``) or NPZ (``.npz``); returns the path.

        The write is not atomic; the fit directory is written in a staging directory
        that is renamed into place, and :func:`bayes_trainmap.core.storage.write_bytes_atomic`
        takes :meth:`to_bytes` for a single atomic file.
        """
        path = Path(path)
        path.write_bytes(self.to_bytes(path.suffix))
        return path

    def to_bytes(self, suffix: str = ".json") -> bytes:
        """The file content of :meth:`save` for ``suffix`` ``".json"`` or ``".npz"``."""
        suffix = suffix.lower()
        if suffix == ".json":
            return json.dumps(self.to_dict(), indent=1, allow_nan=False).encode()
        if suffix != ".npz":
            raise ValueError(f"HMMParams can be saved as .json or .npz, got {suffix!r}")
        meta = {k: v for k, v in self.to_dict().items() if k not in _ARRAY_FIELDS}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **{n: getattr(self, n) for n in _ARRAY_FIELDS})
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike) -> HMMParams:
        """Read parameters written by :meth:`save` (JSON or NPZ, never pickle)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
            return cls.from_dict(data)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                missing = [n for n in ("meta", *_ARRAY_FIELDS) if n not in npz.files]
                if missing:
                    raise ValueError(f"{path} is missing arrays {missing}")
                data = json.loads(str(npz["meta"]))
                for name in _ARRAY_FIELDS:
                    data[name] = npz[name]
            return cls.from_dict(data)
        raise ValueError(f"HMMParams files end in .json or .npz, got {path.name!r}")


def n_free_parameters(n_states: int, n_features: int, covariance_type: str = "full") -> int:
    """Free parameters ``p`` of a K-state Gaussian HMM with d features.

    ``(K-1)`` initial probabilities, ``K(K-1)`` transition probabilities, ``K d``
    means and ``K d(d+1)/2`` (full) or ``K d`` (diag) covariance entries.
    """
    k, d = int(n_states), int(n_features)
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    cov = k * d * (d + 1) // 2 if covariance_type == "full" else k * d
    return (k - 1) + k * (k - 1) + k * d + cov


def bic(log_likelihood: float, n_parameters: int, n_observations: int) -> float:
    """Bayesian information criterion ``-2 log L + p ln(n)`` (n: checkpoints scored)."""
    return -2.0 * float(log_likelihood) + int(n_parameters) * float(np.log(n_observations))


def _check_stochastic(name: str, rows: np.ndarray) -> None:
    """Raise if any row has a negative entry or does not sum to one."""
    if np.any(rows < 0):
        i, j = np.argwhere(rows < 0)[0]
        where = f"{name}[{j}]" if rows.shape[0] == 1 else f"{name}[{i}, {j}]"
        raise ValueError(f"{name} must be non-negative, got {where} = {float(rows[i, j])}")
    sums = rows.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOL)
    if bad.size:
        i = bad[0]
        where = name if rows.shape[0] == 1 else f"row {i} of {name}"
        raise ValueError(f"{where} must sum to 1, sums to {float(sums[i])}")
