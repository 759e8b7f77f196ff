"""Choose the number of hidden states by BIC on held-out runs (section 2.1).

For every K in a range and every restart, a Gaussian HMM is fitted by Baum-Welch
on the training runs and scored on the held-out runs with

    BIC = -2 log p(Z_val) + p ln(n_val),

where ``n_val`` is the number of held-out checkpoints and ``p`` the number of
free parameters, ``(K-1) + K(K-1) + K d + K d(d+1)/2`` (full covariance) or
``(K-1) + K(K-1) + 2 K d`` (diagonal). Among the restarts of one K the model with
the highest *training* log-likelihood is kept (choosing by held-out likelihood
would let the validation runs pick the parameters as well as K); restarts within a
relative :data:`TIE_RTOL` (1e-9) of the highest are tied and the lowest restart
index wins. The chosen K minimises that model's BIC (the smaller K on ties).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from bayes_trainmap.core.defaults import STATES_RANGE
from bayes_trainmap.core.errors import ModelSelectionError
from bayes_trainmap.core.executors import Executor, LocalExecutor, execute
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.errors import InferenceError
from bayes_trainmap.inference.params import COVARIANCE_TYPES, bic, n_free_parameters

__all__ = [
    "DEFAULT_STATES",
    "SelectionResult",
    "check_supported",
    "model_size_warning",
    "range_edge_warning",
    "MIN_VALUES_PER_PARAMETER",
    "fit_candidate",
    "n_free_parameters",
    "parse_states",
    "restart_seed",
    "select_n_states",
]

logger = logging.getLogger(__name__)

#: The paper's search range for K.
DEFAULT_STATES = range(STATES_RANGE[0], STATES_RANGE[-1] + 1)

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


#: Observed values (checkpoints x features) per free parameter below which a K is flagged.
MIN_VALUES_PER_PARAMETER = 10


def model_size_warning(n_states: int, n_checkpoints: int, n_features: int, covariance_type: str = "full") -> str | None:
    """Why a K that :func:`check_supported` accepts is still too large for the data, or None.

    The rule: a K-state model with ``p`` free parameters is flagged when the
    training data hold fewer than :data:`MIN_VALUES_PER_PARAMETER` observed values
    (checkpoints x features) per parameter. Below that BIC's large-sample
    approximation is unreliable and the per-state covariances are set mostly by
    the ``min_covar`` floor rather than by the data.
    """
    p = n_free_parameters(n_states, n_features, covariance_type)
    n_values = int(n_checkpoints) * int(n_features)
    if n_values >= MIN_VALUES_PER_PARAMETER * p:
        return None
    return (
        f"K={n_states} ({covariance_type} covariance) has {p:,} free parameters for {n_checkpoints:,} training "
        f"checkpoints x {n_features} features = {n_values:,} values ({n_values / p:.1f} per parameter, "
        f"fewer than {MIN_VALUES_PER_PARAMETER}): the model is over-parametrised for the data, its BIC is "
        "unreliable and its covariances are set mostly by the min_covar floor; use fewer states, "
        "--covariance diag or more runs"
    )


def range_edge_warning(curve: pd.DataFrame, best_n_states: int) -> str | None:
    """Warn when the chosen K is the largest searched and BIC was still falling there.

    Parameters
    ----------
    curve : pandas.DataFrame
        Selection curve with ``n_states`` and ``bic`` columns (one row per K).
    best_n_states : int
        The chosen K.

    Returns
    -------
    str or None
        None when one K was searched, or the chosen K is below the top of the range.
    """
    ks = curve["n_states"].to_numpy(dtype=int)
    if ks.size < 2 or int(best_n_states) != int(ks.max()):
        return None
    bic = curve.set_index("n_states")["bic"]
    top = int(ks.max())
    below = int(ks[ks < top].max())
    return (
        f"the chosen K={top} is the largest K searched ({int(ks.min())}..{top}) and BIC was still falling "
        f"(K={below}: {bic[below]:.6g}, K={top}: {bic[top]:.6g}); a larger K may fit better, so the map may "
        "merge states -- widen the search with --states A-B if the data support it"
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
        One row per K, the restart with the highest training log-likelihood
        (the lowest restart among those within a relative 1e-9 of it):
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
    executor: Executor | None = None,
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
    executor : bayes_trainmap.core.executors.Executor, optional
        Where the (K, restart) fits run (default: one after the other in this
        process); e.g. a :class:`~bayes_trainmap.core.executors.ray_cluster.RayExecutor`
        runs them as Ray tasks with the same results. A fit that fails re-raises its
        error here.

    Returns
    -------
    SelectionResult

    Raises
    ------
    ModelSelectionError
        If some K cannot be fitted to the training data (too many parameters or
        states for the checkpoints), or the inputs are inconsistent.
    """
    X_train, len_train, X_val, len_val = _checked_data(X_train, len_train, X_val, len_val)
    candidates = _candidate_states(states, covariance_type, n_restarts)
    n_train, d = X_train.shape
    for k in candidates:
        check_supported(k, n_train, d, covariance_type)

    fit_one = partial(
        fit_candidate,
        X_train=X_train,
        len_train=len_train,
        X_val=X_val,
        len_val=len_val,
        base_seed=_base_seed(random_state),
        covariance_type=covariance_type,
        n_iter=n_iter,
        tol=tol,
        device=device,
        min_covar=min_covar,
        feature_names=list(feature_names) if feature_names is not None else None,
    )
    # Every (K, restart) fit is independent and seeded by restart_seed, so any executor
    # (in-process or Ray tasks) reproduces the same sweep; values come back in item order.
    candidates_by_name = {f"K={k} restart={r}": (k, r) for k in candidates for r in range(n_restarts)}
    report = execute(executor if executor is not None else LocalExecutor(), fit_one, candidates_by_name,
                     desc="BIC sweep", unit="fit", progress=progress, fail_fast=True)
    return _selection_result(report.values, candidates_by_name, candidates, int(X_val.shape[0]))


