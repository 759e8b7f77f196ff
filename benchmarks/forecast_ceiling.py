"""How well can *any* predictor forecast the convergence step from a prefix? (issue 16)

``bench_forecast.py`` scores the map's convergence forecast against the training runs'
median. This script asks whether the goal there (at most 0.7x the median's error at
25% of convergence) is reachable on the shipped sets at all, with predictors that do
not use the HMM: on the same folds (every run held out once), from the prefix that
ends at 10%, 25% and 50% of each held-out run's convergence step,

* ``median``: the training runs' median convergence step (the baseline);
* ``later median``: the median of the training runs' convergence steps later than the
  current step (uses how long the run has trained, which every forecaster knows);
* ``knn``: the median convergence step of the 5 training runs whose raw statistics at
  the same step are nearest (each statistic's mean over the last 5 checkpoints and
  ``log(1 + |change since the first checkpoint|)``, standardised over the training runs);
* ``ridge``: ridge regression of the log convergence step on the same features
  (penalty 5 on standardised features).

Errors are mean absolute errors over the held-out runs that converge, as ratios to the
baseline's. No fit is made; the whole script takes seconds.

Usage::

    python benchmarks/forecast_ceiling.py [--folds 5] [--split-seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forecast import FRACTIONS
from heldout_fits import DEMO_SETS, fold_split

from bayes_trainmap.data import demo_trajectories
from bayes_trainmap.fitting import steps as fit_steps
from bayes_trainmap.fitting.config import FitConfig

PREDICTORS = ("median", "later median", "knn", "ridge")
NEIGHBOURS = 5
RIDGE_PENALTY = 5.0
SMOOTH = 5  # checkpoints averaged into each feature


def _features(X: np.ndarray, steps: np.ndarray, step: float) -> np.ndarray:
    """Features of one run at ``step``: shape (2 d,)."""
    k = max(int(np.searchsorted(steps, step, side="right")) - 1, 0)
    recent = X[max(0, k - SMOOTH + 1): k + 1].mean(0)
    return np.concatenate([recent, np.log1p(np.abs(X[k] - X[0]))])


def predict(train_X, train_steps, train_conv, X, steps, step) -> dict[str, float]:
    """Every predictor's convergence step for one run at ``step``.

    Parameters
    ----------
    train_X, train_steps : list of np.ndarray, shapes (T_i, d) and (T_i,)
        Raw statistics and steps of the training runs.
    train_conv : np.ndarray, shape (N_train,)
        Their convergence steps (all finite).
    X, steps : np.ndarray, shapes (T, d) and (T,)
        The run being forecast.
    step : float
        The current step (the end of the prefix).
    """
    later = train_conv[train_conv > step]
    F = np.array([_features(x, s, step) for x, s in zip(train_X, train_steps)])
    f = _features(X, steps, step)
    centre, scale = F.mean(0), F.std(0) + 1e-12
    Fz, fz = (F - centre) / scale, (f - centre) / scale
    nearest = np.argsort(((Fz - fz) ** 2).sum(1), kind="stable")[:NEIGHBOURS]
    design = np.column_stack([np.ones(len(Fz)), Fz])
    penalty = RIDGE_PENALTY * np.diag(np.r_[0.0, np.ones(Fz.shape[1])])
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ np.log(train_conv))
    return {
        "median": float(np.median(train_conv)),
        "later median": float(np.median(later)) if later.size else float(np.median(train_conv)),
        "knn": float(np.median(train_conv[nearest])),
        "ridge": float(np.exp(np.r_[1.0, fz] @ weights)),
    }


def evaluate_set(name: str, folds: int, split_seed: int) -> dict:
    ts = demo_trajectories(name)
    prepared = fit_steps.prepare(ts, FitConfig())
    conv = fit_steps._convergence_steps(prepared)
    features = list(prepared.runs.features)
    by_run = {run: i for i, run in enumerate(prepared.runs.run_ids)}
    data = {}
    for run in ts.run_ids:
        sub = ts.subset([run])
        X, _ = sub.feature_matrix(features)
        data[run] = (np.asarray(X, dtype=float), np.asarray(sub.steps(), dtype=float), float(conv[by_run[run]]))
    errors = {f: {p: [] for p in PREDICTORS} for f in FRACTIONS}
    for fold in range(folds):
        train, held = fold_split(ts.run_ids, fold, folds, split_seed)
        train = [r for r in train if np.isfinite(data[r][2])]
        tX, tS, tC = [data[r][0] for r in train], [data[r][1] for r in train], np.array([data[r][2] for r in train])
        for run in held:
            X, steps, truth = data[run]
            if not np.isfinite(truth):
                continue
            for f in FRACTIONS:
                seen = steps[steps <= f * truth]
                step = float(seen.max()) if seen.size else float(steps[0])
                for p, value in predict(tX, tS, tC, X, steps, step).items():
                    errors[f][p].append(abs(value - truth))
    table = {}
    for f in FRACTIONS:
        base = float(np.mean(errors[f]["median"]))
        table[f"{int(100 * f)}%"] = {
            p: {"mae": float(np.mean(v)), "ratio": float(np.mean(v)) / base, "n": len(v)} for p, v in errors[f].items()
        }
    return {"set": name, "n_runs": len(ts.run_ids), "table": table}


def markdown(results: list[dict]) -> str:
    lines = ["| set | prefix | runs | median's MAE | " + " | ".join(PREDICTORS[1:]) + " |",
             "|---|---|---|---|" + "---|" * (len(PREDICTORS) - 1)]
    for res in results:
        for prefix, row in res["table"].items():
            cells = " | ".join(f"{row[p]['ratio']:.2f}x" for p in PREDICTORS[1:])
            lines.append(f"| {res['set']} | {prefix} | {row['median']['n']} | {row['median']['mae']:,.0f} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--sets", nargs="+", default=list(DEMO_SETS))
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    results = [evaluate_set(name, args.folds, args.split_seed) for name in args.sets]
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
