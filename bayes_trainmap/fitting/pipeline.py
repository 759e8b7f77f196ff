"""The ``fit`` pipeline: trajectories in, fitted model and fit directory out.

validate -> z-score per run -> split runs -> choose K by held-out BIC (or fit a
fixed K) -> Viterbi-decode every run -> analysis -> write the fit directory.

The maximum-likelihood mode (``"mle"``) is Baum-Welch as in the paper. The
Bayesian modes (``"map"``, ``"svi"``) start from the maximum-likelihood fit of the
chosen K and are delegated to :mod:`bayes_trainmap.fitting.bayesian`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bayes_trainmap import analysis
from bayes_trainmap.analysis.convergence import (
    TASK_THRESHOLDS,
    convergence_from_arrays,
    threshold_for_task,
)
from bayes_trainmap.core.errors import (
    BayesTrainmapError,
    ModelSelectionError,
    TrajectoryError,
)
from bayes_trainmap.core.executors import Executor
from bayes_trainmap.core.schema import RUN_COLUMN, STEP_COLUMN
from bayes_trainmap.core.version import __version__
from bayes_trainmap.data import (
    TrajectorySet,
    ZScoreInfo,
    split_runs,
    validate,
    zscore_per_run,
)
from bayes_trainmap.data.fitdir import (
    CONFIG_FILE,
    CURVE_FILE,
    DECODED_FILE,
    FIGURES_DIR,
    FIT_DIR_FORMAT,
    FIT_DIR_VERSION,
    MODEL_FILE,
    SELECTION_FILE,
    SUMMARY_FILE,
    ZSCORE_FILE,
    ZSCORED_FILE,
    check_output_dir,
    staging_dir,
    write_json,
)
from bayes_trainmap.fitting import robustness
from bayes_trainmap.fitting.selection import (
    DEFAULT_STATES,
    SelectionResult,
    check_supported,
    max_supported_states,
    parse_states,
    select_n_states,
)
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.report import build as report
from bayes_trainmap.report import plots

__all__ = ["MODES", "FitResult", "fit", "render_summary", "resolve_device", "write_fit_dir", "write_report"]

logger = logging.getLogger(__name__)

#: Inference modes: maximum likelihood (Baum-Welch), MAP and SVI (Pyro).
MODES: tuple[str, ...] = ("mle", "map", "svi")
BAYESIAN_MODES: tuple[str, ...] = ("map", "svi")
COVARIANCES: tuple[str, ...] = ("full", "diag")
SPLIT_TRAIN, SPLIT_VAL = "train", "val"
#: Convergence is defined on this outcome unless another is named.
DEFAULT_OUTCOME = "eval_accuracy"
#: Threshold used when neither --threshold nor a task preset applies (paper: 0.9
#: for modular addition and sparse parities).
DEFAULT_THRESHOLD = 0.9


@dataclass
class FitResult:
    """Everything a fit produced, in memory.

    Attributes
    ----------
    trajectories : TrajectorySet
        The input data.
    mode : str
    features : list of str
        Features of the model (after dropping features constant in every run).
    dropped_features : list of str
        Requested features left out because they were constant in every run.
    Z : numpy.ndarray, shape (n, d)
        z-scored features of all runs, concatenated in ``run_ids`` order.
    lengths : numpy.ndarray, shape (N,)
    run_ids : list of str
    split : numpy.ndarray of str, shape (N,)
        ``"train"`` or ``"val"`` per run.
    zscore_info : ZScoreInfo
    selection : SelectionResult
    params : inference.params.HMMParams
        The model used for decoding (the selected maximum-likelihood model, or
        the Bayesian point estimate).
    paths : numpy.ndarray, shape (n,)
        Viterbi state of every checkpoint.
    config : dict
        The options of the fit (written to ``config.json``).
    analysis : object or None
        :class:`bayes_trainmap.analysis.Analysis` when the analysis ran.
    bayesian : object or None
        The Bayesian result of ``map``/``svi`` modes.
    """

    trajectories: TrajectorySet
    mode: str
    features: list[str]
    dropped_features: list[str]
    Z: np.ndarray
    lengths: np.ndarray
    run_ids: list[str]
    split: np.ndarray
    zscore_info: ZScoreInfo
    selection: SelectionResult
    params: Any
    paths: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    analysis: Any = None
    bayesian: Any = None

    @property
    def n_states(self) -> int:
        """Number of hidden states of the fitted model."""
        return int(self.params.n_states)

    @property
    def train_ids(self) -> list[str]:
        return [r for r, s in zip(self.run_ids, self.split) if s == SPLIT_TRAIN]

    @property
    def val_ids(self) -> list[str]:
        return [r for r, s in zip(self.run_ids, self.split) if s == SPLIT_VAL]

    def decoded_frame(self) -> pd.DataFrame:
        """``run, step, split, state`` for every checkpoint."""
        return pd.DataFrame(
            {
                RUN_COLUMN: np.repeat(self.run_ids, self.lengths),
                STEP_COLUMN: self.trajectories.steps(),
                "split": np.repeat(self.split, self.lengths),
                "state": self.paths.astype(np.int64),
            }
        )

    def zscored_frame(self) -> pd.DataFrame:
        """``run, step, split``, z-scored model features and raw outcome columns."""
        ts = self.trajectories
        frame = pd.DataFrame(
            {
                RUN_COLUMN: np.repeat(self.run_ids, self.lengths),
                STEP_COLUMN: ts.steps(),
                "split": np.repeat(self.split, self.lengths),
            }
        )
        for j, name in enumerate(self.features):
            frame[name] = self.Z[:, j]
        for name in ts.outcome_columns:
            frame[name] = ts.outcome(name)
        return frame

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: chosen K, BIC curve, occupancy and per-run state paths."""
        return _summarise(self)


