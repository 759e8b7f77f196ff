"""Choose the number of hidden states by BIC on held-out runs (section 2.1).

For every K in a range and every restart, a Gaussian HMM is fitted by Baum-Welch
on the training runs and scored on the held-out runs with

    BIC = -2 log p(Z_val) + p ln(n_val),

where ``n_val`` is the number of held-out checkpoints and ``p`` the number of
free parameters, ``(K-1) + K(K-1) + K d + K d(d+1)/2`` (full covariance) or
``(K-1) + K(K-1) + 2 K d`` (diagonal). Among the restarts of one K the model with
the highest *training* log-likelihood is kept (choosing by held-out likelihood
would let the validation runs pick the parameters as well as K); the chosen K
minimises that model's BIC.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bayes_trainmap.errors import ModelSelectionError

__all__ = [
    "DEFAULT_STATES",
    "SelectionResult",
    "check_supported",
    "n_free_parameters",
    "parse_states",
    "restart_seed",
    "select_n_states",
]

logger = logging.getLogger(__name__)

#: The paper's search range for K.
DEFAULT_STATES = range(1, 9)

COVARIANCE_TYPES = ("full", "diag")

TABLE_COLUMNS = [
    "n_states",
    "restart",
    "seed",
    "train_log_likelihood",
    "val_log_likelihood",
    "n_parameters",
    "bic",
    "aic",
    "converged",
    "n_iter",
    "empty_state_events",
]
CURVE_COLUMNS = ["n_states", "restart", "bic", "aic", "val_log_likelihood", "train_log_likelihood", "n_parameters"]


def n_free_parameters(n_states: int, n_features: int, covariance_type: str = "full") -> int:
    """Free parameters of a K-state Gaussian HMM with d features.

    ``(K-1)`` initial probabilities, ``K(K-1)`` transition probabilities, ``K d``
    means and ``K d(d+1)/2`` (full) or ``K d`` (diag) covariance entries.
    """
    k, d = int(n_states), int(n_features)
    if covariance_type == "full":
        cov = k * d * (d + 1) // 2
    elif covariance_type == "diag":
        cov = k * d
    else:
        raise ModelSelectionError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return (k - 1) + k * (k - 1) + k * d + cov


def check_supported(n_states: int, n_checkpoints: int, n_features: int, covariance_type: str = "full") -> None:
    """Raise :class:`ModelSelectionError` if K states cannot be fitted to the data.

    A K-state model needs at least K training checkpoints (one per state to
    initialise it) and no more free parameters than observed values
    (checkpoints x features).
    """
    p = n_free_parameters(n_states, n_features, covariance_type)
    n_values = n_checkpoints * n_features
    if n_states < 1:
        raise ModelSelectionError(f"the number of states must be at least 1, got K={n_states}")
    if n_states > n_checkpoints or p > n_values:
        raise ModelSelectionError(
            f"cannot fit K={n_states} states: the training runs have {n_checkpoints} checkpoints x "
            f"{n_features} features = {n_values} values, but a {covariance_type}-covariance model with "
            f"K={n_states} has {p} free parameters; expected fewer states or more data"
        )


def max_supported_states(n_checkpoints: int, n_features: int, covariance_type: str = "full") -> int:
    """Largest K that :func:`check_supported` accepts (0 if none)."""
    n_values = n_checkpoints * n_features
    k = 0
    while k + 1 <= n_checkpoints and n_free_parameters(k + 1, n_features, covariance_type) <= n_values:
        k += 1
    return k


def parse_states(spec: str | int | Iterable[int]) -> range | None:
    """Parse a K specification: ``"auto"`` (None: the caller's default range),
    ``"K"`` or an int, ``"A-B"`` (inclusive), or an iterable of consecutive ints.

    Raises
    ------
    ModelSelectionError
        For anything else, K < 1 or A > B.
    """
    if isinstance(spec, range):
        states = spec
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        states = range(int(spec), int(spec) + 1)
    elif isinstance(spec, str):
        text = spec.strip().lower()
        if text == "auto":
            return None
        single = re.fullmatch(r"(\d+)", text)
        interval = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
        if single:
            states = range(int(single[1]), int(single[1]) + 1)
        elif interval:
            low, high = int(interval[1]), int(interval[2])
            if low > high:
                raise ModelSelectionError(f"state range {spec!r} is empty: expected A-B with A <= B")
            states = range(low, high + 1)
        else:
            raise ModelSelectionError(f"cannot parse states {spec!r}: expected 'auto', a number K, or a range A-B")
    else:
        values = sorted(int(k) for k in spec)
        if not values:
            raise ModelSelectionError("the list of state counts is empty")
        states = range(values[0], values[-1] + 1)
        if list(states) != values:
            raise ModelSelectionError(f"state counts {values} must be consecutive")
    if len(states) == 0 or states.start < 1:
        raise ModelSelectionError(f"the number of states must be at least 1, got {spec!r}")
    return states


def restart_seed(random_state: int, n_states: int, restart: int) -> int:
    """Seed of restart ``restart`` for K = ``n_states``, derived from ``random_state``.

    A pure function of its arguments (via :class:`numpy.random.SeedSequence`
    spawn keys), so any executor running the (K, restart) fits in any order or
    place reproduces the same sweep.
    """
    if int(random_state) < 0:
        raise ModelSelectionError(f"random_state must be a non-negative integer, got {random_state}")
    sequence = np.random.SeedSequence(entropy=int(random_state), spawn_key=(int(n_states), int(restart)))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _base_seed(random_state: int | np.random.Generator | None) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**32))
    return int(random_state)


@dataclass
class SelectionResult:
    """Outcome of :func:`select_n_states`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (K, restart): ``n_states, restart, seed, train_log_likelihood,
        val_log_likelihood, n_parameters, bic, aic, converged, n_iter,
        empty_state_events``.
    curve : pandas.DataFrame
        One row per K, the restart with the highest training log-likelihood:
        ``n_states, restart, bic, aic, val_log_likelihood, train_log_likelihood,
        n_parameters``.
    best_n_states : int
        K with the smallest BIC on the curve (the smaller K on ties).
    best_model : inference.baum_welch.GaussianHMM
        The fitted model of that K.
    models : dict of int to GaussianHMM
        The curve's model for every K.
    n_val : int
        Held-out checkpoints used in the BIC penalty.
    """

    table: pd.DataFrame
    curve: pd.DataFrame
    best_n_states: int
    best_model: Any
    models: dict[int, Any] = field(default_factory=dict, repr=False)
    n_val: int = 0


def select_n_states(
    X_train: np.ndarray,
    len_train: np.ndarray,
    X_val: np.ndarray,
    len_val: np.ndarray,
    states: Iterable[int] = DEFAULT_STATES,
    n_restarts: int = 5,
    covariance_type: str = "full",
    random_state: int | np.random.Generator | None = 0,
    progress: bool = True,
    n_iter: int = 100,
    tol: float = 1e-4,
    *,
    device: str = "cpu",
    min_covar: float = 1e-3,
    feature_names: Sequence[str] | None = None,
) -> SelectionResult:
    """Fit HMMs for every K and restart, and pick K by held-out BIC.

    Parameters
    ----------
    X_train : numpy.ndarray, shape (n_train, d)
        z-scored training checkpoints, runs concatenated.
    len_train : numpy.ndarray, shape (N_train,)
    X_val : numpy.ndarray, shape (n_val, d)
        z-scored held-out checkpoints.
    len_val : numpy.ndarray, shape (N_val,)
    states : iterable of int, int or str
        Candidate numbers of states (default 1..8, as in the paper); a string
        is parsed by :func:`parse_states`.
    n_restarts : int
        Baum-Welch restarts per K, each from k-means initialisation with seed
        :func:`restart_seed` ``(random_state, K, restart)``.
    covariance_type : {"full", "diag"}
    random_state : int, Generator or None
    progress : bool
        Show a tqdm progress bar over the (K, restart) fits.
    n_iter, tol : EM iteration cap and relative tolerance.
    device : str
        Torch device passed to the engine ("cpu", "cuda", ...).
    min_covar : float
        Covariance regularisation of the engine.
    feature_names : sequence of str, optional

    Returns
    -------
    SelectionResult

    Raises
    ------
    ModelSelectionError
        If some K cannot be fitted to the training data (too many parameters or
        states for the checkpoints), or the inputs are inconsistent.
    """
    from inference.baum_welch import GaussianHMM

    X_train = np.asarray(X_train, dtype=np.float64)
    X_val = np.asarray(X_val, dtype=np.float64)
    len_train = np.asarray(len_train, dtype=np.int64)
    len_val = np.asarray(len_val, dtype=np.int64)
    if X_train.ndim != 2 or X_val.ndim != 2 or X_train.shape[1] != X_val.shape[1]:
        raise ModelSelectionError(
            f"X_train and X_val must be (n, d) arrays with the same d, got {X_train.shape} and {X_val.shape}"
        )
    if len_train.sum() != X_train.shape[0] or len_val.sum() != X_val.shape[0]:
        raise ModelSelectionError("lengths must sum to the number of rows of X_train / X_val")
    if X_val.shape[0] == 0:
        raise ModelSelectionError("no held-out checkpoints: BIC needs at least one held-out run")
    if covariance_type not in COVARIANCE_TYPES:
        raise ModelSelectionError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    if int(n_restarts) < 1:
        raise ModelSelectionError(f"n_restarts must be at least 1, got {n_restarts}")
    if isinstance(states, (str, int, np.integer)):
        parsed = parse_states(states)
        candidates = list(parsed if parsed is not None else DEFAULT_STATES)
    else:
        candidates = sorted({int(k) for k in states})
    if not candidates or candidates[0] < 1:
        raise ModelSelectionError(f"candidate numbers of states must be positive integers, got {states!r}")
    n_train, d = X_train.shape
    n_val = int(X_val.shape[0])
    for k in candidates:
        check_supported(k, n_train, d, covariance_type)

    base = _base_seed(random_state)
    names = list(feature_names) if feature_names is not None else None
    rows: list[dict[str, Any]] = []
    fitted: dict[tuple[int, int], Any] = {}
    with tqdm(total=len(candidates) * n_restarts, desc="BIC sweep", unit="fit", disable=not progress) as bar:
        for k in candidates:
            for restart in range(n_restarts):
                bar.set_postfix_str(f"K={k} restart={restart}")
                seed = restart_seed(base, k, restart)
                model = GaussianHMM(
                    n_states=k,
                    covariance_type=covariance_type,
                    n_iter=n_iter,
                    tol=tol,
                    init="kmeans",
                    n_restarts=1,
                    min_covar=min_covar,
                    random_state=seed,
                    device=device,
                    feature_names=names,
                )
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    model.fit(X_train, len_train)
                empty_events = _reemit(caught, k, restart)
                val_ll = float(model.score(X_val, len_val))
                p = n_free_parameters(k, d, covariance_type)
                rows.append(
                    {
                        "n_states": k,
                        "restart": restart,
                        "seed": seed,
                        "train_log_likelihood": float(model.log_likelihood_),
                        "val_log_likelihood": val_ll,
                        "n_parameters": p,
                        "bic": -2.0 * val_ll + p * np.log(n_val),
                        "aic": -2.0 * val_ll + 2.0 * p,
                        "converged": bool(model.converged_),
                        "n_iter": int(model.n_iter_),
                        "empty_state_events": empty_events,
                    }
                )
                fitted[(k, restart)] = model
                bar.update()

    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    best_rows = table.loc[table.groupby("n_states", sort=True)["train_log_likelihood"].idxmax()]
    curve = best_rows[CURVE_COLUMNS].reset_index(drop=True)
    best_index = int(np.argmin(curve["bic"].to_numpy()))
    best_k = int(curve["n_states"].iat[best_index])
    models = {int(r.n_states): fitted[(int(r.n_states), int(r.restart))] for r in curve.itertuples()}
    logger.info("selected K=%d (BIC %.6g) from K in %s", best_k, curve["bic"].iat[best_index], candidates)
    return SelectionResult(
        table=table, curve=curve, best_n_states=best_k, best_model=models[best_k], models=models, n_val=n_val
    )


def _reemit(caught: list[warnings.WarningMessage], n_states: int, restart: int) -> int:
    """Count the engine's empty-state reports; pass every other warning on."""
    empty = 0
    for message in caught:
        if message.category.__name__ == "EmptyStateWarning":
            empty += 1
            logger.debug("K=%d restart=%d: %s", n_states, restart, message.message)
        else:
            warnings.warn_explicit(message.message, message.category, message.filename, message.lineno)
    if empty:
        logger.info(
            "K=%d restart=%d: %d empty-state event(s), states re-seeded by the engine", n_states, restart, empty
        )
    return empty
