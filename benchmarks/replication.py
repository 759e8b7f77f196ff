"""Replication benchmark: do a half's intervals predict what the other half of the seeds shows?

For each data set (the shipped real sets ``sparse_parities``, ``digits``,
``modular_addition`` and a simulated set with a planted fork and detour):

1. choose K with the package's held-out BIC selection on all runs (``pipeline.fit``);
2. ``--splits`` times: split the runs at random into halves A and B, fit K on A
   (Baum-Welch, 5 k-means restarts) and on B (warm-started at A, states matched to A
   by role), and score every interval method computed on A against B's values
   (:mod:`bayes_trainmap.fitting.replication`).

Interval methods (all at ``--level``):

* ``bootstrap`` -- seed bootstrap of the MLE map quantities (runs resampled with
  replacement, Baum-Welch refit at K per resample, states matched by role): the
  percentile interval of the estimate, i.e. the reference width;
* ``bootstrap predictive`` -- the same resamples as predictive draws for a new set of
  N seeds (``T_b + T_b' - median T``);
* ``svi posterior`` -- the package's plain SVI posterior (MAP warm start, guide "auto",
  ``--svi-steps`` steps, ``--draws`` draws decoded by Viterbi): the baseline;
* ``bagged predictive`` -- the package's default (BayesBag: Pyro-model MAP per bag of
  runs, predictive draws for a new set of N seeds).

Printed per data set and method: coverage of B's values per quantity class and the
median width ratio against the bootstrap percentile interval.

Usage::

    python benchmarks/replication.py --quick              # 2 splits, 8 bags, SVI 300 steps
    python benchmarks/replication.py --splits 10 --bags 20 --out replication.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from bayes_trainmap.data import demo_trajectories
from bayes_trainmap.fitting import pipeline, steps
from bayes_trainmap.fitting.replication import (
    CLASSES,
    draws_from_bags,
    draws_from_posterior,
    split_half,
)
from bayes_trainmap.fitting.robustness import resample_fits

REAL_SETS = ("sparse_parities", "digits", "modular_addition")


def load(name: str):
    if name == "simulated":
        from bayes_trainmap.data.simulate import simulate_training_runs

        return simulate_training_runs(40, n_checkpoints=200, random_state=12).trajectories
    return demo_trajectories(name)


def svi_method(opts):
    def make(params_a, Za, la, sa, _boot):
        from bayes_trainmap.fitting.bayesian import propagate_draws
        from bayes_trainmap.inference.bayes_fit import fit_svi

        fit = fit_svi(Za, la, params_a, steps=opts.svi_steps, progress=False, seed=0)
        draws = propagate_draws(fit.sample_params(opts.draws, seed=0), fit.params, Za, la, sa, seed=0)
        return draws_from_posterior(draws, "svi posterior")

    return make


def bagged_method(opts):
    def make(params_a, Za, la, sa, boot):
        # the bootstrap's resamples, so that the two rows differ only by the bag's fit
        bags = resample_fits(
            params_a, Za, la, sa, n_bags=opts.bags, fitter="map", seed=1, steps=opts.map_steps,
            restarts=opts.bag_restarts, decode=opts.decode, indices=boot.indices,
        )
        return draws_from_bags(bags, predictive=True)

    return make


def pool(scored_splits: list[dict]) -> dict:
    """Coverage and median width ratio per method and class, pooled over splits' items."""
    pooled: dict[str, dict[str, dict[str, list]]] = {}
    for scored in scored_splits:
        for method, classes in scored.items():
            for cls, vals in classes.items():
                slot = pooled.setdefault(method, {}).setdefault(cls, {"covered": [], "width_ratio": []})
                slot["covered"].extend(np.asarray(vals["covered"], dtype=float).tolist())
                slot["width_ratio"].extend(np.asarray(vals["width_ratio"], dtype=float).tolist())
    table = {}
    for method, classes in pooled.items():
        table[method] = {}
        for cls in CLASSES:
            slot = classes.get(cls, {"covered": [], "width_ratio": []})
            cov = np.asarray(slot["covered"])
            ratio = np.asarray(slot["width_ratio"])
            finite = np.isfinite(ratio)
            table[method][cls] = {
                "coverage": float(cov.mean()) if cov.size else None,
                "n": int(cov.size),
                "width_ratio": float(np.median(ratio[finite])) if finite.any() else None,
                # items left out of the width median: the bootstrap's interval has zero width
                "n_width_undefined": int((~finite).sum()) if ratio.size else 0,
                "covered": cov.astype(bool).tolist(),
                "width_ratios": [None if not np.isfinite(r) else float(r) for r in ratio],
            }
    return table