# ----------------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; check explicit CUDA requests."""
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise BayesTrainmapError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise BayesTrainmapError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return str(device)


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


def fit(
    ts: TrajectorySet,
    mode: str = "mle",
    states: str | int | Sequence[int] = "auto",
    restarts: int = 5,
    covariance: str = "full",
    features: Sequence[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    window: int = 1000,
    n_iter: int = 100,
    tol: float = 1e-4,
    min_covar: float = 1e-3,
    min_length: int = 2,
    outcome: str | None = None,
    threshold: float | None = None,
    task: str | None = None,
    analyze: bool = True,
    progress: bool = True,
    bayes_options: dict[str, Any] | None = None,
    executor: Executor | None = None,
    intervals: str = "bagged",
    bootstrap: int | None = None,
    k_resamples: int | None = None,
    interval: float = 0.9,
) -> FitResult:
    """Fit a Gaussian HMM to a trajectory set, choosing K by held-out BIC.

    Parameters
    ----------
    ts : TrajectorySet
    mode : {"mle", "map", "svi"}
        Maximum likelihood (Baum-Welch), or a Bayesian fit via
        :mod:`bayes_trainmap.fitting.bayesian` started from the MLE of the chosen K.
    states : "auto", int, "K", "A-B" or sequence of consecutive int
        Candidate K; "auto" is 1..8 (the paper's range), capped at what the
        training data supports.
    restarts : int
        Baum-Welch restarts per K (the best by training log-likelihood is kept).
    covariance : {"full", "diag"}
    features : sequence of str, optional
        Feature columns (default: the weight statistics present).
    device : {"cpu", "cuda", "auto"}
    seed : int
        Seeds the run split and every restart.
    val_fraction : float
        Share of runs held out for BIC.
    window : int
        z-scoring window (checkpoints).
    n_iter, tol, min_covar : Baum-Welch settings.
    min_length : int
        Minimum checkpoints per run.
    outcome : str, optional
        Outcome column that defines convergence (default ``eval_accuracy``; when
        the data has no such column the convergence analysis is skipped with a
        warning, while an explicitly named missing column is an error).
    threshold : float, optional
        Convergence threshold; default: the preset of ``task`` or of the task
        named in the data's metadata, else :data:`DEFAULT_THRESHOLD`.
    task : str, optional
        Task preset for the threshold (see ``convergence.TASK_THRESHOLDS``).
    analyze : bool
        Run :func:`bayes_trainmap.analysis.analyze` (training map, detours, ...).
    progress : bool
        Show progress bars.
    bayes_options : dict, optional
        Extra keyword arguments for the Bayesian modes (draws, steps, lr, guide), and
        ``bag_steps``: L-BFGS iterations of the MAP refit per bag (default 200).
    executor : bayes_trainmap.core.executors.Executor, optional
        Where the (K, restart) fits of the BIC sweep run (default: in this process);
        results do not depend on it.
    intervals : {"bagged", "posterior"}
        Interval method of the Bayesian modes: BayesBag over runs (default; carries
        seed-to-seed variation) or the plain posterior of the model.
    bootstrap : int, optional
        Resamples of the runs for the robustness section (and the bagged intervals);
        default :data:`bayes_trainmap.fitting.robustness.DEFAULT_BAGS`; 0 skips it.
    k_resamples : int, optional
        Resamples of the K selection for the stability of K (default
        :data:`bayes_trainmap.fitting.robustness.DEFAULT_K_RESAMPLES`; 0 skips it).
    interval : float
        Level of every interval in the report.

    Returns
    -------
    FitResult

    Raises
    ------
    BayesTrainmapError
        For bad data or options (see :func:`bayes_trainmap.data.validate`,
        :func:`bayes_trainmap.fitting.selection.check_supported`).
    """
    if mode not in MODES:
        raise BayesTrainmapError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if covariance not in COVARIANCES:
        raise BayesTrainmapError(f"unknown covariance {covariance!r}; expected one of {', '.join(COVARIANCES)}")
    if int(restarts) < 1:
        raise BayesTrainmapError(f"restarts must be at least 1, got {restarts}")
    if int(seed) < 0:
        raise BayesTrainmapError(f"seed must be a non-negative integer, got {seed}")
    if int(n_iter) < 1 or not float(tol) >= 0 or not float(min_covar) > 0:
        raise BayesTrainmapError(
            f"expected n_iter >= 1, tol >= 0 and min_covar > 0, got n_iter={n_iter}, tol={tol}, min_covar={min_covar}"
        )
    parse_states(states)  # reject a malformed request before touching the data
    if intervals not in robustness.INTERVAL_METHODS:
        raise BayesTrainmapError(f"unknown intervals {intervals!r}; expected one of {', '.join(robustness.INTERVAL_METHODS)}")
    if not 0.0 < float(interval) < 1.0:
        raise BayesTrainmapError(f"interval must be in (0, 1), got {interval}")
    bootstrap = robustness.DEFAULT_BAGS if bootstrap is None else int(bootstrap)
    k_resamples = robustness.DEFAULT_K_RESAMPLES if k_resamples is None else int(k_resamples)
    if bootstrap < 0 or k_resamples < 0:
        raise BayesTrainmapError(f"bootstrap and k_resamples must be >= 0, got {bootstrap} and {k_resamples}")
    posterior = _bayesian_backend(mode) if mode in BAYESIAN_MODES else None
    device = resolve_device(device)
    threshold = _resolve_threshold(threshold, task, ts)
    outcome = _resolve_outcome(outcome, ts)

    requested = validate(ts, features, min_length=min_length)
    X, lengths = ts.feature_matrix(requested)
    run_ids = ts.run_ids
    Z, zinfo = zscore_per_run(X, lengths, window, feature_names=requested, run_ids=run_ids)
    dropped = zinfo.fully_constant_features
    if dropped:
        if len(dropped) == len(requested):
            raise TrajectoryError(
                f"every feature is constant within every run ({', '.join(dropped)}); nothing to model"
            )
        logger.warning("feature(s) %s are constant in every run and are left out of the model", ", ".join(dropped))
    model_features = [f for f in requested if f not in dropped]
    keep = [requested.index(f) for f in model_features]
    Z = np.ascontiguousarray(Z[:, keep])

    train_ids, val_ids = split_runs(run_ids, val_fraction=val_fraction, seed=seed)
    held_out = set(val_ids)
    split = np.array([SPLIT_VAL if r in held_out else SPLIT_TRAIN for r in run_ids])
    rows = np.repeat(split == SPLIT_TRAIN, lengths)
    Z_train, len_train = Z[rows], lengths[split == SPLIT_TRAIN]
    Z_val, len_val = Z[~rows], lengths[split == SPLIT_VAL]
    candidates, states_spec = _candidate_states(states, int(len_train.sum()), len(model_features), covariance)

    selection = select_n_states(
        Z_train,
        len_train,
        Z_val,
        len_val,
        states=candidates,
        n_restarts=int(restarts),
        covariance_type=covariance,
        random_state=int(seed),
        progress=progress,
        n_iter=n_iter,
        tol=tol,
        device=device,
        min_covar=min_covar,
        feature_names=model_features,
        executor=executor,
    )
    normalization = {"method": "zscore_per_run", "window": int(window), "ddof": 0}
    params = dataclasses.replace(
        selection.best_model.params_, feature_names=model_features, normalization=normalization
    )

    bayes_options = dict(bayes_options or {})
    bag_steps = int(bayes_options.pop("bag_steps", 200))
    bayesian = None
    if posterior is not None:
        bayesian = posterior.fit_bayesian(
            mode,
            Z_train,
            len_train,
            Z,
            lengths,
            params,
            convergence_steps=_convergence_steps(ts, outcome, threshold),
            device=device,
            seed=int(seed),
            progress=progress,
            **{"interval": float(interval), **bayes_options},
        )
        params = dataclasses.replace(bayesian.params, feature_names=model_features, normalization=normalization)
        if mode == "svi" and not bayesian.fit.converged:
            logger.warning(
                "SVI stopped after %d steps without meeting its convergence test; the posterior may not have "
                "converged (raise --steps)",
                bayesian.fit.n_steps,
            )

    convergence_steps = _convergence_steps(ts, outcome, threshold)
    uncertainty = robustness_section = None
    resampling: dict[str, Any] = {"n_bags": 0}
    if analyze and outcome is not None and bootstrap > 0:
        k_selection = None
        if k_resamples > 0 and len(candidates) > 1:
            k_selection = dict(
                Z_train=Z_train, len_train=len_train, Z_val=Z_val, len_val=len_val, states=candidates,
                n_resamples=k_resamples, covariance=covariance, n_iter=n_iter, tol=tol, min_covar=min_covar,
                device=device,
            )
        uncertainty, robustness_section, resampling = robustness.seed_uncertainty(
            mode, params, Z, lengths, convergence_steps, intervals=intervals, n_bags=bootstrap,
            interval=float(interval), seed=int(seed), device=device, progress=progress, k_selection=k_selection,
            map_steps=bag_steps,
        )

    paths = _viterbi(params, Z, lengths)
    config = {
        "format": FIT_DIR_FORMAT,
        "format_version": FIT_DIR_VERSION,
        "package_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "data": {
            "path": ts.metadata.get("source_path"),
            "demo": ts.metadata.get("demo"),
            "metadata": {k: v for k, v in ts.metadata.items() if k != "source_path"},
            "n_runs": ts.n_runs,
            "n_checkpoints": int(lengths.sum()),
        },
        "features": model_features,
        "requested_features": requested,
        "dropped_features": dropped,
        "states": states_spec,
        "states_searched": candidates,
        "restarts": int(restarts),
        "covariance": covariance,
        "device": device,
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "window": int(window),
        "n_iter": int(n_iter),
        "tol": float(tol),
        "min_covar": float(min_covar),
        "min_length": int(min_length),
        "outcome": outcome,
        "threshold": threshold,
        "task": task,
        "bayes_options": _bayes_settings(mode, bayesian, {**bayes_options, "bag_steps": bag_steps}, intervals),
        "interval": float(interval),
        "intervals": intervals if mode in BAYESIAN_MODES else None,
        "bootstrap": bootstrap,
        "k_resamples": k_resamples,
        "resampling": resampling,
        "split": {SPLIT_TRAIN: train_ids, SPLIT_VAL: val_ids},
    }
    result = FitResult(
        trajectories=ts,
        mode=mode,
        features=model_features,
        dropped_features=dropped,
        Z=Z,
        lengths=lengths,
        run_ids=run_ids,
        split=split,
        zscore_info=zinfo,
        selection=selection,
        params=params,
        paths=paths,
        config=config,
        bayesian=bayesian,
    )
    if analyze and outcome is not None:
        result.analysis = _run_analysis(result, outcome=outcome, threshold=threshold, states_range=candidates)
        if result.analysis is not None and bayesian is not None and bayesian.uncertainty is not None:
            result.analysis.uncertainty = bayesian.uncertainty
        if result.analysis is not None:
            if uncertainty is not None:
                result.analysis.uncertainty = uncertainty
            result.analysis.robustness = robustness_section
    return result


