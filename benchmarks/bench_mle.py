"""Baum-Welch speed and memory: bayes_trainmap's engine against hmmlearn.

Three measurements, each on data sampled from a planted Gaussian HMM, with both
engines started from *identical* initial parameters in the same process:

1. seconds per EM iteration (N=40 runs, T=1000, d=14, K=6, full covariances): the
   time difference of fits of 10 and 30 iterations over 20, so per-fit setup is
   reported apart;
2. the model-selection protocol: K = 1..12, 5 restarts (k-means initialisations
   with the selection seeds), up to 100 iterations, tol=1e-4. Initialisation is
   timed separately (it is the same for both); the ratio compares the EM fits;
3. peak memory of one fit with N=40, T=5000, K=16 (in a child process: peak RSS
   and the tracemalloc peak of numpy allocations).

hmmlearn 0.3 applies ``min_covar`` only at initialisation, so its M-step is
extended by the same diagonal floor our engine adds (``_FlooredHMMLearn``);
otherwise both compute identical EM updates and log-likelihoods.

The full hmmlearn sweep takes about an hour on a busy 2-core machine, so by
default it is run for real on a subset of (K, restart) and *extrapolated* for the
rest from hmmlearn's measured seconds per iteration at every K times the iteration
counts of our fits (identical updates give identical counts; the real subset checks
this). ``--hmmlearn-sweep full`` runs all of it. Every extrapolated figure is
labelled as such in the output.

Usage::

    python benchmarks/bench_mle.py            # full benchmark (~15 min)
    python benchmarks/bench_mle.py --quick    # smoke run (< 1 min)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numba
import numpy as np
from hmmlearn import hmm
from threadpoolctl import threadpool_limits

from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.params import HMMParams


# The floor can make the log-likelihood dip by ~1e-9 relative at convergence, which
# hmmlearn's monitor logs as "not converging" (both engines then stop alike).
logging.getLogger("hmmlearn").setLevel(logging.ERROR)


class _FlooredHMMLearn(hmm.GaussianHMM):
    """hmmlearn's M-step plus the diagonal floor ``min_covar * I`` used by our engine."""

    def _do_mstep(self, stats):
        super()._do_mstep(stats)
        if self.covariance_type == "full":
            self._covars_ = self._covars_ + self.min_covar * np.eye(self.n_features)
        else:
            self._covars_ = self._covars_ + self.min_covar


def planted_params(n_states: int, n_features: int, seed: int) -> HMMParams:
    """A sticky HMM with separated means and random full covariances."""
    rng = np.random.default_rng(seed)
    K, d = n_states, n_features
    off = 0.03 / max(K - 1, 1)
    trans = np.full((K, K), off) + np.eye(K) * (0.97 - off)
    trans /= trans.sum(1, keepdims=True)
    A = rng.normal(scale=0.3, size=(K, d, d))
    covars = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    return HMMParams(
        start_prob=np.full(K, 1.0 / K),
        trans_mat=trans,
        means=rng.normal(scale=1.5, size=(K, d)),
        covars=covars,
    )


def sample_runs(params: HMMParams, n_runs: int, length: int, seed: int):
    gen = GaussianHMM.from_params(params)
    X = np.concatenate([gen.sample(length, random_state=seed + i)[0] for i in range(n_runs)])
    return X, np.full(n_runs, length, dtype=np.int64)


def kmeans_init(X, n_states: int, seed: int, min_covar: float) -> HMMParams:
    """Our k-means initialisation (the one selection uses), shared by both engines."""
    est = GaussianHMM(n_states, "full", min_covar=min_covar)
    return est._initial_params(X, np.atleast_2d(np.cov(X.T)), seed, [f"f{i}" for i in range(X.shape[1])])


def fit_ours(X, lengths, init: HMMParams, n_iter: int, tol: float, min_covar: float):
    t0 = time.perf_counter()
    model = GaussianHMM(
        init.n_states, "full", n_iter=n_iter, tol=tol, init=init, min_covar=min_covar
    ).fit(X, lengths)
    return time.perf_counter() - t0, model


