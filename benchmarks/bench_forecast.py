"""Convergence forecasts on held-out seeds of the shipped real sets (issue 16).

For each demo set the seeds are dealt into ``--folds`` groups (default 5: every fold
fits the map on 80% of the seeds and forecasts the other 20%, so every run is
forecast once by a map that never saw it; ``--folds 1`` is a single 80/20 split).
Each held-out run is fed checkpoint by checkpoint to a
:class:`bayes_trainmap.monitor.online.RunMonitor` (online normalisation
``--normalization``) and the forecast is read

* at the prefixes ending at 10%, 25% and 50% of the run's true convergence step:
  the predicted convergence step is the forecast median (the end of the budget when
  the median lies beyond it), scored by its absolute error against the truth, next
  to the baseline that predicts the training runs' median convergence step (and a
  stronger baseline: the median of the training runs' convergence steps later than
  the current step); the 90% interval's coverage of the truth;
* along every run for "stuck" recognition: the first checkpoint at which
  ``P(stuck) >= 0.5`` (or ``P(converge within budget) <= 0.1``), for the held-out runs
  that never converge (recognised how early, as a share of the budget) and for those
  that do (a false alarm if raised before they converge).

Usage::

    python benchmarks/bench_forecast.py [--out fits/bench] [--figure docs/figures/forecast_vs_truth.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_fits import DEMO_SETS, heldout_fit

from bayes_trainmap.monitor.forecast import first_crossing_index
from bayes_trainmap.monitor.model import load_map_model
from bayes_trainmap.monitor.normalize import normalize_offline
from bayes_trainmap.monitor.online import FORECASTS, RunMonitor

FRACTIONS = (0.10, 0.25, 0.50)


def _forecast_run(model, X, steps, outcome, normalization, forecast):
    """Status after every checkpoint before the first crossing (all checkpoints if none)."""
    monitor = RunMonitor(model, normalization, forecast=forecast)
    statuses = []
    for t in range(len(X)):
        status = monitor.update(X[t], int(steps[t]), float(outcome[t]))
        if status.converged_step is not None:
            break
        statuses.append(status)
    return statuses


def evaluate_set(name, args) -> dict:
    records, stuck_rows, meta = [], [], []
    for fold in range(args.folds):
        fd, ts, train, held = heldout_fit(name, args.out, fold=fold, n_folds=args.folds, split_seed=args.split_seed,
                                          restarts=args.restarts)
        model = load_map_model(fd, hazard=args.hazard)
        meta.append({"fold": fold, "n_states": model.n_states, "stuck_states": model.stuck,
                     "hazard": model.hazards.hazard.tolist()})
        base = float(np.median(model.train_convergence_steps))
        budget_step = float(ts.subset(train).steps().max())
        for run in held:
            sub = ts.subset([run])
            X, length = sub.feature_matrix(model.features)
            if args.normalization == "given":  # hindsight: the run's own offline z-scores (an upper bound)
                X = normalize_offline(X, length, model.reference.window)
            steps = sub.steps()
            acc = sub.outcome(model.outcome)
            c = int(first_crossing_index(acc, np.array([len(acc)]), model.threshold, model.higher_is_better)[0])
            statuses = _forecast_run(model, X, steps, acc, args.normalization, args.forecast)
            flags = [s.step for s in statuses if s.forecast is not None and s.forecast.p_stuck >= 0.5]
            flags_conv = [s.step for s in statuses if s.forecast is not None and s.forecast.p_converge <= 0.1]
            stuck_rows.append({"run": run, "fold": fold, "converged": c >= 0,
                               "conv_step": float(steps[c]) if c >= 0 else None,
                               "first_stuck_flag": flags[0] if flags else None,
                               "first_low_pconv_flag": flags_conv[0] if flags_conv else None,
                               "budget_step": float(steps[-1])})
            if c < 1:
                continue
            truth = float(steps[c])
            later = model.train_convergence_steps
            for f in FRACTIONS:
                eligible = [s for s in statuses if s.step <= f * truth]
                status = eligible[-1] if eligible else statuses[0]
                pred = status.predicted_step()
                pred = budget_step if pred is None else min(pred, budget_step)
                lo, hi = status.predicted_interval()
                lo = status.step if lo is None else lo
                hi = np.inf if hi is None else hi
                pred_c = status.predicted_step(given_converge=True)
                pred_c = budget_step if pred_c is None else pred_c
                lo_c, hi_c = status.predicted_interval(given_converge=True)
                lo_c = status.step if lo_c is None else lo_c
                hi_c = budget_step if hi_c is None else hi_c
                cond = later[later > status.step]
                records.append({
                    "run": run, "fold": fold, "fraction": f, "step": status.step, "truth": truth,
                    "predicted": pred, "lo": lo, "hi": hi, "baseline": base,
                    "predicted_given_converge": pred_c, "lo_given_converge": lo_c, "hi_given_converge": hi_c,
                    "conditional_baseline": float(np.median(cond)) if cond.size else budget_step,
                })
    return {"records": records, "stuck": stuck_rows, "folds": meta}


def summarise(name, res) -> list[str]:
    lines = []
    for f in FRACTIONS:
        rows = [r for r in res["records"] if r["fraction"] == f]
        truth = np.array([r["truth"] for r in rows])
        err = np.abs(np.array([r["predicted"] for r in rows]) - truth)
        err_c = np.abs(np.array([r["predicted_given_converge"] for r in rows]) - truth)
        covered_c = np.mean([(r["lo_given_converge"] <= r["truth"] <= r["hi_given_converge"]) for r in rows])
        err_base = np.abs(np.array([r["baseline"] for r in rows]) - truth)
        err_cond = np.abs(np.array([r["conditional_baseline"] for r in rows]) - truth)
        covered = np.mean([(r["lo"] <= r["truth"] <= r["hi"]) for r in rows])
        finite = np.mean([np.isfinite(r["hi"]) for r in rows])
        lines.append(f"| {name} | {int(100 * f)}% | {len(rows)} | {err_base.mean():,.0f} | {err_cond.mean():,.0f} | "
                     f"{err.mean():,.0f} ({err.mean() / err_base.mean():.2f}x) | {100 * covered:.0f}% "
                     f"({100 * finite:.0f}%) | {err_c.mean():,.0f} ({err_c.mean() / err_base.mean():.2f}x) | "
                     f"{100 * covered_c:.0f}% |")
    return lines


def summarise_stuck(name, res) -> str:
    never = [r for r in res["stuck"] if not r["converged"]]
    conv = [r for r in res["stuck"] if r["converged"]]
    caught = [r for r in never if r["first_stuck_flag"] is not None]
    caught_p = [r for r in never if r["first_low_pconv_flag"] is not None]
    when = [r["first_stuck_flag"] / r["budget_step"] for r in caught]
    when_p = [r["first_low_pconv_flag"] / r["budget_step"] for r in caught_p]
    false = [r for r in conv if r["first_stuck_flag"] is not None and r["first_stuck_flag"] < r["conv_step"]]
    false_p = [r for r in conv if r["first_low_pconv_flag"] is not None and r["first_low_pconv_flag"] < r["conv_step"]]
    fmt = lambda xs: f"{100 * np.median(xs):.0f}%" if xs else "-"
    return (f"| {name} | {len(never)} | {len(caught)} at {fmt(when)} | {len(false)} of {len(conv)} | "
            f"{len(caught_p)} at {fmt(when_p)} | {len(false_p)} of {len(conv)} |")


def plot(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.3 * len(results), 3.2), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        rows = [r for r in res["records"] if r["fraction"] == 0.25]
        truth = np.array([r["truth"] for r in rows])
        pred = np.array([r["predicted_given_converge"] for r in rows])
        lo = np.array([r["lo_given_converge"] for r in rows])
        hi = np.array([r["hi_given_converge"] for r in rows])
        ax.errorbar(truth, pred, yerr=[pred - np.minimum(lo, pred), np.maximum(hi, pred) - pred], fmt="o", ms=3,
                    lw=0.6, alpha=0.7, label="forecast given converging (90%)")
        top = max(truth.max(), pred.max()) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=0.7)
        ax.axhline(rows[0]["baseline"], color="C3", lw=0.8, label="train median")
        ax.set(title=f"{name} (from 25%)", xlabel="true convergence step", ylabel="predicted")
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fits/bench", help="where the fold fits are cached")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--normalization", choices=("prefix", "reference", "blend", "given"), default="prefix",
                        help="online normalisation; 'given' feeds the run's offline z-scores (hindsight upper bound)")
    parser.add_argument("--hazard", choices=("state", "edge"), default="state",
                        help="convergence hazard per state or per edge (see bayes_trainmap.monitor.forecast)")
    parser.add_argument("--forecast", choices=FORECASTS, default="duration",
                        help="explicit-duration chain (default) or the memoryless chain")
    parser.add_argument("--sets", nargs="+", default=list(DEMO_SETS))
    parser.add_argument("--figure", help="save the forecasts-vs-truth figure here (PNG)")
    parser.add_argument("--json", help="also write every forecast here")
    args = parser.parse_args(argv)
    results = {name: evaluate_set(name, args) for name in args.sets}
    print(f"forecast: {args.forecast}; normalisation: {args.normalization}; hazard per {args.hazard}; {args.folds} fold(s), split seed {args.split_seed}")
    print("| set | prefix | runs | MAE: train median | MAE: median of later | MAE: forecast median (ratio) | "
          "90% coverage (finite upper end) | MAE: median given converging (ratio) | its 90% coverage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        print("\n".join(summarise(name, res)))
    print()
    print("| set | never converge | P(stuck)>=0.5: caught at (median share of budget) | false alarms | "
          "P(conv)<=0.1: caught at | false alarms |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        print(summarise_stuck(name, res))
    if args.figure:
        plot(results, args.figure)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
