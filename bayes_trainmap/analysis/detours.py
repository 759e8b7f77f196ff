"""Occupancy features and the convergence-time regression that finds detour states.

Section 2.3 of Hu et al. (2023): featurise each run by its empirical state
distribution ``P_hat(s = k) = #{t : s_t = k} / T`` ("bag of states"), regress the
convergence step on it, and call a state a **detour** iff its coefficient is
positive and some converged runs never visit it.

The regression used here:

* response: convergence step standardised across the regression's runs
  (mean 0, sample standard deviation 1), so coefficients are in SD units;
* design: the occupancy fractions of the states visited by at least one of
  those runs, with **no separate intercept** -- the fractions sum to one, so a
  constant column would be collinear and the per-state coefficients carry it;
* statsmodels OLS with ``hasconst=True`` (the constant lies in the column span),
  so R^2 is the centred one and the F-test compares against the intercept-only model;
* standard errors and 95 % confidence intervals per coefficient.

The paper's own advice is to interpret the coefficients only when the F-test
is significant; :attr:`RegressionResult.warning` says so when ``p >= 0.05``.

Identifiability (:mod:`bayes_trainmap.analysis.identifiability`): a state whose occupancy is
the same in every run is aliased with the intercept and not identified; the other
states are then regressed on their occupancies renormalised over the states that
vary (same fitted values; each coefficient is the predicted step of a run that
spends all of its non-fixed time in that state). When that design is still
rank-deficient (collinear states, more states than runs) only the coefficients
orthogonal to its null space are estimated, by OLS on a full-rank reduced design
with the same column space. Non-identified states have NaN estimates,
``identified = False`` and a reason, and are never detours. R^2 is reported whenever
the fitted values are defined; the F-test only with at least one model and one
residual degree of freedom and a non-zero residual. An exact fit (zero residual)
gives coefficients without standard errors, intervals or p-values; a saturated one
(no more runs than the design's rank) gives no coefficients and no R^2. The reason
is always in :attr:`RegressionResult.warning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_trainmap.analysis.identifiability import occupancy_design
from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["occupancy", "RegressionResult", "convergence_regression", "SIGNIFICANCE_LEVEL"]

#: p-value at or above which the report warns that coefficients should not be interpreted.
SIGNIFICANCE_LEVEL = 0.05
#: A residual sum of squares at most this fraction of the total (centred) one is an exact fit.
ZERO_RESIDUAL_RTOL = 1e-12


def occupancy(paths: np.ndarray, lengths: np.ndarray, n_states: int) -> np.ndarray:
    """Empirical state distribution of every run.

    Parameters
    ----------
    paths : numpy.ndarray of int, shape (n,)
        Decoded (Viterbi) state of every checkpoint, concatenated over runs.
    lengths : numpy.ndarray of int, shape (N,)
        Checkpoints per run.
    n_states : int
        Number of states K.

    Returns
    -------
    numpy.ndarray, shape (N, K)
        Row i is ``P_hat_i(s = k)``; rows sum to one.
    """
    paths = np.asarray(paths, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != paths.size:
        raise BayesTrainmapError(f"lengths sum to {lengths.sum()}, expected len(paths) = {paths.size}")
    if np.any(lengths <= 0):
        raise BayesTrainmapError(f"every run needs at least one checkpoint, got lengths {lengths.tolist()}")
    if paths.size and (paths.min() < 0 or paths.max() >= n_states):
        raise BayesTrainmapError(f"paths contain states outside 0..{n_states - 1}")
    run_index = np.repeat(np.arange(lengths.size), lengths)
    counts = np.zeros((lengths.size, n_states))
    np.add.at(counts, (run_index, paths), 1.0)
    return counts / lengths[:, None]


@dataclass
class RegressionResult:
    """Convergence-time regression on occupancy fractions (one entry per state).

    Attributes
    ----------
    coefficients, std_errors, ci_low, ci_high, pvalues : numpy.ndarray, shape (K,)
        Per-state coefficient (SD units of convergence step), its standard error,
        95 % confidence interval and t-test p-value; NaN for dropped states.
    visited_by : numpy.ndarray of int, shape (K,)
        Number of regression runs that visit each state at least once.
    detour : numpy.ndarray of bool, shape (K,)
        Identified, coefficient > 0 and at least one regression run never visits the state.
    dropped_states : list of int
        States no regression run visits (no column in the design).
    r_squared : float
        Centred R^2.
    f_statistic, f_pvalue : float
        F-test against the intercept-only model (NaN when undefined).
    df_model, df_resid : float
    n_runs : int
        Runs in the regression.
    runs : list of str
        Their ids.
    step_mean, step_sd : float
        Mean and sample SD used to standardise the convergence steps.
    warning : str or None
        Why the coefficients should not be interpreted, if they should not.
    identified : numpy.ndarray of bool, shape (K,)
        The state's coefficient is estimated (estimable and the fit has residual
        degrees of freedom); False entries have NaN estimates and are never detours.
    not_identified_reasons : list of (str or None), length K
        Why each non-identified state has no coefficient (None where identified).
    rank : int
        Numerical rank of the occupancy design (visited states only).
    """

    coefficients: np.ndarray
    std_errors: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    pvalues: np.ndarray
    visited_by: np.ndarray
    detour: np.ndarray
    dropped_states: list[int]
    r_squared: float
    f_statistic: float
    f_pvalue: float
    df_model: float
    df_resid: float
    n_runs: int
    runs: list[str] = field(default_factory=list)
    step_mean: float = float("nan")
    step_sd: float = float("nan")
    warning: str | None = None
    identified: np.ndarray | None = None
    not_identified_reasons: list | None = None
    rank: int = 0

    def __post_init__(self):
        k = int(np.asarray(self.coefficients).size)
        if self.identified is None:  # results written before identification was recorded
            self.identified = np.isfinite(np.asarray(self.coefficients, dtype=float))
        self.identified = np.asarray(self.identified, dtype=bool)
        if self.not_identified_reasons is None:
            self.not_identified_reasons = [None if ok else "not identified" for ok in self.identified]
        if self.identified.shape != (k,) or len(self.not_identified_reasons) != k:
            raise BayesTrainmapError(f"identified/not_identified_reasons must have {k} entries")

    @property
    def n_states(self) -> int:
        return int(self.coefficients.size)

    @property
    def not_identified_states(self) -> list[int]:
        """Visited states whose coefficient the data do not identify."""
        return [int(k) for k in np.flatnonzero(~self.identified & (self.visited_by > 0))]

    @property
    def detour_states(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(self.detour)]

    def table(self) -> pd.DataFrame:
        """One row per state: coefficient, std_error, ci_low, ci_high, p_value, visited_by, identified, detour."""
        return pd.DataFrame(
            {
                "state": np.arange(self.n_states),
                "coefficient": self.coefficients,
                "std_error": self.std_errors,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": self.pvalues,
                "visited_by": self.visited_by,
                "identified": self.identified,
                "detour": self.detour,
            }
        )

    def to_dict(self) -> dict:
        def arr(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]

        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {
            "coefficients": arr(self.coefficients),
            "std_errors": arr(self.std_errors),
            "ci_low": arr(self.ci_low),
            "ci_high": arr(self.ci_high),
            "pvalues": arr(self.pvalues),
            "visited_by": [int(v) for v in self.visited_by],
            "detour": [bool(v) for v in self.detour],
            "dropped_states": [int(k) for k in self.dropped_states],
            "r_squared": num(self.r_squared),
            "f_statistic": num(self.f_statistic),
            "f_pvalue": num(self.f_pvalue),
            "df_model": num(self.df_model),
            "df_resid": num(self.df_resid),
            "n_runs": int(self.n_runs),
            "runs": list(self.runs),
            "step_mean": num(self.step_mean),
            "step_sd": num(self.step_sd),
            "warning": self.warning,
            "identified": [bool(v) for v in self.identified],
            "not_identified_reasons": list(self.not_identified_reasons),
            "rank": int(self.rank),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RegressionResult":
        def arr(key):
            return np.array([np.nan if v is None else v for v in d[key]], dtype=float)

        def num(v):
            return float("nan") if v is None else float(v)

        return cls(
            coefficients=arr("coefficients"),
            std_errors=arr("std_errors"),
            ci_low=arr("ci_low"),
            ci_high=arr("ci_high"),
            pvalues=arr("pvalues"),
            visited_by=np.asarray(d["visited_by"], dtype=np.int64),
            detour=np.asarray(d["detour"], dtype=bool),
            dropped_states=[int(k) for k in d["dropped_states"]],
            r_squared=num(d["r_squared"]),
            f_statistic=num(d["f_statistic"]),
            f_pvalue=num(d["f_pvalue"]),
            df_model=num(d["df_model"]),
            df_resid=num(d["df_resid"]),
            n_runs=int(d["n_runs"]),
            runs=list(d.get("runs", [])),
            step_mean=num(d.get("step_mean")),
            step_sd=num(d.get("step_sd")),
            warning=d.get("warning"),
            identified=None if d.get("identified") is None else np.asarray(d["identified"], dtype=bool),
            not_identified_reasons=d.get("not_identified_reasons"),
            rank=int(d.get("rank", 0)),
        )


def convergence_regression(
    occupancy: np.ndarray,
    steps: np.ndarray,
    *,
    run_ids: list[str] | None = None,
    alpha: float = 0.05,
) -> RegressionResult:
    """Regress standardised convergence steps on occupancy fractions.

    Parameters
    ----------
    occupancy : numpy.ndarray, shape (N, K)
        Occupancy fractions of the regression's runs (rows sum to one).
    steps : numpy.ndarray, shape (N,)
        Their convergence steps (all finite: leave never-converged runs out first).
    run_ids : list of str, optional
        Run names, kept in the result.
    alpha : float
        1 - confidence level of the intervals (0.05 gives 95 % intervals).

    Returns
    -------
    RegressionResult
    """
    occ = np.asarray(occupancy, dtype=float)
    y_raw = np.asarray(steps, dtype=float)
    _check_regression_inputs(occ, y_raw)
    n_runs = occ.shape[0]
    runs = list(run_ids) if run_ids is not None else [str(i) for i in range(n_runs)]
    result = _unfitted_result(occ, runs)
    keep = np.flatnonzero(result.visited_by > 0)

    if n_runs < 2:
        return _refuse(result, keep, f"only {n_runs} converged run(s); the regression needs at least 2")
    mean, sd = float(y_raw.mean()), float(y_raw.std(ddof=1))
    result.step_mean, result.step_sd = mean, sd
    if not sd > 0:
        return _refuse(result, keep, "every run converges at the same step; there is no variance to explain")

    y = (y_raw - mean) / sd
    design = occupancy_design(occ[:, keep])
    if design.free.size == 0:
        return _refuse(result, keep, "every run has the same occupancy of every state; there is nothing to regress on")
    rank = design.rank
    result.rank = rank
    result.df_model, result.df_resid = float(rank - 1), float(n_runs - rank)
    if n_runs <= rank:
        return _refuse(
            result, keep,
            f"{n_runs} runs for an occupancy design of rank {rank} ({keep.size} visited states) leave no "
            "residual degrees of freedom: the fit is saturated, so R², the F-test and the coefficients "
            "are not identified",
        )
    alias_note = _alias_reasons(design, keep, result.not_identified_reasons)
    exact = _fit_ols(result, y, design, keep, alpha)
    result.warning = _flag_detours(result, rank, exact, alias_note)
    return result


def _check_regression_inputs(occ: np.ndarray, y_raw: np.ndarray) -> None:
    """Raise :class:`BayesTrainmapError` unless ``occ`` is (N, K) of row-stochastic
    fractions and ``y_raw`` (N,) finite steps."""
    if occ.ndim != 2 or y_raw.shape != (occ.shape[0],):
        raise BayesTrainmapError(f"occupancy {occ.shape} and steps {y_raw.shape} must be (N, K) and (N,)")
    if not np.all(np.isfinite(y_raw)):
        raise BayesTrainmapError("convergence steps must be finite; leave never-converged runs out first")
    if not np.allclose(occ.sum(axis=1), 1.0, atol=1e-8):
        raise BayesTrainmapError("occupancy rows must sum to one (fractions of each run's checkpoints)")


def _unfitted_result(occ: np.ndarray, runs: list[str]) -> RegressionResult:
    """The result before any fit: NaN coefficients, nothing identified, states no run
    visits dropped (with their reason)."""
    n_runs, n_states = occ.shape
    visited_by = (occ > 0).sum(axis=0).astype(np.int64)
    n_kept = int(np.count_nonzero(visited_by > 0))
    dropped = [int(k) for k in np.flatnonzero(visited_by == 0)]
    nan_k = np.full(n_states, np.nan)
    reasons: list[str | None] = [None] * n_states
    for k in dropped:
        reasons[k] = "visited by no run in the regression"
    return RegressionResult(
        coefficients=nan_k.copy(),
        std_errors=nan_k.copy(),
        ci_low=nan_k.copy(),
        ci_high=nan_k.copy(),
        pvalues=nan_k.copy(),
        visited_by=visited_by,
        detour=np.zeros(n_states, dtype=bool),
        dropped_states=dropped,
        r_squared=float("nan"),
        f_statistic=float("nan"),
        f_pvalue=float("nan"),
        df_model=float(n_kept - 1),
        df_resid=float(n_runs - n_kept),
        n_runs=n_runs,
        runs=runs,
        identified=np.zeros(n_states, dtype=bool),
        not_identified_reasons=reasons,
    )


def _refuse(result: RegressionResult, keep: np.ndarray, why: str) -> RegressionResult:
    """``result`` unfitted, with ``why`` as its warning and every visited state's reason."""
    for k in keep:
        result.not_identified_reasons[k] = why
    result.warning = why
    return result