def fit_hmmlearn(X, lengths, init: HMMParams, n_iter: int, tol: float, min_covar: float):
    model = _FlooredHMMLearn(
        n_components=init.n_states, covariance_type="full", min_covar=min_covar,
        covars_prior=0.0, n_iter=n_iter, tol=tol, init_params="", params="stmc",
    )
    model.startprob_ = init.start_prob.copy()
    model.transmat_ = init.trans_mat.copy()
    model.means_ = init.means.copy()
    model.covars_ = init.covars.copy()
    t0 = time.perf_counter()
    model.fit(X, lengths)
    return time.perf_counter() - t0, model


def per_iteration(args) -> dict:
    """Marginal seconds per EM iteration of both engines, and their fixed costs.

    Each engine fits from the same start for ``iters`` and for ``3 * iters``
    iterations (tol=-inf, so exactly that many; the fastest of ``repeats`` fits
    each); the difference of the two times
    over ``2 * iters`` is the cost of one more iteration, free of per-fit setup
    (validation, our emission design matrix, our final log-likelihood pass), which
    is reported separately as the extrapolated fit time at zero iterations.
    """
    true = planted_params(args.states, args.features, args.seed)
    X, lengths = sample_runs(true, args.runs, args.length, args.seed)
    init = kmeans_init(X, args.states, args.seed, args.min_covar)
    fit_ours(X, lengths, init, 2, -np.inf, args.min_covar)  # JIT warm-up, not timed
    short, long = args.iters, 3 * args.iters

    def fastest(fit, n_iter):  # the minimum over repeats: the least disturbed by other load
        runs = [fit(X, lengths, init, n_iter, -np.inf, args.min_covar) for _ in range(args.repeats)]
        return min(runs, key=lambda run: run[0])

    t_ours_short, _ = fastest(fit_ours, short)
    t_ours, ours = fastest(fit_ours, long)
    t_ref_short, _ = fastest(fit_hmmlearn, short)
    t_ref, ref = fastest(fit_hmmlearn, long)
    hist_ref = np.array(ref.monitor_.history)
    ours_marginal = (t_ours - t_ours_short) / (long - short)
    ref_marginal = (t_ref - t_ref_short) / (long - short)
    return {
        "ours_s_per_iter": ours_marginal,
        "hmmlearn_s_per_iter": ref_marginal,
        "ours_setup_s": t_ours - long * ours_marginal,
        "hmmlearn_setup_s": t_ref - long * ref_marginal,
        "ours_s_per_iter_with_setup": t_ours / len(ours.history_),
        "hmmlearn_s_per_iter_with_setup": t_ref / len(hist_ref),
        "iterations": [short, long],
        "ours_ll": ours.history_[-1],
        "hmmlearn_ll": float(hist_ref[-1]),
        "max_rel_ll_diff": float(np.max(np.abs(np.array(ours.history_) - hist_ref) / np.abs(hist_ref))),
    }


