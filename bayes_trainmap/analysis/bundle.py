"""Everything the paper reads off one fitted HMM, bundled: :func:`analyze` -> :class:`Analysis`.

* the training map (states, pruned labelled edges, initial/final states);
* convergence steps per run and the never-converged runs;
* occupancy fractions, the convergence-time regression and the detour states;
* trajectory dissimilarity and the forking flag (the paper's Table-1 row);
* the k-means and HMM-1 baselines (the paper's Table-4 row, without the HMM's
  own entry, which the fit directory's ``selection_curve.csv`` holds).

:meth:`Analysis.to_dict` is strict-JSON-ready (NaN becomes ``null``) and is
what ``analysis.json`` in a fit directory contains; :meth:`Analysis.from_dict`
reads it back.

Uncertainty (Bayesian modes)
----------------------------
``Analysis.uncertainty`` is ``None`` for maximum-likelihood fits. The Bayesian
path fills it with posterior summaries in this structure (intervals are
central credible intervals of mass ``interval``)::

    {
      "interval": 0.9,
      "n_draws": int,
      "alignment_ambiguous_rate": float,   # share of draws whose state alignment was ambiguous
      "elbo": [float, ...],                # SVI objective trace (may be empty)
      "edges": [{"source", "target", "p_exists", "trans_prob_median", "trans_prob_lo",
                 "trans_prob_hi", "n_runs_median", "n_runs_lo", "n_runs_hi"}, ...],
      "states": [{"state", "coef_median", "coef_lo", "coef_hi", "p_detour",
                  "occupancy_median"}, ...],
      "r_squared": {"median", "lo", "hi"}
    }

When present, every report table shows the intervals and the figures use them
(edge opacity by ``p_exists``, a forest plot of coefficients, the ELBO trace).

With the default ``--intervals bagged`` the dict comes from
:func:`bayes_trainmap.fitting.robustness.summarize_bags` instead: the same keys, plus
``method`` and ``labels`` (what each interval is), ``n_bags``, ``bags_converged``,
``p_forking``, and posterior-predictive bounds for a new set of N seeds
(``trans_prob_pred_lo/hi`` per edge, ``coef_pred_lo/hi`` per state, ``pred_lo/hi``
of ``r_squared``); its ``n_runs_lo/hi`` are predictive intervals.

``Analysis.robustness`` (every mode, :func:`bayes_trainmap.fitting.robustness.robustness_section`)
holds the share of resampled fits reproducing each edge, the fork and each detour,
and the K chosen on resamples of the selection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_trainmap.analysis.baselines import (
    DEFAULT_STATES_RANGE,
    BaselineSelection,
    hmm1_selection,
    kmeans_selection,
)
from bayes_trainmap.analysis.convergence import (
    ConvergenceResult,
    convergence_from_arrays,
)
from bayes_trainmap.analysis.detours import (
    RegressionResult,
    convergence_regression,
    occupancy,
)
from bayes_trainmap.analysis.dissimilarity import is_forking, trajectory_dissimilarity
from bayes_trainmap.analysis.training_map import TrainingMap, build_training_map
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.schema import RUN_COLUMN
from bayes_trainmap.inference.emissions import gaussian_log_likelihood
from bayes_trainmap.inference.forward_backward import filtered_posteriors

__all__ = ["Analysis", "analyze", "compute_filtered", "validate_uncertainty", "UNCERTAINTY_KEYS", "ANALYSIS_FORMAT"]

logger = logging.getLogger(__name__)

ANALYSIS_FORMAT = "bayes_trainmap.analysis"
ANALYSIS_VERSION = 1

#: Top-level keys of ``Analysis.uncertainty`` (see the module docstring).
UNCERTAINTY_KEYS = ("interval", "n_draws", "alignment_ambiguous_rate", "elbo", "edges", "states", "r_squared")
UNCERTAINTY_EDGE_KEYS = (
    "source",
    "target",
    "p_exists",
    "trans_prob_median",
    "trans_prob_lo",
    "trans_prob_hi",
    "n_runs_median",
    "n_runs_lo",
    "n_runs_hi",
)
UNCERTAINTY_STATE_KEYS = ("state", "coef_median", "coef_lo", "coef_hi", "p_detour", "occupancy_median")


@dataclass
class Analysis:
    """The analysis of one fitted model (see the module docstring).

    Attributes
    ----------
    settings : dict
        ``outcome, threshold, include_unconverged, ground_metric, n_states, n_runs, feature_names``.
    training_map : TrainingMap
    convergence : ConvergenceResult
    occupancy : pandas.DataFrame
        Runs x states occupancy fractions (index: run id; columns: state ints).
    regression : RegressionResult
    censored_runs : list of str
        Never-converged runs included with their last step (``include_unconverged=True``).
    dissimilarity : float
        Equation 1 over all runs.
    forking : bool
    baselines : list of BaselineSelection or None
    split : dict run -> "train" | "val", or None
    uncertainty : dict or None
        Bayesian posterior summaries (structure in the module docstring).
    robustness : dict or None
        Share of resampled fits reproducing each edge, the fork and each detour
        (:func:`bayes_trainmap.fitting.robustness.robustness_section`).
    """

    settings: dict[str, Any]
    training_map: TrainingMap
    convergence: ConvergenceResult
    occupancy: pd.DataFrame
    regression: RegressionResult
    censored_runs: list[str]
    dissimilarity: float
    forking: bool
    baselines: list[BaselineSelection] | None = None
    split: dict[str, str] | None = None
    uncertainty: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None

    @property
    def detour_states(self) -> list[int]:
        """States flagged as detours by the regression."""
        return self.regression.detour_states

    @property
    def table1(self) -> dict[str, Any]:
        """The paper's Table-1 row: R^2, p-value, dissimilarity, forking."""
        return {
            "r_squared": self.regression.r_squared,
            "p_value": self.regression.f_pvalue,
            "dissimilarity": self.dissimilarity,
            "forking": self.forking,
        }

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dictionary of every number (NaN as ``None``)."""
        return _clean(
            {
                "format": ANALYSIS_FORMAT,
                "version": ANALYSIS_VERSION,
                "settings": dict(self.settings),
                "table1": self.table1,
                "training_map": self.training_map.to_dict(),
                "convergence": self.convergence.to_dict(),
                "occupancy": {
                    "runs": [str(r) for r in self.occupancy.index],
                    "states": [int(c) for c in self.occupancy.columns],
                    "values": self.occupancy.to_numpy(dtype=float).tolist(),
                },
                "regression": self.regression.to_dict(),
                "censored_runs": list(self.censored_runs),
                "dissimilarity": self.dissimilarity,
                "forking": bool(self.forking),
                "detour_states": self.detour_states,
                "baselines": None if self.baselines is None else [b.to_dict() for b in self.baselines],
                "split": self.split,
                "uncertainty": self.uncertainty,
                "robustness": self.robustness,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Analysis":
        if d.get("format") != ANALYSIS_FORMAT:
            raise BayesTrainmapError(f"not an analysis dictionary (format {d.get('format')!r}, expected {ANALYSIS_FORMAT!r})")
        occ = d["occupancy"]
        occupancy_frame = pd.DataFrame(
            np.asarray(occ["values"], dtype=float).reshape(len(occ["runs"]), len(occ["states"])),
            index=pd.Index(occ["runs"], name=RUN_COLUMN),
            columns=[int(s) for s in occ["states"]],
        )
        baselines = d.get("baselines")
        return cls(
            settings=dict(d["settings"]),
            training_map=TrainingMap.from_dict(d["training_map"]),
            convergence=ConvergenceResult.from_dict(d["convergence"]),
            occupancy=occupancy_frame,
            regression=RegressionResult.from_dict(d["regression"]),
            censored_runs=list(d.get("censored_runs", [])),
            dissimilarity=float("nan") if d["dissimilarity"] is None else float(d["dissimilarity"]),
            forking=bool(d["forking"]),
            baselines=None if baselines is None else [BaselineSelection.from_dict(b) for b in baselines],
            split=d.get("split"),
            uncertainty=d.get("uncertainty"),
            robustness=d.get("robustness"),
        )


def _clean(value: Any) -> Any:
    """Recursively convert numpy scalars and non-finite floats to strict-JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def compute_filtered(params, Z: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Filtered posteriors ``p(s_t | z_1:t)`` of every checkpoint under ``params``, shape (n, K)."""
    log_emission = gaussian_log_likelihood(np.asarray(Z, dtype=float), params.means, params.covars, params.covariance_type)
    with np.errstate(divide="ignore"):
        log_start = np.log(np.asarray(params.start_prob, dtype=float))
        log_trans = np.log(np.asarray(params.trans_mat, dtype=float))
    return np.asarray(filtered_posteriors(log_emission, log_start, log_trans, np.asarray(lengths)), dtype=float)


def _split_mapping(split, run_ids: list[str]) -> dict[str, str] | None:
    if split is None:
        return None
    if isinstance(split, Mapping):
        return {r: str(split[r]) for r in run_ids}
    if isinstance(split, pd.Series):
        return {r: str(split.loc[r]) for r in run_ids}
    values = list(split)
    if len(values) != len(run_ids):
        raise BayesTrainmapError(f"split has {len(values)} entries, expected one per run ({len(run_ids)})")
    return {r: str(v) for r, v in zip(run_ids, values)}


def _outcome_values(outcomes, outcome: str, n: int) -> np.ndarray:
    if isinstance(outcomes, Mapping) or isinstance(outcomes, pd.DataFrame):
        if outcome not in outcomes:
            raise BayesTrainmapError(f"outcome {outcome!r} not found; available outcomes: {sorted(outcomes.keys())}")
        values = outcomes[outcome]
    else:
        values = outcomes
    values = np.asarray(values, dtype=float)
    if values.shape != (n,):
        raise BayesTrainmapError(f"outcome {outcome!r} has shape {values.shape}, expected ({n},)")
    return values


def _select_rows(lengths: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Checkpoint mask selecting the runs in ``keep`` (bool, shape (N,))."""
    return np.repeat(keep, lengths)


def _baseline_data_from_split(Z, lengths, run_ids, split, feature_names):
    train = np.array([split[r] == "train" for r in run_ids])
    val = np.array([split[r] == "val" for r in run_ids])
    if not train.any() or not val.any():
        return None
    return {
        "X_train": Z[_select_rows(lengths, train)],
        "len_train": lengths[train],
        "X_val": Z[_select_rows(lengths, val)],
        "len_val": lengths[val],
        "feature_names": feature_names,
    }


def _run_baselines(
    data: Mapping[str, Any], states_range, random_state: int, options: Mapping[str, Any] | None = None
) -> list[BaselineSelection]:
    names = list(data["feature_names"])
    options = dict(options or {})
    kmeans_opts = {k: options[k] for k in ("n_init",) if k in options}
    hmm1_opts = {k: options[k] for k in ("n_restarts", "n_iter") if k in options}
    out = [kmeans_selection(data["X_train"], data["X_val"], states_range, random_state=random_state, **kmeans_opts)]
    if "l2" in names:
        col = names.index("l2")
        out.append(
            hmm1_selection(
                np.asarray(data["X_train"])[:, col],
                data["len_train"],
                np.asarray(data["X_val"])[:, col],
                data["len_val"],
                states_range,
                random_state=random_state,
                **hmm1_opts,
            )
        )
    else:
        logger.warning("no 'l2' feature; the HMM-1 baseline is skipped")
    return out


def analyze(
    params,
    Z: np.ndarray,
    lengths: np.ndarray,
    run_ids: list[str],
    steps: np.ndarray,
    outcomes,
    *,
    paths: np.ndarray,
    filtered: np.ndarray | None = None,
    split=None,
    outcome: str = "eval_accuracy",
    threshold: float = 0.9,
    higher_is_better: bool | None = None,
    include_unconverged: bool = False,
    ground_metric: str = "zero_one",
    baseline_data: Mapping[str, Any] | None = None,
    run_baselines: bool = True,
    states_range=DEFAULT_STATES_RANGE,
    baseline_options: Mapping[str, Any] | None = None,
    random_state: int = 0,
) -> Analysis:
    """Analyse a fitted HMM and its decoded runs.

    Parameters
    ----------
    params : inference.params.HMMParams
        The fitted model.
    Z : numpy.ndarray, shape (n, d)
        z-scored features, concatenated over runs (model feature order).
    lengths : numpy.ndarray of int, shape (N,)
    run_ids : list of str, length N
    steps : numpy.ndarray, shape (n,)
        Training step of each checkpoint.
    outcomes : mapping name -> array (n,), DataFrame, or array (n,)
        Outcome columns (or the one outcome).
    paths : numpy.ndarray of int, shape (n,)
        Viterbi states.
    filtered : numpy.ndarray, shape (n, K), optional
        Filtered posteriors; computed from ``params`` when omitted.
    split : mapping run -> "train"/"val" or sequence (N,), optional
        The run split; enables the baselines when ``baseline_data`` is omitted.
    outcome : str
        Outcome column defining convergence.
    threshold : float
        Convergence threshold (see :data:`bayes_trainmap.analysis.convergence.TASK_THRESHOLDS`).
    higher_is_better : bool or None
        Crossing direction (default: downwards for losses).
    include_unconverged : bool
        Keep never-converged runs in the regression, censored at their last step
        (a lower bound on their convergence step); by default they are left out.
    ground_metric : {"zero_one", "means"}
        Ground metric of the dissimilarity.
    baseline_data : mapping, optional
        ``X_train, len_train, X_val, len_val, feature_names`` for the baselines.
    run_baselines : bool
        Set False to skip the baselines.
    states_range : iterable of int
        Component counts the baselines try (the HMM's range).
    baseline_options : mapping, optional
        ``n_init`` (k-means restarts), ``n_restarts`` and ``n_iter`` (HMM-1 EM).
    random_state : int

    Returns
    -------
    Analysis
    """
    Z = np.asarray(Z, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    paths = np.asarray(paths, dtype=np.int64)
    steps = np.asarray(steps)
    run_ids = [str(r) for r in run_ids]
    n_states = int(params.n_states) if hasattr(params, "n_states") else int(np.asarray(params.means).shape[0])
    feature_names = list(getattr(params, "feature_names", None) or [f"x{i}" for i in range(Z.shape[1])])
    if Z.shape[0] != lengths.sum() or paths.shape != (Z.shape[0],) or steps.shape != (Z.shape[0],):
        raise BayesTrainmapError(
            f"Z {Z.shape}, paths {paths.shape} and steps {steps.shape} must all have lengths.sum() = {lengths.sum()} rows"
        )
    if filtered is None:
        filtered = compute_filtered(params, Z, lengths)
    split_map = _split_mapping(split, run_ids)

    values = _outcome_values(outcomes, outcome, Z.shape[0])
    conv = convergence_from_arrays(
        values, steps, lengths, run_ids, outcome=outcome, threshold=threshold, higher_is_better=higher_is_better
    )
    if conv.never_converged:
        logger.warning(
            "%d of %d runs never reach %s %s %g: %s",
            len(conv.never_converged),
            len(run_ids),
            outcome,
            ">=" if conv.higher_is_better else "<=",
            threshold,
            ", ".join(conv.never_converged),
        )
    tmap = build_training_map(params, Z, lengths, paths, filtered, run_ids, conv.steps)

    occ = occupancy(paths, lengths, n_states)
    occ_frame = pd.DataFrame(occ, index=pd.Index(run_ids, name=RUN_COLUMN), columns=list(range(n_states)))
    y = conv.steps.reindex(run_ids).to_numpy(dtype=float)
    censored: list[str] = []
    if include_unconverged and conv.never_converged:
        last_steps = steps[np.cumsum(lengths) - 1].astype(float)
        missing = ~np.isfinite(y)
        y = np.where(missing, last_steps, y)
        censored = [r for r, m in zip(run_ids, missing) if m]
    keep = np.isfinite(y)
    regression = convergence_regression(occ[keep], y[keep], run_ids=[r for r, k in zip(run_ids, keep) if k])

    dissimilarity = (
        trajectory_dissimilarity(occ, ground_metric, np.asarray(params.means)) if len(run_ids) > 1 else float("nan")
    )
    forking = is_forking(tmap.edges, n_states, visited_states=tmap.visited_states)

    baselines = None
    if run_baselines:
        data = baseline_data
        if data is None and split_map is not None:
            data = _baseline_data_from_split(Z, lengths, run_ids, split_map, feature_names)
        if data is not None:
            baselines = _run_baselines(data, states_range, random_state, baseline_options)

    settings = {
        "outcome": outcome,
        "threshold": float(threshold),
        "higher_is_better": conv.higher_is_better,
        "include_unconverged": bool(include_unconverged),
        "ground_metric": ground_metric,
        "n_states": n_states,
        "n_runs": len(run_ids),
        "n_checkpoints": int(lengths.sum()),
        "feature_names": feature_names,
        "states_range": [int(k) for k in states_range],
    }
    return Analysis(
        settings=settings,
        training_map=tmap,
        convergence=conv,
        occupancy=occ_frame,
        regression=regression,
        censored_runs=censored,
        dissimilarity=float(dissimilarity),
        forking=bool(forking),
        baselines=baselines,
        split=split_map,
    )


def validate_uncertainty(uncertainty: Mapping[str, Any]) -> None:
    """Check that an ``uncertainty`` dict has the documented structure; raise ValueError if not."""
    missing = [k for k in UNCERTAINTY_KEYS if k not in uncertainty]
    if missing:
        raise BayesTrainmapError(f"uncertainty is missing keys {missing}")
    for row in uncertainty["edges"]:
        absent = [k for k in UNCERTAINTY_EDGE_KEYS if k not in row]
        if absent:
            raise BayesTrainmapError(f"uncertainty edge {row} is missing keys {absent}")
    for row in uncertainty["states"]:
        absent = [k for k in UNCERTAINTY_STATE_KEYS if k not in row]
        if absent:
            raise BayesTrainmapError(f"uncertainty state {row} is missing keys {absent}")
    absent = [k for k in ("median", "lo", "hi") if k not in uncertainty["r_squared"]]
    if absent:
        raise BayesTrainmapError(f"uncertainty r_squared is missing keys {absent}")