def _bayes_settings(mode: str, bayesian, options: dict[str, Any] | None, intervals: str) -> dict[str, Any]:
    """Every Bayesian setting a fit used (defaults resolved), for ``config.json``."""
    if bayesian is None:
        return {}
    from bayes_trainmap.fitting import bayesian as posterior

    options = dict(options or {})
    fit = bayesian.fit
    return {
        **options,
        "mode": mode,
        "intervals": intervals,
        "steps": int(options.get("steps", posterior.DEFAULT_STEPS[mode])),
        "lr": float(options.get("lr", posterior.DEFAULT_LR[mode])),
        "guide": fit.guide_name,
        "draws": int(options.get("draws", posterior.DEFAULT_DRAWS)) if mode == "svi" else None,
        "steps_run": int(fit.n_steps),
        "converged": bool(fit.converged),
        "prior": fit.prior.to_dict(),
    }


def _bayesian_backend(mode: str):
    """The Bayesian engine module, or a clear error if this installation lacks it."""
    if importlib.util.find_spec("bayes_trainmap.fitting.bayesian") is None:
        raise BayesTrainmapError(
            f"mode {mode!r} needs the Bayesian path (bayes_trainmap.fitting.bayesian), which is not part of "
            "this installation; use --mode mle"
        )
    return importlib.import_module("bayes_trainmap.fitting.bayesian")