def _fit_ols(result: RegressionResult, y: np.ndarray, design, keep: np.ndarray, alpha: float) -> bool:
    """Fit OLS on the reduced design and fill ``result``'s estimates in place.

    Parameters
    ----------
    result : RegressionResult
    y : numpy.ndarray, shape (N,)
        Standardised convergence steps.
    design : OccupancyDesign
        The occupancy design of the visited states ``keep``.
    keep : numpy.ndarray of int, shape (K_visited,)
    alpha : float

    Returns
    -------
    exact : bool
        Whether the fit has zero residual (then no standard errors, intervals,
        p-values or F-test are filled in).
    """
    import statsmodels.api as sm

    R = design.reduced()
    # hasconst=True: the rows of the design sum to one, so the constant lies in its span.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = sm.OLS(y, R, hasconst=True).fit()
    est = keep[design.identified_columns]
    idx = design.coefficient_positions()
    rss = float(np.sum(fitted.resid**2))
    tss = float(np.sum(y**2))  # y is centred
    exact = rss <= ZERO_RESIDUAL_RTOL * tss
    result.coefficients[est] = np.asarray(fitted.params)[idx]
    result.identified[est] = True
    result.r_squared = float(1.0 - rss / tss) if not exact else 1.0
    if not exact:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = np.asarray(fitted.conf_int(alpha=alpha))
            result.std_errors[est] = np.asarray(fitted.bse)[idx]
            result.ci_low[est], result.ci_high[est] = ci[idx, 0], ci[idx, 1]
            result.pvalues[est] = np.asarray(fitted.pvalues)[idx]
            if design.rank > 1:
                result.f_statistic = float(fitted.fvalue)
                result.f_pvalue = float(fitted.f_pvalue)
    return exact


