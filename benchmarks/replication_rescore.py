"""Split-half replication in two steps: save every split's fits, then score interval methods.

``benchmarks/replication.py`` refits everything for each scoring; its fits (the halves,
the Baum-Welch seed bootstrap and the BayesBag-MAP bags) take most of its time, while
the interval constructions are cheap functions of the bags. This script saves the fits
of each split exactly as :func:`bayes_trainmap.fitting.replication.split_half` and
``replication.py``'s ``bagged`` method make them (same split seeds ``1000 + split``,
5 k-means restarts per half, 2 per refit, MAP bags seeded 1, 200 L-BFGS steps), and
scores saved fits with the package's current interval code, so a change of the
construction is measured on the same fits.

Usage::

    python benchmarks/replication_rescore.py save sparse_parities --splits 6 --bags 16 --out sp.pkl
    python benchmarks/replication_rescore.py score sp.pkl ma.pkl --out rescored.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from bayes_trainmap.fitting import pipeline, steps
from bayes_trainmap.fitting.replication import draws_from_bags, fit_half, score_split
from bayes_trainmap.fitting.robustness import (
    map_quantities,
    match_by_role,
    refit,
    resample_fits,
    resample_runs,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replication import load, markdown, pool


def save(name: str, n_splits: int, n_bags: int, out: str, *, map_bags: bool = True) -> None:
    """Fit ``n_splits`` splits of set ``name`` and pickle each split's fits to ``out``."""
    t0 = time.perf_counter()
    result = pipeline.fit(load(name), states="auto", analyze=False, progress=False, random_state=0)
    K, Z, L = result.n_states, result.runs.Z, result.runs.lengths
    conv = steps._convergence_steps(result.prepared)
    splits = []
    for split in range(n_splits):
        seed = 1000 + split
        perm = np.random.default_rng(seed).permutation(L.size)
        half_a, half_b = np.sort(perm[: L.size // 2]), np.sort(perm[L.size // 2 : 2 * (L.size // 2)])
        (Za, la), (Zb, lb) = resample_runs(Z, L, half_a), resample_runs(Z, L, half_b)
        params_a = fit_half(Za, la, K, seed=seed)
        ref_a = map_quantities(params_a, Za, la, conv[half_a])
        params_b, _ = refit(Zb, lb, params_a, fitter="mle")
        q_b = map_quantities(params_b, Zb, lb, conv[half_b])
        record = {
            "ref_a": ref_a,
            "q_b": q_b.permute(match_by_role(ref_a, q_b)),
            "boot": resample_fits(params_a, Za, la, conv[half_a], n_bags=n_bags, fitter="mle", seed=seed, restarts=2),
        }
        if map_bags:
            record["bag"] = resample_fits(
                params_a, Za, la, conv[half_a], n_bags=n_bags, fitter="map", seed=1, steps=200, restarts=2
            )
        splits.append(record)
        print(f"{name} split {split}: {time.perf_counter() - t0:.0f} s", flush=True)
        with open(out, "wb") as fh:
            pickle.dump({"name": name, "K": K, "n_runs": int(L.size), "splits": splits}, fh)


#: The only globals a saved file may name: numpy arrays and the two result classes.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("bayes_trainmap.fitting.robustness", "MapQuantities"), ("bayes_trainmap.fitting.robustness", "BagResult"),
}  # fmt: skip


class _SavedFitsUnpickler(pickle.Unpickler):
    """Reads what :func:`save` wrote and nothing else: a pickle naming any other global
    (a function to call, a module to import) is refused, so a file from elsewhere cannot
    run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not a saved fit of replication_rescore.py save")
        return super().find_class(module, name)


def score(paths: list[str], level: float = 0.9) -> list[dict]:
    """One report per saved set, scored like ``replication.py`` with the current code."""
    reports = []
    for path in paths:
        with open(path, "rb") as fh:
            saved = _SavedFitsUnpickler(fh).load()
        scored = []
        for s in saved["splits"]:
            reference = draws_from_bags(s["boot"], predictive=False)
            methods = {"bootstrap": reference, "bootstrap predictive": draws_from_bags(s["boot"], predictive=True)}
            if "bag" in s:
                methods["bagged predictive"] = draws_from_bags(s["bag"], predictive=True)
            scored.append(
                {m: score_split(d, reference, s["ref_a"], s["q_b"], level=level) for m, d in methods.items()}
            )
        reports.append({"set": saved["name"], "K": saved["K"], "n_runs": saved.get("n_runs", 40),
                        "n_splits": len(saved["splits"]), "table": pool(scored)})
    return reports


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_save = sub.add_parser("save")
    p_save.add_argument("set")
    p_save.add_argument("--splits", type=int, default=6)
    p_save.add_argument("--bags", type=int, default=16)
    p_save.add_argument("--no-map", action="store_true", help="the Baum-Welch bootstrap only")
    p_save.add_argument("--out", required=True)
    p_score = sub.add_parser("score")
    p_score.add_argument("pickles", nargs="+")
    p_score.add_argument("--level", type=float, default=0.9)
    p_score.add_argument("--out", default=None)
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if opts.command == "save":
        save(opts.set, opts.splits, opts.bags, opts.out, map_bags=not opts.no_map)
        return
    reports = score(opts.pickles, opts.level)
    print(markdown(reports))
    for r in reports:
        for method, row in r["table"].items():
            undefined = {c: v["n_width_undefined"] for c, v in row.items() if v["n_width_undefined"]}
            if undefined:
                print(f"{r['set']} {method}: items without a width ratio (bootstrap width 0): {undefined}")
    if opts.out:
        with open(opts.out, "w") as fh:
            json.dump({"options": vars(opts), "reports": reports}, fh, indent=1)


if __name__ == "__main__":
    main()
