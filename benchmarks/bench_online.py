"""How much online normalisation changes the decoded states (issue 16).

For each shipped demo set: fit on 80% of the seeds, then decode each held-out run
three ways (every run held out once over 5 folds by default) and compare with its offline Viterbi path (per-run z-scores over the
run's own window, the fit's own decoding):

* ``filtered, exact z``  -- argmax of the filtered posterior with the offline z-scores
  (what filtering alone costs against Viterbi smoothing);
* ``online, reference``  -- argmax of the streaming filter with the ``reference``
  normalisation (statistics pooled from the training runs' windows);
* ``online, prefix``     -- the same with the running-prefix normalisation.

Reported: the share of held-out checkpoints whose state agrees with the offline
Viterbi state, and the share of held-out runs whose final state agrees.

Usage::

    python benchmarks/bench_online.py [--out fits/bench] [--restarts 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_fits import DEMO_SETS, heldout_fit

from bayes_trainmap.monitor.decode import decode_runs
from bayes_trainmap.monitor.model import load_map_model
from bayes_trainmap.monitor.normalize import normalize_online
from bayes_trainmap.monitor.streaming import StreamingFilter


def online_agreement(fit_dir, held) -> dict:
    """Agreement of online-decoded states with the offline Viterbi states on ``held`` runs."""
    model = load_map_model(fit_dir)
    offline = decode_runs(model, held)
    viterbi = offline.states
    K = model.n_states
    filtered = offline.checkpoints[[f"filtered_{k}" for k in range(K)]].to_numpy()
    X, lengths = held.feature_matrix(model.features)
    ends = np.cumsum(lengths) - 1
    rows = {"filtered, exact z": filtered.argmax(1)}
    for method in ("reference", "prefix", "blend"):
        Z = normalize_online(X, lengths, method, model.reference)
        states, start = np.empty(len(Z), dtype=np.int64), 0
        for length in lengths:
            filt = StreamingFilter(model.params)
            for t in range(start, start + length):
                states[t] = int(np.argmax(filt.update(Z[t])))
            start += length
        rows[f"online, {method}"] = states
    return {
        name: {"checkpoints": float(np.mean(s == viterbi)), "final_state": float(np.mean(s[ends] == viterbi[ends]))}
        for name, s in rows.items()
    } | {"n_states": K, "n_runs": int(lengths.size), "n_checkpoints": int(lengths.sum())}


def _pool(folds: list[dict]) -> dict:
    """Pool per-fold agreements, weighting by checkpoints (and runs for the final state)."""
    n_ckpt = np.array([f["n_checkpoints"] for f in folds], dtype=float)
    n_runs = np.array([f["n_runs"] for f in folds], dtype=float)
    methods = [k for k, v in folds[0].items() if isinstance(v, dict)]
    pooled = {m: {"checkpoints": float(n_ckpt @ [f[m]["checkpoints"] for f in folds] / n_ckpt.sum()),
                  "final_state": float(n_runs @ [f[m]["final_state"] for f in folds] / n_runs.sum())}
              for m in methods}
    ks = sorted({f["n_states"] for f in folds})
    return pooled | {"n_states": "/".join(map(str, ks)), "n_runs": int(n_runs.sum()),
                     "n_checkpoints": int(n_ckpt.sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fits/bench", help="where the split fits are cached")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="5: every run held out once (80/20 per fold)")
    parser.add_argument("--sets", nargs="+", default=list(DEMO_SETS))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = {}
    print("| set | K | held-out runs | filtered, exact z | online, reference | online, prefix | online, blend |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        folds = []
        for fold in range(args.folds):
            fd, ts, _, held_ids = heldout_fit(name, args.out, fold=fold, n_folds=args.folds,
                                              split_seed=args.split_seed, restarts=args.restarts)
            folds.append(online_agreement(fd, ts.subset(held_ids)))
        res = results[name] = _pool(folds)
        cells = " | ".join(f"{100 * res[m]['checkpoints']:.1f}% ({100 * res[m]['final_state']:.0f}%)"
                           for m in ("filtered, exact z", "online, reference", "online, prefix", "online, blend"))
        print(f"| {name} | {res['n_states']} | {res['n_runs']} | {cells} |", flush=True)
    print("cells: share of held-out checkpoints decoded as the offline Viterbi state (share of runs whose final "
          "state agrees)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
