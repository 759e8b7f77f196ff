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

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from bayes_trainmap.analysis.dissimilarity import (
    is_forking,
    structural_edges,
    trajectory_dissimilarity,
)
from bayes_trainmap.analysis.training_map import TrainingMap, build_training_map
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.schema import RUN_COLUMN
from bayes_trainmap.core.storage import to_jsonable
from bayes_trainmap.data.fitted import FittedRuns
from bayes_trainmap.inference.emissions import gaussian_log_likelihood
from bayes_trainmap.inference.forward_backward import filtered_posteriors

__all__ = ["Analysis", "AnalysisOptions", "analyze", "compute_filtered", "validate_uncertainty", "UNCERTAINTY_KEYS", "ANALYSIS_FORMAT"]

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
        return to_jsonable(
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


@dataclass(frozen=True)
class AnalysisOptions:
    """How the analysis reads a fit; stored in ``config.json`` under ``"analysis"``.

    Attributes
    ----------
    outcome : str
        Outcome column defining convergence.
    threshold : float
        Convergence threshold (see :data:`bayes_trainmap.analysis.convergence.TASK_THRESHOLDS`).
    higher_is_better : bool or None
        Crossing direction (None: downwards for losses, upwards otherwise).
    include_unconverged : bool
        Keep never-converged runs in the regression, censored at their last step
        (a lower bound on their convergence step); by default they are left out.
    ground_metric : {"zero_one", "means"}
        Ground metric of the dissimilarity.
    run_baselines : bool
        Fit the k-means and HMM-1 baselines (needs the run split).
    states_range : tuple of int
        Component counts the baselines try (the HMM's range).
    baseline_options : dict
        ``n_init`` (k-means restarts), ``n_restarts`` and ``n_iter`` (HMM-1 EM).
    random_state : int
        Seeds the baselines.
    """

    outcome: str = "eval_accuracy"
    threshold: float = 0.9
    higher_is_better: bool | None = None
    include_unconverged: bool = False
    ground_metric: str = "zero_one"
    run_baselines: bool = True
    states_range: tuple[int, ...] = tuple(DEFAULT_STATES_RANGE)
    baseline_options: dict[str, Any] = field(default_factory=dict)
    random_state: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "states_range", tuple(int(k) for k in self.states_range))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "baseline_options", dict(self.baseline_options or {}))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "states_range": list(self.states_range)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AnalysisOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def analyze(
    params,
    runs: FittedRuns,
    options: AnalysisOptions | None = None,
    *,
    filtered: np.ndarray | None = None,
    baseline_data: Mapping[str, Any] | None = None,
) -> Analysis:
    """Analyse a fitted HMM and its decoded runs.

    Parameters
    ----------
    params : inference.params.HMMParams
        The fitted model (K states, d features).
    runs : FittedRuns
        The decoded runs (``runs.paths`` set): z-scored features ``Z (n, d)``,
        ``lengths (N,)``, ``steps (n,)``, outcomes ``(n,)`` each and the run split.
    options : AnalysisOptions, optional
    filtered : numpy.ndarray, shape (n, K), optional
        Filtered posteriors; computed from ``params`` when omitted.
    baseline_data : mapping, optional
        ``X_train, len_train, X_val, len_val, feature_names`` for the baselines
        (default: the runs' own split).

    Returns
    -------
    Analysis
    """
    options = options or AnalysisOptions()
    if runs.paths is None:
        raise BayesTrainmapError("the runs must be decoded (runs.paths) before the analysis")
    if options.outcome in runs.features:
        raise BayesTrainmapError(
            f"the convergence outcome {options.outcome!r} is also a model feature; the regression would explain "
            "convergence by the outcome itself -- leave it out of the features"
        )
    n_states = int(params.n_states)
    lengths, paths, run_ids = runs.lengths, runs.paths, runs.run_ids
    if filtered is None:
        filtered = compute_filtered(params, runs.Z, lengths)
    split_map = _split_mapping(runs.split, run_ids)
    conv = _convergence(runs, options)
    tmap = build_training_map(params, runs.Z, lengths, paths, filtered, run_ids, conv.steps)
    occ = occupancy(paths, lengths, n_states)
    regression, censored = _detour_regression(runs, occ, conv, options)
    dissimilarity = (
        trajectory_dissimilarity(occ, options.ground_metric, np.asarray(params.means)) if len(run_ids) > 1 else float("nan")
    )
    # Structure without one-checkpoint j -> k -> j flickers (see dissimilarity.structural_edges).
    struct_edges, struct_states = structural_edges(paths, lengths)
    forking = is_forking(struct_edges, n_states, visited_states=struct_states)

    baselines = None
    if options.run_baselines:
        data = baseline_data
        if data is None and split_map is not None:
            data = _baseline_data_from_split(runs.Z, lengths, run_ids, split_map, list(runs.features))
        if data is not None:
            baselines = _run_baselines(data, options.states_range, options.random_state, options.baseline_options)
    settings = {
        "outcome": options.outcome,
        "threshold": options.threshold,
        "higher_is_better": conv.higher_is_better,
        "include_unconverged": bool(options.include_unconverged),
        "ground_metric": options.ground_metric,
        "n_states": n_states,
        "n_runs": len(run_ids),
        "n_checkpoints": int(lengths.sum()),
        "feature_names": list(runs.features),
        "states_range": list(options.states_range),
    }
    return Analysis(
        settings=settings,
        training_map=tmap,
        convergence=conv,
        occupancy=pd.DataFrame(occ, index=pd.Index(run_ids, name=RUN_COLUMN), columns=list(range(n_states))),
        regression=regression,
        censored_runs=censored,
        dissimilarity=float(dissimilarity),
        forking=bool(forking),
        baselines=baselines,
        split=split_map,
    )


def _convergence(runs: FittedRuns, options: AnalysisOptions) -> ConvergenceResult:
    """Convergence step per run, with a warning naming the runs that never converge."""
    values = _outcome_values(runs.outcomes, options.outcome, runs.Z.shape[0])
    conv = convergence_from_arrays(
        values,
        runs.steps,
        runs.lengths,
        runs.run_ids,
        outcome=options.outcome,
        threshold=options.threshold,
        higher_is_better=options.higher_is_better,
    )
    if conv.no_outcome:
        logger.warning(
            "%d of %d runs have no finite value of %s and are left out of the regression: %s",
            len(conv.no_outcome),
            runs.n_runs,
            options.outcome,
            ", ".join(conv.no_outcome),
        )
    # never-converged runs are part of the result; every report lists them (not logged twice)
    return conv


def _detour_regression(runs: FittedRuns, occ: np.ndarray, conv: ConvergenceResult, options: AnalysisOptions):
    """The convergence-time regression on occupancy, and the runs censored into it."""
    run_ids = runs.run_ids
    y = conv.steps.reindex(run_ids).to_numpy(dtype=float)
    censored: list[str] = []
    if options.include_unconverged and conv.never_converged:
        last_steps = runs.steps[np.cumsum(runs.lengths) - 1].astype(float)
        missing = np.isin(run_ids, conv.never_converged)  # not the runs without any outcome value
        y = np.where(missing, last_steps, y)
        censored = [r for r, m in zip(run_ids, missing) if m]
    keep = np.isfinite(y)
    regression = convergence_regression(occ[keep], y[keep], run_ids=[r for r, k in zip(run_ids, keep) if k])
    return regression, censored


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
