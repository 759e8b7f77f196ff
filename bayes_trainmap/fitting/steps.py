"""The named steps of a fit: prepare -> select -> refine -> decode -> analyse.

Each step is a function a user can call on its own (a notebook can re-run ``select``
with other options on the same :class:`Prepared` data, or ``analyse`` a model fitted
elsewhere); :func:`bayes_trainmap.fitting.pipeline.fit` composes them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayes_trainmap.analysis import Analysis, AnalysisOptions, analyze
from bayes_trainmap.analysis.convergence import (
    TASK_THRESHOLDS,
    convergence_from_arrays,
    direction_from_option,
    threshold_for_task,
)
from bayes_trainmap.core.device import resolve_device
from bayes_trainmap.core.errors import (
    BayesTrainmapError,
    ModelSelectionError,
    TrajectoryError,
)
from bayes_trainmap.core.executors import Executor
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.data import (
    TrajectorySet,
    ZScoreInfo,
    split_runs,
    validate,
    zscore_per_run,
)
from bayes_trainmap.data.fitted import SPLIT_TRAIN, SPLIT_VAL, FittedRuns
from bayes_trainmap.fitting import bayesian, robustness
from bayes_trainmap.fitting.config import BAYESIAN_MODES, FitConfig
from bayes_trainmap.fitting.selection import (
    DEFAULT_STATES,
    SelectionResult,
    check_supported,
    max_supported_states,
    model_size_warning,
    parse_states,
    range_edge_warning,
    select_n_states,
)
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.params import HMMParams

__all__ = ["DEFAULT_OUTCOME", "DEFAULT_THRESHOLD", "Prepared", "analyse", "decode", "prepare", "refine", "select"]

logger = logging.getLogger(__name__)

#: Convergence is defined on this outcome unless another is named.
DEFAULT_OUTCOME = "eval_accuracy"
#: Threshold used when neither ``threshold`` nor a task preset applies (paper: 0.9
#: for modular addition and sparse parities).
DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True)
class Prepared:
    """The data of a fit, validated, z-scored and split, before any model is fitted.

    Attributes
    ----------
    trajectories : TrajectorySet
        The input data.
    runs : FittedRuns
        Model features z-scored per run, with the run split (not yet decoded).
    zscore_info : ZScoreInfo
    requested_features, dropped_features : list of str
        The features asked for, and those left out because they are constant in every run.
    states, states_spec : list of int, str
        Candidate K values and a printable form of the request.
    device : str
        The resolved device (``"cpu"``, ``"cuda"``, ...).
    outcome : str or None
        Outcome column defining convergence (None: the data has no default outcome).
    threshold : float
        The resolved convergence threshold.
    higher_is_better : bool or None
        Crossing direction (None: guessed from the outcome's name).
    """

    trajectories: TrajectorySet
    runs: FittedRuns
    zscore_info: ZScoreInfo
    requested_features: list[str]
    dropped_features: list[str]
    states: list[int]
    states_spec: str
    device: str
    outcome: str | None
    threshold: float
    higher_is_better: bool | None = None

    def analysis_options(self, config: FitConfig) -> AnalysisOptions | None:
        """The analysis options of this fit; None when there is no outcome to analyse."""
        if self.outcome is None:
            return None
        return AnalysisOptions(
            outcome=self.outcome,
            threshold=self.threshold,
            higher_is_better=self.higher_is_better,
            states_range=tuple(self.states),
            random_state=config.random_state,
        )

    def resolved(self) -> dict[str, Any]:
        """What ``config.json`` records under ``"resolved"``."""
        ts = self.trajectories
        return {
            "features": list(self.runs.features),
            "requested_features": self.requested_features,
            "dropped_features": self.dropped_features,
            "states": self.states_spec,
            "states_searched": self.states,
            "device": self.device,
            "outcome": self.outcome,
            "threshold": self.threshold,
            "split": {SPLIT_TRAIN: self.runs.run_ids_in(SPLIT_TRAIN), SPLIT_VAL: self.runs.run_ids_in(SPLIT_VAL)},
            "data": {
                "path": ts.metadata.get("source_path"),
                "demo": ts.metadata.get("demo"),
                "metadata": {k: v for k, v in ts.metadata.items() if k != "source_path"},
                "n_runs": ts.n_runs,
                "n_checkpoints": int(ts.lengths.sum()),
            },
        }


# ----------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------
def prepare(ts: TrajectorySet, config: FitConfig) -> Prepared:
    """Validate, z-score per run (sec. 2.1), split runs 80/20 and fix the candidate K.

    Raises
    ------
    BayesTrainmapError
        For data the model cannot use (see :func:`bayes_trainmap.data.validate`) or a
        K the training runs cannot support.
    """
    device = str(resolve_device(config.device))
    threshold = _resolve_threshold(config.threshold, config.task, ts)
    outcome = _resolve_outcome(config.outcome, ts)
    higher_is_better = direction_from_option(config.outcome_direction)
    if outcome is not None and config.outcome is None and not np.isfinite(ts.outcome(outcome)).any():
        # The default outcome is present but empty: like a missing default column, the
        # analysis is skipped with a warning (naming it with --outcome makes this an error).
        logger.warning(
            "the data's %r column has no finite value in any run: the convergence analysis is skipped; "
            "name an outcome column with --outcome",
            outcome,
        )
        outcome = None
    requested = validate(ts, config.features, min_length=config.min_length)
    if outcome is not None:
        if outcome in requested:
            raise BayesTrainmapError(
                f"the convergence outcome {outcome!r} cannot also be a model feature (the regression would "
                "explain convergence by the outcome itself); leave it out of --features"
            )
        # Refuse a bad threshold (non-finite, outside [0, 1] for an accuracy, crossed by every
        # checkpoint) or an outcome with no finite value now, not after the fit.
        convergence_from_arrays(
            ts.outcome(outcome), ts.steps(), ts.lengths, ts.run_ids,
            outcome=outcome, threshold=threshold, higher_is_better=higher_is_better,
        )
    X, lengths = ts.feature_matrix(requested)
    Z, zinfo = zscore_per_run(X, lengths, config.window, feature_names=requested, run_ids=ts.run_ids)
    dropped = zinfo.fully_constant_features
    if dropped:
        if len(dropped) == len(requested):
            raise TrajectoryError(f"every feature is constant within every run ({', '.join(dropped)}); nothing to model")
        logger.warning("feature(s) %s are constant in every run and are left out of the model", ", ".join(dropped))
    features = [f for f in requested if f not in dropped]
    Z = np.ascontiguousarray(Z[:, [requested.index(f) for f in features]])
    _, val_ids = split_runs(ts.run_ids, val_fraction=config.val_fraction, seed=config.random_state)
    held_out = set(val_ids)
    runs = FittedRuns(
        features=features,
        Z=Z,
        lengths=lengths,
        run_ids=ts.run_ids,
        steps=np.asarray(ts.steps(), dtype=np.int64),
        outcomes={name: ts.outcome(name) for name in ts.outcome_columns},
        split=np.array([SPLIT_VAL if r in held_out else SPLIT_TRAIN for r in ts.run_ids]),
    )
    n_train = int(runs.rows_in(SPLIT_TRAIN)[1].sum())
    states, spec = _candidate_states(config.states, n_train, len(features), config.covariance_type)
    return Prepared(ts, runs, zinfo, requested, dropped, states, spec, device, outcome, threshold, higher_is_better)


def _candidate_states(states: Any, n_train: int, n_features: int, covariance: str) -> tuple[list[int], str]:
    """K values to try and a printable form of the request."""
    parsed = parse_states(states)
    if parsed is not None:
        for k in parsed:
            check_supported(k, n_train, n_features, covariance)
        spec = str(states) if isinstance(states, (str, int)) else f"{parsed.start}-{parsed.stop - 1}"
        return list(parsed), spec
    limit = max_supported_states(n_train, n_features, covariance)
    if limit < 1:
        raise ModelSelectionError(
            f"the training runs ({n_train} checkpoints x {n_features} features) cannot support even "
            f"K=1 with {covariance} covariance; expected more data"
        )
    candidates = [k for k in DEFAULT_STATES if k <= limit]
    if len(candidates) < len(DEFAULT_STATES):
        logger.warning(
            "the training runs (%d checkpoints x %d features) support at most K=%d; searching K=1..%d",
            n_train,
            n_features,
            limit,
            limit,
        )
    return candidates, "auto"


def _resolve_outcome(outcome: str | None, ts: TrajectorySet) -> str | None:
    """The outcome column defining convergence, or None (with a warning) when the
    default column is absent; an explicitly requested missing column is an error."""
    if outcome is not None:
        if outcome not in ts.outcome_columns:
            raise TrajectoryError(
                f"outcome column {outcome!r} not found; available outcome columns: {ts.outcome_columns or 'none'}"
            )
        return outcome
    if DEFAULT_OUTCOME in ts.outcome_columns:
        return DEFAULT_OUTCOME
    logger.warning(
        "the data has no %r column: the convergence analysis (detours, regression) is skipped; "
        "name an outcome column with --outcome",
        DEFAULT_OUTCOME,
    )
    return None


def _resolve_threshold(threshold: float | None, task: str | None, ts: TrajectorySet) -> float:
    """An explicit threshold, else the preset of ``task`` (and of the variant recorded
    in the data, when the data are of that task: destabilised CIFAR-100 uses 0.4),
    else the threshold recorded in the data's metadata (``collect`` writes one), else
    the preset of the task and variant named there, else :data:`DEFAULT_THRESHOLD`."""

    def normalise(name) -> str:
        return str(name or "").replace("-", "_").lower()

    recorded, variant = normalise(ts.metadata.get("task")), normalise(ts.metadata.get("variant"))
    if threshold is not None:
        return float(threshold)
    if task is not None:
        return threshold_for_task(task, variant if normalise(task) == recorded else None)
    recorded_threshold = ts.metadata.get("threshold")
    if isinstance(recorded_threshold, (int, float)) and not isinstance(recorded_threshold, bool):
        return float(recorded_threshold)
    if recorded in TASK_THRESHOLDS or f"{recorded}_{variant}" in TASK_THRESHOLDS:
        return float(threshold_for_task(recorded, variant))
    return DEFAULT_THRESHOLD


# ----------------------------------------------------------------------------------
# select, refine, decode, analyse
# ----------------------------------------------------------------------------------
def select(
    prepared: Prepared, config: FitConfig, *, executor: Executor | None = None, progress: bool = True
) -> SelectionResult:
    """Baum-Welch for every candidate K and restart on the training runs; K by held-out BIC."""
    Z_train, len_train = prepared.runs.rows_in(SPLIT_TRAIN)
    Z_val, len_val = prepared.runs.rows_in(SPLIT_VAL)
    return select_n_states(
        Z_train,
        len_train,
        Z_val,
        len_val,
        states=prepared.states,
        n_restarts=config.n_restarts,
        covariance_type=config.covariance_type,
        random_state=config.random_state,
        progress=progress,
        n_iter=config.n_iter,
        tol=config.tol,
        device=prepared.device,
        min_covar=config.min_covar,
        feature_names=list(prepared.runs.features),
        executor=executor,
    )


def data_warnings(prepared: Prepared, config: FitConfig) -> list[str]:
    """What the reader should know about the data modelled: the paper's statistics it lacks."""
    absent = prepared.trajectories.absent_statistics() if config.features is None else []
    if not absent:
        return []
    return [
        (
            f"{len(absent)} of the paper's {len(STATISTIC_NAMES)} statistics are absent from the data "
            f"({', '.join(absent)}); the model uses the {len(prepared.runs.features)} present"
        )
    ]


def selection_warnings(prepared: Prepared, selection: SelectionResult, config: FitConfig) -> list[str]:
    """Warnings about the chosen K: too many parameters for the data, or K at the edge of the range."""
    n_train = int(prepared.runs.rows_in(SPLIT_TRAIN)[1].sum())
    found = (
        model_size_warning(selection.best_n_states, n_train, len(prepared.runs.features), config.covariance_type),
        range_edge_warning(selection.curve, selection.best_n_states),
    )
    for text in filter(None, found):
        logger.warning("%s", text)
    return [w for w in found if w]


def order_states(params: HMMParams, runs: FittedRuns) -> HMMParams:
    """``params`` with the states numbered in path order, as the paper's maps read.

    State labels from EM are arbitrary. Each state's key is the mean, over the runs that
    visit it, of its first Viterbi visit as a fraction of the run; states are numbered
    by that key (unvisited states last, ties by descending occupancy), so runs start in
    state 0 and the map reads left to right. The likelihood is unchanged (a relabelling).
    """
    paths = GaussianHMM.from_params(params).predict(runs.Z, runs.lengths)
    k = int(params.n_states)
    first = np.full((runs.n_runs, k), np.nan)
    for i, (a, b) in enumerate(zip(runs.offsets[:-1], runs.offsets[1:])):
        path = paths[a:b]
        states, where = np.unique(path, return_index=True)
        first[i, states] = where / max(b - a - 1, 1)
    visits = np.isfinite(first)
    key = np.full(k, np.inf)  # unvisited states last
    key[visits.any(axis=0)] = np.nanmean(first[:, visits.any(axis=0)], axis=0)
    occupancy = np.bincount(paths, minlength=k)
    order = np.lexsort((-occupancy, key))
    return params.permute(order) if not np.array_equal(order, np.arange(k)) else params


def refine(
    prepared: Prepared, selection: SelectionResult, config: FitConfig, *, progress: bool = True
) -> tuple[HMMParams, bayesian.BayesianResult | None]:
    """The model to decode with: the selected MLE, or the Bayesian (MAP/SVI) fit started from it."""
    normalization = {"method": "zscore_per_run", "window": int(config.window), "ddof": 0}
    features = list(prepared.runs.features)
    params = dataclasses.replace(selection.best_model.params_, feature_names=features, normalization=normalization)
    params = order_states(params, prepared.runs)
    if config.mode not in BAYESIAN_MODES:
        return params, None
    Z_train, len_train = prepared.runs.rows_in(SPLIT_TRAIN)
    result = bayesian.fit_bayesian(
        config.mode,
        Z_train,
        len_train,
        prepared.runs.Z,
        prepared.runs.lengths,
        params,
        convergence_steps=_convergence_steps(prepared),
        device=prepared.device,
        seed=config.random_state,
        progress=progress,
        interval=config.interval,
        **{k: v for k, v in config.bayes_options.items() if k != "bag_steps"},
    )
    if config.mode == "svi" and not result.fit.converged:
        logger.warning(
            "SVI stopped after %d steps without meeting its convergence test; the posterior may not have "
            "converged (raise --steps)",
            result.fit.n_steps,
        )
    return dataclasses.replace(result.params, feature_names=features, normalization=normalization), result


@dataclass(frozen=True)
class Resampled:
    """What resampling the runs gave: ``uncertainty`` (bagged intervals, Bayesian modes),
    ``robustness`` (the report's robustness section) and the ``settings`` used."""

    uncertainty: dict | None
    robustness: dict | None
    settings: dict[str, Any]


#: What :func:`resample` gives when there is nothing to resample (no outcome, ``bootstrap=0``).
NO_RESAMPLING = Resampled(None, None, {"n_bags": 0})


def resample(prepared: Prepared, params: HMMParams, config: FitConfig, *, progress: bool = True) -> Resampled:
    """Refit on resamples of the runs (the exchangeable units): the share of fits that
    reproduce each edge, fork and detour, the K chosen on resamples of the selection,
    and, in the Bayesian modes with ``intervals="bagged"``, BayesBag intervals
    (:func:`bayes_trainmap.fitting.robustness.seed_uncertainty`)."""
    if prepared.outcome is None or config.bootstrap == 0:
        return NO_RESAMPLING
    k_selection = None
    if config.k_resamples > 0 and len(prepared.states) > 1:
        Z_train, len_train = prepared.runs.rows_in(SPLIT_TRAIN)
        Z_val, len_val = prepared.runs.rows_in(SPLIT_VAL)
        k_selection = {
            "Z_train": Z_train, "len_train": len_train, "Z_val": Z_val, "len_val": len_val,
            "states": prepared.states, "n_resamples": config.k_resamples, "covariance": config.covariance_type,
            "n_iter": config.n_iter, "tol": config.tol, "min_covar": config.min_covar, "device": prepared.device,
        }
    uncertainty, section, settings = robustness.seed_uncertainty(
        config.mode, params, prepared.runs.Z, prepared.runs.lengths, _convergence_steps(prepared),
        intervals=config.intervals, n_bags=config.bootstrap, interval=config.interval, seed=config.random_state,
        device=prepared.device, progress=progress, k_selection=k_selection,
        map_steps=int(config.bayes_options.get("bag_steps", 0)),
    )
    return Resampled(uncertainty, section, settings)


def bayes_settings(config: FitConfig, result: bayesian.BayesianResult | None) -> dict[str, Any]:
    """Every Bayesian setting a fit used (defaults resolved), for ``config.json``."""
    if result is None:
        return {}
    options, mode, fit = dict(config.bayes_options), config.mode, result.fit
    return {
        **options,
        "mode": mode,
        "intervals": config.intervals,
        "steps": int(options.get("steps", bayesian.DEFAULT_STEPS[mode])),
        "lr": float(options.get("lr", bayesian.DEFAULT_LR[mode])),
        "bag_steps": int(options.get("bag_steps", 0)),
        "guide": fit.guide_name,
        "draws": int(options.get("draws", bayesian.DEFAULT_DRAWS)) if mode == "svi" else None,
        "steps_run": int(fit.n_steps),
        "converged": bool(fit.converged),
        "prior": fit.prior.to_dict(),
        "optimisation": dict(fit.settings),
        "interval": float(config.interval),
        "decode": "viterbi",
        "seed": int(config.random_state),
        "device": str(config.device),
    }


def decode(params: HMMParams, runs: FittedRuns) -> FittedRuns:
    """``runs`` with the Viterbi state of every checkpoint under ``params``."""
    paths = GaussianHMM.from_params(params).predict(runs.Z, runs.lengths)
    return runs.with_paths(np.asarray(paths, dtype=np.int64))


def analyse(
    params: HMMParams,
    runs: FittedRuns,
    options: AnalysisOptions | None,
    uncertainty: dict | None = None,
    robustness_section: dict | None = None,
) -> Analysis | None:
    """The training map, convergence regression, detours, dissimilarity and baselines.

    None when there is nothing to analyse (no outcome) or the data cannot support the
    analysis (e.g. no run converges): that is reported as a warning, and the fit itself
    is still usable and written.
    """
    if options is None:
        return None
    try:
        result = analyze(params, runs, options)
    except BayesTrainmapError as exc:
        logger.warning("analysis skipped: %s", exc)
        return None
    result.uncertainty, result.robustness = uncertainty, robustness_section
    return result


def _convergence_steps(prepared: Prepared) -> np.ndarray | None:
    """Convergence step per run (NaN where the outcome never crosses), run order."""
    if prepared.outcome is None:
        return None
    runs = prepared.runs
    result = convergence_from_arrays(
        runs.outcomes[prepared.outcome],
        runs.steps,
        runs.lengths,
        runs.run_ids,
        outcome=prepared.outcome,
        threshold=prepared.threshold,
        higher_is_better=prepared.higher_is_better,
    )
    return result.steps.to_numpy(dtype=np.float64)