def _flag_detours(result: RegressionResult, rank: int, exact: bool, alias_note: str | None) -> str | None:
    """Set ``result.detour`` (identified optional states with a positive coefficient);
    return the fitted regression's warning (None when there is nothing to say)."""
    notes = []
    if exact:
        notes.append(
            "the fit is exact (zero residual), so standard errors, confidence intervals, p-values and "
            "the F-test are undefined"
        )
    optional = result.visited_by < result.n_runs
    result.detour = (np.nan_to_num(result.coefficients, nan=0.0) > 0) & optional & result.identified
    if rank < 2:
        result.detour[:] = False  # only the mean is fitted: a sign would be rounding noise
        notes.insert(0, "the occupancy design has rank 1 (only the mean is fitted); there is nothing to regress on")
    elif not exact and (not np.isfinite(result.f_pvalue) or result.f_pvalue >= SIGNIFICANCE_LEVEL):
        notes.append(
            f"the regression is not significant (F-test p = {result.f_pvalue:.3g} >= {SIGNIFICANCE_LEVEL}); "
            "its coefficients and detour flags should not be interpreted"
        )
    if alias_note:
        notes.insert(0, alias_note)
    return "; ".join(notes) if notes else None


def _alias_reasons(design, keep: np.ndarray, reasons: list) -> str | None:
    """Fill ``reasons`` for the aliased visited states; return one summary sentence (or None)."""
    ident = design.identification
    notes = []
    if design.constant.size:
        const = [int(keep[c]) for c in design.constant]
        vals = ", ".join(f"state {k}: {v:.3g}" for k, v in zip(const, design.shares))
        why = (
            f"aliased with the intercept: its occupancy is the same in every run ({vals}); the other "
            "states' coefficients are estimated with this share held fixed (occupancies renormalised "
            "over the states that vary)"
        )
        for k in const:
            reasons[k] = why
        notes.append(f"state(s) {const} have the same occupancy in every run ({vals}) and are not identified")
    if not ident.full_rank:
        for group in ident.alias_groups:
            states = [int(keep[design.free[c]]) for c in group]
            why = (
                f"aliased with state(s) {states}: their occupancies are linearly dependent "
                "(K may over-split a state), so only combinations of their coefficients are determined"
            )
            for k in states:
                reasons[k] = why
        bad = sorted(int(keep[design.free[j]]) for j in np.flatnonzero(~ident.identified))
        notes.append(
            f"the occupancy design is rank-deficient (rank {ident.rank} for {keep.size} visited states): "
            f"the coefficients of state(s) {bad} are not identified and are never detours"
        )
    return "; ".join(notes) if notes else None
