"""SVI speed: our Fisher-identity HMM likelihood against plain Pyro's ``DiscreteHMM``.

Both sides fit *the same* Bayesian Gaussian HMM (same priors and sample sites,
:mod:`inference.bayes_model`) with the same ``AutoNormal`` guide, ``Trace_ELBO`` and
Adam, in the same process, on the same data (N=40 runs, T=1000 checkpoints, d=14
features, K=6 states, full covariances, sampled from a random planted HMM):

* **ours** -- :func:`inference.bayes_model.hmm_model`: states marginalised by the
  compiled forward-backward (numba on CPU, torch kernels on CUDA) inside a custom
  autograd function whose backward is the smoothed posteriors and expected
  transition counts (Fisher's identity);
* **baseline** -- the textbook Pyro model: ``pyro.distributions.DiscreteHMM`` with a
  ``MultivariateNormal`` observation distribution under a ``pyro.plate`` over runs;
  its log-density is a parallel-scan log-matmul-exp differentiated by autograd. Its
  ``initial_logits`` describe the state *before* the first transition, so the first
  transition matrix is time-inhomogeneous with every row equal to the initial
  distribution (checked: both log-likelihoods agree at the same parameters).

Reported: seconds per SVI step of each (median over timed steps, the two measured in
alternating blocks so machine load affects both alike), the ratio, and the wall time
of a converged fit of ours (``fit_svi``, MAP warm start + SVI with the convergence
stop) with the baseline's time for the same number of SVI steps extrapolated from its
per-step time (labelled as such).

Usage::

    python benchmarks/bench_svi.py                 # full (~10 min on a busy 2-core CPU)
    python benchmarks/bench_svi.py --quick         # smoke run (< 2 min)
    python benchmarks/bench_svi.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.infer.autoguide import AutoNormal  # noqa: E402
from pyro.infer.autoguide.initialization import init_to_value  # noqa: E402

from bayes_trainmap.inference.baum_welch import GaussianHMM  # noqa: E402
from bayes_trainmap.inference.bayes_fit import fit_svi, resolve_device  # noqa: E402
from bayes_trainmap.inference.bayes_model import (  # noqa: E402
    HMMPrior,
    _sample_parameters,
    hmm_model,
    sites_from_params,
)
from bayes_trainmap.inference.params import HMMParams  # noqa: E402


def planted_params(K: int, d: int, seed: int) -> HMMParams:
    rng = np.random.default_rng(seed)
    trans = np.full((K, K), 0.02 / (K - 1))
    np.fill_diagonal(trans, 0.98)
    factors = rng.normal(size=(K, d, d)) * 0.2
    covars = factors @ np.swapaxes(factors, 1, 2) + 0.3 * np.eye(d)
    return HMMParams(
        start_prob=np.full(K, 1.0 / K), trans_mat=trans,
        means=rng.normal(0, 1.0, (K, d)), covars=covars, covariance_type="full",
    )


def sample_runs(params: HMMParams, N: int, T: int, seed: int):
    model = GaussianHMM.from_params(params)
    runs = [model.sample(T, random_state=seed + i)[0] for i in range(N)]
    return np.concatenate(runs), np.full(N, T, dtype=np.int64)


def baseline_model(Z_padded, n_states, covariance_type="full", prior=None):
    """The same Bayesian HMM written with ``DiscreteHMM`` (equal-length runs)."""
    prior = prior or HMMPrior()
    N, T, d = Z_padded.shape
    start, trans, means, scales, corr_chol = _sample_parameters(
        n_states, d, covariance_type, prior, Z_padded.dtype, Z_padded.device
    )
    obs = dist.MultivariateNormal(means, scale_tril=scales.unsqueeze(-1) * corr_chol)
    # DiscreteHMM's initial_logits give the state before the first transition: make the
    # first transition's rows all equal to the initial distribution.
    first = start.log().expand(1, n_states, n_states)
    rest = trans.log().expand(T - 1, n_states, n_states)
    hmm = dist.DiscreteHMM(
        torch.zeros(n_states, dtype=Z_padded.dtype, device=Z_padded.device),
        torch.cat([first, rest]),
        obs,
        duration=T,
    )
    with pyro.plate("runs", N):
        pyro.sample("z", hmm, obs=Z_padded)


def make_svi(model, args, init_values, lr):
    guide = AutoNormal(model, init_loc_fn=init_to_value(values=init_values), init_scale=0.01)
    return SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss=Trace_ELBO()), args


def time_steps(svi, args, n, sync):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        svi.step(*args)
        sync()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few timed steps, short converged fit")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--features", type=int, default=14)
    parser.add_argument("--states", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    opts = parser.parse_args(argv)
    device = resolve_device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    K, d, N, T = opts.states, opts.features, opts.runs, opts.length
    blocks, per_block = (2, 2) if opts.quick else (4, 5)

    truth = planted_params(K, d, seed=0)
    X, lengths = sample_runs(truth, N, T, seed=1)
    Z = torch.as_tensor(X, dtype=torch.float64, device=device)
    Z_padded = Z.reshape(N, T, d)
    lengths_t = torch.as_tensor(lengths)
    prior = HMMPrior()
    init = sites_from_params(truth, device=device)
    print(f"data: N={N} runs x T={T}, d={d}, K={K}, full covariance, device={device}")

    # Same model, same parameters -> same log-likelihood.
    with torch.no_grad():
        ours_ll = pyro.poutine.condition(hmm_model, data=init)(Z, lengths_t, K, "full", prior)
        tr = pyro.poutine.trace(pyro.poutine.condition(baseline_model, data=init)).get_trace(
            Z_padded, K, "full", prior
        )
        base_ll = tr.nodes["z"]["fn"].log_prob(Z_padded).sum()
    print(f"log-likelihood at the planted parameters: ours {float(ours_ll):.6f}, "
          f"DiscreteHMM {float(base_ll):.6f}")

    # Separate parameter stores: the two guides have the same site names.
    store = pyro.get_param_store()
    with store.scope() as ours_scope:
        ours, ours_args = make_svi(hmm_model, (Z, lengths_t, K, "full", prior), init, 0.01)
        time_steps(ours, ours_args, 2, sync)  # warm-up (numba compilation, guide setup)
    with store.scope() as base_scope:
        base, base_args = make_svi(baseline_model, (Z_padded, K, "full", prior), init, 0.01)
        time_steps(base, base_args, 2, sync)
    t_ours, t_base = [], []
    for _ in range(blocks):  # alternate, so that load on the machine hits both alike
        with store.scope(ours_scope):
            t_ours += time_steps(ours, ours_args, per_block, sync)
        with store.scope(base_scope):
            t_base += time_steps(base, base_args, per_block, sync)
    s_ours, s_base = float(np.median(t_ours)), float(np.median(t_base))
    print(f"seconds per SVI step (median of {len(t_ours)}): ours {s_ours:.4f}, "
          f"DiscreteHMM baseline {s_base:.4f} -> {s_base / s_ours:.1f}x faster")

    steps = 300 if opts.quick else 3000
    start = HMMParams(truth.start_prob, truth.trans_mat, truth.means + 0.1, truth.covars, "full")
    t0 = time.perf_counter()
    fit = fit_svi(X, lengths, start, guide="normal", steps=steps, device=str(device),
                  progress=False, seed=0)
    t_fit = time.perf_counter() - t0
    print(f"converged fit of ours (MAP warm start + SVI, AutoNormal): {t_fit:.1f} s, "
          f"{fit.n_steps} SVI steps, converged={fit.converged}; the baseline would need "
          f"about {fit.n_steps * s_base:.0f} s for the SVI steps alone (extrapolated)")
    figures = {
        "N": N, "T": T, "d": d, "K": K, "device": str(device),
        "seconds_per_step_ours": s_ours, "seconds_per_step_baseline": s_base,
        "speedup_per_step": s_base / s_ours,
        "loglik_ours": float(ours_ll), "loglik_baseline": float(base_ll),
        "fit_seconds_ours": t_fit, "fit_svi_steps": fit.n_steps, "fit_converged": fit.converged,
        "fit_seconds_baseline_extrapolated": fit.n_steps * s_base,
    }
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return figures


if __name__ == "__main__":
    main()