def sweep(args) -> dict:
    true = planted_params(args.states, args.features, args.seed + 1)
    X, lengths = sample_runs(true, args.runs, args.length, args.seed + 1000)
    rng = np.random.default_rng(args.seed)
    ks = list(range(1, args.sweep_max_k + 1))
    seeds = {(k, r): int(rng.integers(2**31 - 1)) for k in ks for r in range(args.restarts)}

    t0 = time.perf_counter()
    inits = {key: kmeans_init(X, key[0], s, args.min_covar) for key, s in seeds.items()}
    t_init = time.perf_counter() - t0

    fit_ours(X, lengths, inits[(ks[0], 0)], 2, -np.inf, args.min_covar)  # warm-up
    ours = {}
    for key, init in inits.items():
        t, m = fit_ours(X, lengths, init, args.max_iter, args.tol, args.min_covar)
        ours[key] = (t, m.n_iter_, m.history_[-1])
    t_ours = sum(v[0] for v in ours.values())

    if args.hmmlearn_sweep == "full":
        real_keys = list(inits)
    else:
        real_keys = [key for key in inits if key[1] == 0 and key[0] in args.real_k]
    real = {}
    for key in real_keys:
        t, m = fit_hmmlearn(X, lengths, inits[key], args.max_iter, args.tol, args.min_covar)
        real[key] = (t, m.monitor_.iter, float(m.monitor_.history[-1]))

    extrapolated = {}
    if args.hmmlearn_sweep != "full":
        # hmmlearn seconds per EM iteration at each K (3 iterations from the restart-0 init).
        s_per_iter = {}
        for k in ks:
            t, m = fit_hmmlearn(X, lengths, inits[(k, 0)], 3, -np.inf, args.min_covar)
            s_per_iter[k] = t / 3
        for key in inits:
            if key not in real:
                extrapolated[key] = s_per_iter[key[0]] * ours[key][1]
    t_ref = sum(v[0] for v in real.values()) + sum(extrapolated.values())
    same_iters = all(real[k][1] == ours[k][1] for k in real)
    ll_diff = max((abs(real[k][2] - ours[k][2]) / abs(real[k][2]) for k in real), default=float("nan"))
    real_ratio = sum(real[k][0] for k in real) / max(sum(ours[k][0] for k in real), 1e-12)
    return {
        "n_fits": len(inits),
        "init_s": t_init,
        "ours_s": t_ours,
        "hmmlearn_s": t_ref,
        "hmmlearn_real_fits": len(real),
        "hmmlearn_extrapolated_fits": len(extrapolated),
        "real_subset_ratio": real_ratio,
        "same_iteration_counts_on_real_subset": same_iters,
        "max_rel_final_ll_diff_on_real_subset": ll_diff,
        "total_ours_iterations": int(sum(v[1] for v in ours.values())),
    }


def memory_child(args) -> None:
    """Runs in a fresh process: one fit at N x T_mem x K_mem, prints JSON."""
    true = planted_params(args.mem_states, args.features, args.seed + 2)
    X, lengths = sample_runs(true, args.runs, args.mem_length, args.seed + 2000)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    model = GaussianHMM(args.mem_states, "full", n_iter=args.mem_iters, tol=-np.inf, random_state=0)
    model.fit(X, lengths)
    model.predict(X, lengths)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "n_checkpoints": int(X.shape[0]),
        "data_mb": X.nbytes / 2**20,
        "tracemalloc_peak_mb": peak / 2**20,
        "rss_before_fit_mb": base_rss / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fit_s": elapsed,
    }))