def _viterbi(params, Z: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return np.asarray(GaussianHMM.from_params(params).predict(Z, lengths), dtype=np.int64)


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


def _convergence_steps(ts: TrajectorySet, outcome: str | None, threshold: float) -> np.ndarray | None:
    """Convergence step per run (NaN where the outcome never crosses), run order."""
    if outcome is None:
        return None
    result = convergence_from_arrays(
        ts.outcome(outcome), ts.steps(), ts.lengths, ts.run_ids, outcome=outcome, threshold=threshold
    )
    return result.steps.to_numpy(dtype=np.float64)


def _run_analysis(result: FitResult, *, outcome: str, threshold: float, states_range: Sequence[int]):
    """The training map, convergence regression, detours, dissimilarity and baselines.

    An analysis the data cannot support (e.g. no run converges) is reported as a
    warning; the fit itself is still written.
    """
    ts = result.trajectories
    outcomes = {name: ts.outcome(name) for name in ts.outcome_columns}
    try:
        return analysis.analyze(
            result.params,
            result.Z,
            result.lengths,
            result.run_ids,
            ts.steps(),
            outcomes,
            paths=result.paths,
            split=result.split,
            outcome=outcome,
            threshold=threshold,
            states_range=list(states_range),
            random_state=int(result.config["seed"]),
        )
    except BayesTrainmapError as exc:
        logger.warning("analysis skipped: %s", exc)
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
# summary
# ----------------------------------------------------------------------------------
def _segments(path: np.ndarray, steps: np.ndarray) -> list[list[int]]:
    """Run-length encoding of a state path: ``[state, first_step, last_step, n_checkpoints]``."""
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [path.size]]) - 1
    return [[int(path[s]), int(steps[s]), int(steps[e]), int(e - s + 1)] for s, e in zip(starts, ends)]