def run_set(name: str, opts) -> dict:
    ts = load(name)
    t0 = time.perf_counter()
    result = pipeline.fit(ts, states=opts.states or "auto", analyze=False, progress=False, random_state=0)
    K = result.n_states
    conv = steps._convergence_steps(result.prepared)
    methods = {}
    if "svi" in opts.methods:
        methods["svi posterior"] = svi_method(opts)
    if "bagged" in opts.methods:
        methods["bagged predictive"] = bagged_method(opts)
    scored = [
        split_half(
            result.runs.Z, result.runs.lengths, conv, K, seed=1000 + split, methods=methods, n_bags=opts.bags,
            level=opts.level, bag_restarts=opts.bag_restarts, decode=opts.decode,
        )
        for split in range(opts.splits)
    ]
    table = pool(scored)
    return {"set": name, "K": K, "n_runs": int(result.runs.lengths.size), "seconds": time.perf_counter() - t0, "table": table}


def render(report: dict) -> str:
    head = f"{'method':<22}" + "".join(f"{c:>20}" for c in CLASSES)
    title = (
        f"\n{report['set']}: K={report['K']}, {report['n_runs']} runs, halves of {report['n_runs'] // 2} "
        f"({report['seconds']:.0f} s) -- coverage % of the other half's values (width / bootstrap)"
    )
    lines = [title, head]
    for method, row in report["table"].items():
        cells = []
        for c in CLASSES:
            cell = row[c]
            if cell["coverage"] is None:
                cells.append(f"{'-':>20}")
                continue
            width = "" if cell["width_ratio"] is None else f" ({cell['width_ratio']:.2f}x)"
            cells.append(f"{100 * cell['coverage']:.0f}% n={cell['n']}{width}".rjust(20))
        lines.append(f"{method:<22}" + "".join(cells))
    return "\n".join(lines)


def markdown(reports: list[dict], methods=None) -> str:
    """One Markdown table: a row per data set and method, a column per quantity class."""
    head = "| set (K) | method | " + " | ".join(c.replace("_", " ") for c in CLASSES) + " |"
    lines = [head, "|" + "---|" * (len(CLASSES) + 2)]
    for report in reports:
        for method, row in report["table"].items():
            if methods and method not in methods:
                continue
            cells = []
            for c in CLASSES:
                cell = row[c]
                if cell["coverage"] is None:
                    cells.append("–")
                    continue
                width = "" if cell["width_ratio"] is None else f" ({cell['width_ratio']:.2f}x)"
                cells.append(f"{100 * cell['coverage']:.0f}%{width}")
            lines.append(f"| {report['set']} ({report['K']}) | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=[*REAL_SETS, "simulated"])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--bags", type=int, default=20)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--states", default=None, help="fixed K (default: the package's selection)")
    parser.add_argument("--methods", nargs="*", default=["svi", "bagged"], choices=["svi", "bagged"])
    parser.add_argument("--svi-steps", type=int, default=1000)
    parser.add_argument("--map-steps", type=int, default=0,
                        help="L-BFGS iterations after EM per MAP bag (default 0: the EM's MAP, as the package)")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--decode", choices=["viterbi", "sample"], default="viterbi",
                        help="decoding of the resampled fits' runs (Viterbi or FFBS sampled paths)")
    parser.add_argument("--bag-restarts", type=int, default=2, help="k-means restarts per refit besides the warm start")
    parser.add_argument("--quick", action="store_true", help="2 splits, 8 bags, SVI 300 steps, 50 draws")
    parser.add_argument("--out", default=None, help="write the tables as JSON")
    parser.add_argument("--markdown", nargs="+", metavar="JSON", help="print saved --out files as one Markdown table")
    opts = parser.parse_args(argv)
    if opts.markdown:
        reports = []
        for path in opts.markdown:
            with open(path) as fh:
                reports.extend(json.load(fh)["reports"])
        print(markdown(reports))
        return
    if opts.quick:
        opts.splits, opts.bags, opts.svi_steps, opts.draws = 2, 8, 300, 50
    logging.basicConfig(level=logging.ERROR)
    reports = []
    for name in opts.sets:
        report = run_set(name, opts)
        print(render(report), flush=True)
        reports.append(report)
    if opts.out:
        with open(opts.out, "w") as fh:
            json.dump({"options": vars(opts), "reports": reports}, fh, indent=1)


if __name__ == "__main__":
    main()