def _checked_data(X_train, len_train, X_val, len_val) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sweep's data as float64 ``(n, d)`` and int64 ``(N,)`` arrays; raises
    :class:`ModelSelectionError` for inconsistent shapes or no held-out checkpoint."""
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
    return X_train, len_train, X_val, len_val


def _candidate_states(states, covariance_type: str, n_restarts: int) -> list[int]:
    """The sorted candidate numbers of states; raises :class:`ModelSelectionError` for
    an unknown covariance type, no restart or a non-positive candidate."""
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
    return candidates


def _selection_result(values: dict, candidates_by_name: dict, candidates: list[int], n_val: int) -> SelectionResult:
    """Pick K from the sweep's ``(row, model)`` per fit: the best restart of each K,
    then the K of lowest held-out BIC."""
    rows = [row for row, _ in values.values()]
    fitted = {candidates_by_name[name]: model for name, (_, model) in values.items()}

    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    curve = _best_restarts(table)[CURVE_COLUMNS].reset_index(drop=True)
    best_index = int(np.argmin(curve["bic"].to_numpy()))
    best_k = int(curve["n_states"].iat[best_index])
    models = {int(r.n_states): fitted[(int(r.n_states), int(r.restart))] for r in curve.itertuples()}
    logger.info("selected K=%d (BIC %.6g) from K in %s", best_k, curve["bic"].iat[best_index], candidates)
    return SelectionResult(
        table=table, curve=curve, best_n_states=best_k, best_model=models[best_k], models=models, n_val=n_val
    )


#: Relative gap below which two restarts' training log-likelihoods count as a tie.
TIE_RTOL = 1e-9


def _best_restarts(table: pd.DataFrame) -> pd.DataFrame:
    """Per K, the restart with the highest training log-likelihood (lowest index on ties).

    Restarts that reach the same optimum differ only by rounding, which depends on
    summation order and memory alignment and hence on the process that ran the fit;
    treating gaps below :data:`TIE_RTOL` as ties makes the choice the same in every
    process and on every executor.
    """
    best = table.groupby("n_states")["train_log_likelihood"].transform("max")
    tied = table["train_log_likelihood"] >= best - TIE_RTOL * np.maximum(1.0, best.abs())
    return table[tied].sort_values(["n_states", "restart"]).groupby("n_states", sort=True).head(1)


def fit_candidate(
    candidate: tuple[int, int],
    *,
    X_train: np.ndarray,
    len_train: np.ndarray,
    X_val: np.ndarray,
    len_val: np.ndarray,
    base_seed: int,
    covariance_type: str = "full",
    n_iter: int = 100,
    tol: float = 1e-4,
    device: str = "cpu",
    min_covar: float = 1e-3,
    feature_names: Sequence[str] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Fit restart ``r`` of a K-state HMM and score it on the held-out runs.

    One work item of the sweep in :func:`select_n_states`: a pure function of its
    arguments (the seed is :func:`restart_seed` ``(base_seed, K, r)``), so it gives the
    same result in this process or in a Ray worker.

    Parameters
    ----------
    candidate : (int, int)
        ``(K, r)``: number of states and restart index.
    X_train, len_train, X_val, len_val, covariance_type, n_iter, tol, device, min_covar,
    feature_names
        As in :func:`select_n_states`.
    base_seed : int
        The sweep's ``random_state`` as an int.

    Returns
    -------
    row : dict
        The sweep table's row for this fit (columns :data:`TABLE_COLUMNS`).
    model : inference.baum_welch.GaussianHMM
        The fitted model.
    """
    k, restart = (int(value) for value in candidate)
    seed = restart_seed(base_seed, k, restart)
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
        feature_names=list(feature_names) if feature_names is not None else None,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X_train, len_train)
        except InferenceError as exc:  # the engine's own error, at this layer's boundary
            raise ModelSelectionError(f"K={k}, restart {restart}: {exc}") from exc
    empty_events = _reemit(caught, k, restart)
    val_ll = float(model.score(X_val, len_val))
    p = n_free_parameters(k, X_train.shape[1], covariance_type)
    n_val = int(X_val.shape[0])
    row = {
        "n_states": k,
        "restart": restart,
        "seed": seed,
        "train_log_likelihood": float(model.log_likelihood_),
        "val_log_likelihood": val_ll,
        "n_parameters": p,
        "bic": bic(val_ll, p, n_val),
        "aic": -2.0 * val_ll + 2.0 * p,
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "empty_state_events": empty_events,
    }
    return row, model


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