def _summarise(result: FitResult) -> dict[str, Any]:
    k = result.n_states
    steps = result.trajectories.steps()
    offsets = np.concatenate([[0], np.cumsum(result.lengths)])
    runs = []
    visits = np.zeros(k, dtype=np.int64)
    for i, run in enumerate(result.run_ids):
        path = result.paths[offsets[i] : offsets[i + 1]]
        segments = _segments(path, steps[offsets[i] : offsets[i + 1]])
        visits[np.unique(path)] += 1
        runs.append(
            {
                "run": run,
                "split": str(result.split[i]),
                "n_checkpoints": int(result.lengths[i]),
                "states": [s[0] for s in segments],
                "segments": segments,
            }
        )
    counts = np.bincount(result.paths, minlength=k)
    selection = result.selection
    curve = selection.curve
    best = curve.loc[curve["n_states"] == selection.best_n_states].iloc[0]
    summary: dict[str, Any] = {
        "mode": result.mode,
        "n_states": k,
        "selected_by": "held-out BIC" if len(curve) > 1 else "fixed K",
        "bic": float(best["bic"]),
        "val_log_likelihood": float(best["val_log_likelihood"]),
        "train_log_likelihood": float(best["train_log_likelihood"]),
        "n_parameters": int(best["n_parameters"]),
        "covariance": result.config.get("covariance"),
        "features": list(result.features),
        "dropped_features": list(result.dropped_features),
        "constant_features": result.zscore_info.constant_runs(),
        "n_runs": len(result.run_ids),
        "n_train_runs": len(result.train_ids),
        "n_val_runs": len(result.val_ids),
        "n_checkpoints": int(result.lengths.sum()),
        "n_val_checkpoints": int(selection.n_val),
        "run_ids": list(result.run_ids),
        "curve": curve.to_dict(orient="records"),
        "occupancy": [
            {
                "state": s,
                "fraction": float(counts[s] / counts.sum()),
                "n_checkpoints": int(counts[s]),
                "n_runs": int(visits[s]),
            }
            for s in range(k)
        ],
        "runs": runs,
    }
    return summary


