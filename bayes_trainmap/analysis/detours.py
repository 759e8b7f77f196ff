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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["occupancy", "RegressionResult", "convergence_regression", "SIGNIFICANCE_LEVEL"]

#: p-value at or above which the report warns that coefficients should not be interpreted.
SIGNIFICANCE_LEVEL = 0.05


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
        Coefficient > 0 and at least one regression run never visits the state.
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

    @property
    def n_states(self) -> int:
        return int(self.coefficients.size)

    @property
    def detour_states(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(self.detour)]

    def table(self) -> pd.DataFrame:
        """One row per state: coefficient, std_error, ci_low, ci_high, p_value, visited_by, detour."""
        return pd.DataFrame(
            {
                "state": np.arange(self.n_states),
                "coefficient": self.coefficients,
                "std_error": self.std_errors,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": self.pvalues,
                "visited_by": self.visited_by,
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
    import statsmodels.api as sm

    occ = np.asarray(occupancy, dtype=float)
    y_raw = np.asarray(steps, dtype=float)
    if occ.ndim != 2 or y_raw.shape != (occ.shape[0],):
        raise BayesTrainmapError(f"occupancy {occ.shape} and steps {y_raw.shape} must be (N, K) and (N,)")
    if not np.all(np.isfinite(y_raw)):
        raise BayesTrainmapError("convergence steps must be finite; leave never-converged runs out first")
    if not np.allclose(occ.sum(axis=1), 1.0, atol=1e-8):
        raise BayesTrainmapError("occupancy rows must sum to one (fractions of each run's checkpoints)")
    n_runs, n_states = occ.shape
    runs = list(run_ids) if run_ids is not None else [str(i) for i in range(n_runs)]

    visited_by = (occ > 0).sum(axis=0).astype(np.int64)
    keep = np.flatnonzero(visited_by > 0)
    dropped = [int(k) for k in np.flatnonzero(visited_by == 0)]
    nan_k = np.full(n_states, np.nan)
    result = RegressionResult(
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
        df_model=float(keep.size - 1),
        df_resid=float(n_runs - keep.size),
        n_runs=n_runs,
        runs=runs,
    )
    if n_runs < 2:
        result.warning = f"only {n_runs} converged run(s); the regression needs at least 2"
        return result
    mean, sd = float(y_raw.mean()), float(y_raw.std(ddof=1))
    result.step_mean, result.step_sd = mean, sd
    if not sd > 0:
        result.warning = "every run converges at the same step; there is no variance to explain"
        return result
    if n_runs <= keep.size:
        result.warning = (
            f"{n_runs} runs for {keep.size} visited states leave no residual degrees of freedom; "
            "coefficients are not identified"
        )
        return result

    y = (y_raw - mean) / sd
    X = occ[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = sm.OLS(y, X, hasconst=True).fit()
        ci = np.asarray(fitted.conf_int(alpha=alpha))
        result.coefficients[keep] = fitted.params
        result.std_errors[keep] = fitted.bse
        result.ci_low[keep], result.ci_high[keep] = ci[:, 0], ci[:, 1]
        result.pvalues[keep] = fitted.pvalues
        result.r_squared = float(fitted.rsquared)
        result.f_statistic = float(fitted.fvalue) if keep.size > 1 else float("nan")
        result.f_pvalue = float(fitted.f_pvalue) if keep.size > 1 else float("nan")
    result.df_model, result.df_resid = float(fitted.df_model), float(fitted.df_resid)
    optional = visited_by < n_runs
    result.detour = np.nan_to_num(result.coefficients, nan=0.0) > 0
    result.detour &= optional
    if keep.size < 2:
        result.warning = "only one state is visited; there is nothing to regress on"
    elif not np.isfinite(result.f_pvalue) or result.f_pvalue >= SIGNIFICANCE_LEVEL:
        result.warning = (
            f"the regression is not significant (F-test p = {result.f_pvalue:.3g} >= {SIGNIFICANCE_LEVEL}); "
            "its coefficients and detour flags should not be interpreted"
        )
    return result