def memory(args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child"] + _forward_flags(args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _forward_flags(args) -> list[str]:
    return [
        "--runs", str(args.runs), "--features", str(args.features), "--seed", str(args.seed),
        "--mem-length", str(args.mem_length), "--mem-states", str(args.mem_states),
        "--mem-iters", str(args.mem_iters),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes for a fast smoke run")
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--features", type=int, default=14)
    p.add_argument("--states", type=int, default=6)
    p.add_argument("--iters", type=int, default=10, help="EM iterations timed per engine")
    p.add_argument("--repeats", type=int, default=3, help="fits per timing (the fastest counts)")
    p.add_argument("--sweep-max-k", type=int, default=12)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--min-covar", type=float, default=1e-3)
    p.add_argument("--hmmlearn-sweep", choices=["extrapolate", "full", "skip"], default="extrapolate")
    p.add_argument("--real-k", type=int, nargs="*", default=[1, 3, 6],
                   help="K values whose restart-0 hmmlearn fit runs for real when extrapolating")
    p.add_argument("--mem-length", type=int, default=5000)
    p.add_argument("--mem-states", type=int, default=16)
    p.add_argument("--mem-iters", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=["iteration", "sweep", "memory"])
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both engines: numba's for ours, BLAS/OpenMP for hmmlearn's numpy "
                        "and scipy (default: all cores; hmmlearn's C++ forward-backward is single-threaded)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        _run(args, threads)


def _run(args, threads: int) -> None:
    if args.quick and not args.memory_child:
        args.runs, args.length, args.iters, args.repeats = 8, 200, 3, 1
        args.sweep_max_k, args.restarts, args.max_iter = 4, 2, 20
        args.real_k = [2]
        args.mem_length, args.mem_states, args.mem_iters = 500, 4, 2
    if args.memory_child:
        memory_child(args)
        return

    print(f"bench_mle: N={args.runs} runs, T={args.length}, d={args.features}, "
          f"{threads} thread(s) per engine, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if "iteration" not in args.skip:
        r = per_iteration(args)
        short, long = r["iterations"]
        print(f"\n[1] EM iteration, K={args.states}, full covariances (fits of {short} and {long} iterations; "
              f"s / iteration = their time difference / {long - short})")
        print(f"  {'engine':<12}{'s / iteration':>15}{'setup s':>10}{'s / it. incl. setup':>22}{'final log-lik':>20}")
        for name, key in (("ours", "ours"), ("hmmlearn", "hmmlearn")):
            print(f"  {name:<12}{r[key + '_s_per_iter']:>15.4f}{r[key + '_setup_s']:>10.3f}"
                  f"{r[key + '_s_per_iter_with_setup']:>22.4f}{r[key + '_ll']:>20.6f}")
        print(f"  speed-up per iteration {r['hmmlearn_s_per_iter'] / r['ours_s_per_iter']:.1f}x "
              f"({r['hmmlearn_s_per_iter_with_setup'] / r['ours_s_per_iter_with_setup']:.1f}x with setup, "
              f"{long} iterations); max relative log-likelihood difference over the history "
              f"{r['max_rel_ll_diff']:.2e}")
    if "sweep" not in args.skip:
        r = sweep(args)
        ext = r["hmmlearn_extrapolated_fits"]
        print(f"\n[2] selection sweep K=1..{args.sweep_max_k}, {args.restarts} restarts, "
              f"<= {args.max_iter} iterations, tol={args.tol:g} ({r['n_fits']} fits, "
              f"{r['total_ours_iterations']} EM iterations in ours)")
        print(f"  shared k-means initialisation: {r['init_s']:.1f} s (not in the ratio)")
        print(f"  ours EM:     {r['ours_s']:.1f} s")
        label = "EXTRAPOLATED" if ext else "measured"
        print(f"  hmmlearn EM: {r['hmmlearn_s']:.1f} s ({label}: {r['hmmlearn_real_fits']} fits run, "
              f"{ext} extrapolated from hmmlearn's s/iteration at each K x our iteration counts)")
        print(f"  speed-up {r['hmmlearn_s'] / r['ours_s']:.1f}x"
              f"{' (partly extrapolated)' if ext else ''}; on the really-run subset "
              f"{r['real_subset_ratio']:.1f}x, identical iteration counts: "
              f"{r['same_iteration_counts_on_real_subset']}, max relative final log-lik difference "
              f"{r['max_rel_final_ll_diff_on_real_subset']:.2e}")
    if "memory" not in args.skip:
        r = memory(args)
        print(f"\n[3] memory, one fit + Viterbi with N={args.runs}, T={args.mem_length} "
              f"({r['n_checkpoints']} checkpoints, data {r['data_mb']:.0f} MiB), K={args.mem_states}, "
              f"{args.mem_iters} iterations")
        print(f"  peak RSS {r['rss_peak_mb']:.0f} MiB (process before fit {r['rss_before_fit_mb']:.0f} MiB); "
              f"tracemalloc peak {r['tracemalloc_peak_mb']:.0f} MiB; {r['fit_s']:.1f} s")


if __name__ == "__main__":
    main()