def _arrow(states: Sequence[int]) -> str:
    return " -> ".join(str(s) for s in states)


def render_summary(summary: dict[str, Any], max_runs: int = 12) -> str:
    """Plain-text terminal summary of a fit (chosen K, BIC table, occupancy, paths).

    Parameters
    ----------
    summary : dict
        :meth:`FitResult.summary` or a fit directory's ``summary.json``.
    max_runs : int
        Runs listed individually; the distinct state sequences of all runs are
        always counted.
    """
    lines = [
        f"Fit ({summary['mode']}): {summary['n_runs']} runs ({summary['n_train_runs']} train, "
        f"{summary['n_val_runs']} held out), {summary['n_checkpoints']} checkpoints, "
        f"{len(summary['features'])} features, {summary['covariance']} covariance",
        f"Chosen K = {summary['n_states']} ({summary['selected_by']}; BIC = -2 LL_val + p ln(n_val), "
        f"n_val = {summary['n_val_checkpoints']})",
    ]
    if summary.get("dropped_features"):
        lines.append(f"Left out (constant in every run): {', '.join(summary['dropped_features'])}")
    dropped = set(summary.get("dropped_features", []))
    partly = {f: r for f, r in summary.get("constant_features", {}).items() if f not in dropped}
    if partly:
        lines.append(
            "Constant in some runs (z-scored to 0 there): "
            + ", ".join(f"{f} ({len(r)} runs)" for f, r in partly.items())
        )
    lines += ["", f"{'K':>4} {'BIC':>14} {'val LL':>14} {'train LL':>14} {'params':>7}"]
    for row in summary["curve"]:
        mark = "*" if row["n_states"] == summary["n_states"] else " "
        lines.append(
            f"{mark}{row['n_states']:>3} {_num(row['bic']):>14} {_num(row['val_log_likelihood']):>14} "
            f"{_num(row['train_log_likelihood']):>14} {row['n_parameters']:>7}"
        )
    lines += ["", "State occupancy (share of all checkpoints, runs visiting):"]
    for occ in summary["occupancy"]:
        lines.append(f"  state {occ['state']:>2}: {100 * occ['fraction']:5.1f}%  {occ['n_runs']:>4} runs")
    lines += ["", "Viterbi state sequences:"]
    patterns: dict[str, int] = {}
    for run in summary["runs"]:
        key = _arrow(run["states"])
        patterns[key] = patterns.get(key, 0) + 1
    for key, count in sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:>4} run(s): {key}")
    lines += ["", "Per run (state [first step-last step]):"]
    for run in summary["runs"][:max_runs]:
        parts = " -> ".join(f"{s}[{a}-{b}]" for s, a, b, _ in run["segments"])
        lines.append(f"  {run['run']} ({run['split']}): {parts}")
    if len(summary["runs"]) > max_runs:
        lines.append(f"  ... {len(summary['runs']) - max_runs} more runs in decoded.parquet")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "nan" if value is None else f"{float(value):.6g}"


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def write_report(fit_dir: str | os.PathLike, analysis: Any = None) -> Path:
    """Write ``report.md/html/json`` and the figures into a fit directory.

    Parameters
    ----------
    fit_dir : path-like
    analysis : bayes_trainmap.analysis.Analysis, optional
        Default: the fit directory's ``analysis.json``.

    Returns
    -------
    pathlib.Path
        The HTML report.
    """
    return Path(report.write_report(Path(fit_dir), analysis=analysis)["html"])


def write_fit_dir(
    result: FitResult,
    out: str | os.PathLike,
    *,
    extra_config: dict[str, Any] | None = None,
    report: bool = False,
) -> Path:
    """Write a fit directory (see :mod:`bayes_trainmap.data.fitdir`) atomically.

    Parameters
    ----------
    result : FitResult
    out : path-like
        Target directory; an existing fit directory there is replaced, anything
        else there is an error (checked before writing).
    extra_config : dict, optional
        Added to ``config.json`` under ``"cli"`` (the command-line options).
    report : bool
        Also write the report (:func:`write_report`) before the directory is
        moved into place, so a failing report leaves no fit directory behind.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = check_output_dir(out)
    config = dict(result.config)
    if extra_config:
        config["cli"] = dict(extra_config)
    with staging_dir(out) as tmp:
        result.params.save(tmp / MODEL_FILE)
        result.selection.table.to_csv(tmp / SELECTION_FILE, index=False)
        result.selection.curve.to_csv(tmp / CURVE_FILE, index=False)
        result.zscored_frame().to_parquet(tmp / ZSCORED_FILE, index=False)
        result.decoded_frame().to_parquet(tmp / DECODED_FILE, index=False)
        write_json(tmp / ZSCORE_FILE, result.zscore_info.to_dict())
        write_json(tmp / SUMMARY_FILE, result.summary())
        write_json(tmp / CONFIG_FILE, config)
        _plot_selection_curve(result.selection.curve, result.selection.best_n_states, tmp / FIGURES_DIR)
        if result.analysis is not None:
            write_json(tmp / "analysis.json", result.analysis.to_dict())
        if result.bayesian is not None:
            result.bayesian.write_posterior(tmp)
        if report and result.analysis is None:
            logger.warning("no report written: the analysis did not run (see the warnings above)")
        elif report:
            write_report(tmp, analysis=result.analysis)
    return out


def _plot_selection_curve(curve: pd.DataFrame, best_k: int, directory: Path) -> None:
    """BIC against K (the paper's appendix-H curve) as ``selection_curve.png/svg``."""
    fig, ax = plots.new_axes(figsize=(4.5, 3.2))
    plots.plot_selection_curves({"HMM": curve.rename(columns={"n_states": "n_components"})}, {"HMM": best_k}, ax=ax)
    plots.save_figure(fig, directory, "selection_curve")
