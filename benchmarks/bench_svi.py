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

* **numpyro** (optional, benchmark only; skipped with a note where it is not
  installed) -- the same model and priors in numpyro: the forward algorithm as a
  ``jax.lax.scan`` over time, vectorised over runs, the same ``AutoNormal`` guide and
  Adam, the step ``jit``-compiled; float64. JAX fixes its thread pool at start-up, so
  it runs in a subprocess per thread setting (``XLA_FLAGS``).

Each is timed in two thread settings (issue 12 item 7): **1 thread** and **all
cores**. "Ours" runs inside :func:`inference.threads.thread_budget` (what
``fit_map``/``fit_svi`` do: torch on one intra-op thread, numba on the budget);
"ours, library defaults" is the same step with torch and numba both on the setting's
threads -- the oversubscribed layout the fits used before, for comparison. Plain
Pyro gets ``torch.set_num_threads`` of the setting.

Reported: seconds per SVI step of each (median over timed steps, measured in
alternating blocks so machine load affects all alike), the ratios, the 1-minute load
average, and the wall time of a converged fit of ours (``fit_svi``, MAP warm start +
SVI with the convergence stop) with the baseline's time for the same number of SVI
steps extrapolated from its per-step time (labelled as such). ``--busy B`` starts
``B`` busy-looping processes for the duration (artificial load).

Usage::

    python benchmarks/bench_svi.py                 # full (~10 min on a busy 2-core CPU)
    python benchmarks/bench_svi.py --quick         # smoke run (< 2 min)
    python benchmarks/bench_svi.py --busy 2        # under artificial load
    python benchmarks/bench_svi.py --device cuda   # on a GPU
    python benchmarks/bench_svi.py --device cuda --fb-methods sequential,scan
        # ours with each forward-backward time recursion (the first is "ours" above)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value

from bayes_trainmap.core.device import resolve_device
from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.bayes_fit import fit_svi
from bayes_trainmap.inference.bayes_model import (
    HMMPrior,
    _sample_parameters,
    _state_cholesky,
    hmm_model,
    sites_from_params,
)
from bayes_trainmap.inference.params import HMMParams
from bayes_trainmap.inference.threads import thread_budget


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
    obs = dist.MultivariateNormal(means, scale_tril=_state_cholesky(scales, corr_chol, prior.min_covar))
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


def load() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


# ---------------------------------------------------------------------------
# numpyro: the same model, forward algorithm by lax.scan (subprocess per thread setting)
# ---------------------------------------------------------------------------


def numpyro_worker(threads: int, K: int, d: int, N: int, T: int, steps: int) -> dict:
    """Median seconds per jit-compiled numpyro SVI step on the benchmark's data."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from jax.scipy.special import logsumexp
    from numpyro.infer import SVI as NSVI
    from numpyro.infer import Trace_ELBO as NTrace_ELBO
    from numpyro.infer.autoguide import AutoNormal as NAutoNormal
    from numpyro.infer.initialization import init_to_value as n_init_to_value

    jax.config.update("jax_enable_x64", True)
    prior = HMMPrior()
    truth = planted_params(K, d, seed=0)
    X, _ = sample_runs(truth, N, T, seed=1)
    Zp = jnp.asarray(X.reshape(N, T, d))
    init = {k: jnp.asarray(v.numpy()) for k, v in sites_from_params(truth, min_covar=prior.min_covar).items()}

    def model(Zp):
        start = numpyro.sample("start_prob", nd.Dirichlet(jnp.full(K, prior.start_concentration)))
        conc = prior.trans_concentration * jnp.ones((K, K)) + prior.stickiness * jnp.eye(K)
        trans = numpyro.sample("trans_mat", nd.Dirichlet(conc).to_event(1))
        means = numpyro.sample("means", nd.Normal(prior.mean_loc, prior.mean_scale).expand((K, d)).to_event(2))
        scales = numpyro.sample("scales", nd.HalfNormal(prior.scale_scale).expand((K, d)).to_event(2))
        corr = numpyro.sample("corr_chol", nd.LKJCholesky(d, prior.lkj_concentration).expand((K,)).to_event(1))
        chol = scales[..., None] * corr
        cov = chol @ jnp.swapaxes(chol, -1, -2) + prior.min_covar * jnp.eye(d)  # the model's floor
        obs = nd.MultivariateNormal(means, covariance_matrix=cov)
        log_b = obs.log_prob(Zp[:, :, None, :])  # (N, T, K)
        log_trans = jnp.log(trans)

        def step(alpha, lb):
            return logsumexp(alpha[:, :, None] + log_trans, axis=1) + lb, None

        alpha, _ = jax.lax.scan(step, jnp.log(start) + log_b[:, 0], jnp.swapaxes(log_b[:, 1:], 0, 1))
        numpyro.factor("log_likelihood", logsumexp(alpha, axis=-1).sum())

    guide = NAutoNormal(model, init_loc_fn=n_init_to_value(values=init), init_scale=0.01)
    svi = NSVI(model, guide, numpyro.optim.Adam(0.01), NTrace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), Zp)
    update = jax.jit(svi.update)
    for _ in range(3):  # compilation and warm-up
        state, loss = update(state, Zp)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, loss = update(state, Zp)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    return {"threads": threads, "seconds_per_step": float(np.median(times)), "final_loss": float(loss)}


def time_numpyro(threads: int, opts, steps: int) -> dict | None:
    """Run :func:`numpyro_worker` in a subprocess with JAX limited to ``threads`` threads."""
    try:
        import numpyro  # noqa: F401
    except ImportError:
        return None
    env = dict(os.environ)
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else ""
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--numpyro-worker", str(threads), "--states", str(opts.states),
           "--features", str(opts.features), "--runs", str(opts.runs), "--length", str(opts.length),
           "--worker-steps", str(steps)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"numpyro worker failed ({threads} threads): {proc.stderr[-800:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Pyro: ours and DiscreteHMM, per thread setting
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def library_threads(n: int):
    """torch and numba both on ``n`` threads (the libraries' default layout), restored after."""
    import numba

    old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield n
    finally:
        torch.set_num_threads(old[0])
        numba.set_num_threads(old[1])


def time_pyro(settings, blocks, per_block, Z, Z_padded, lengths_t, K, init, prior, sync, method) -> dict:
    """Seconds per step of ours, ours with library defaults and DiscreteHMM, per thread setting."""
    store = pyro.get_param_store()
    model = functools.partial(hmm_model, fb_method=method)
    contenders = {
        "ours": (model, (Z, lengths_t, K, "full", prior), thread_budget),
        "ours_library_defaults": (model, (Z, lengths_t, K, "full", prior), library_threads),
        "pyro_discretehmm": (baseline_model, (Z_padded, K, "full", prior), library_threads),
    }
    prepared = {}
    for name, (fn, args, _) in contenders.items():
        with store.scope() as scope:
            svi, svi_args = make_svi(fn, args, init, 0.01)
            time_steps(svi, svi_args, 2, sync)  # warm-up (numba compilation, guide setup)
        prepared[name] = (scope, svi, svi_args)
    times = {(name, n): [] for name in contenders for n in settings}
    for _ in range(blocks):  # alternate, so that load on the machine hits all alike
        for n in settings:
            for name, (scope, svi, svi_args) in prepared.items():
                with store.scope(scope), contenders[name][2](n):
                    times[(name, n)] += time_steps(svi, svi_args, per_block, sync)
    return {f"{name}@{n}": float(np.median(t)) for (name, n), t in times.items()}


def start_busy(count: int) -> list:
    """``count`` busy-looping processes (artificial load); the caller terminates them."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(int(count))]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few timed steps, short converged fit")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--features", type=int, default=14)
    parser.add_argument("--states", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--fb-method", default="auto", choices=("auto", "sequential", "scan"),
                        help="forward-backward time recursion of ours (default: auto)")
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes to start (artificial load)")
    parser.add_argument("--no-fit", action="store_true", help="skip the converged fit")
    parser.add_argument("--numpyro-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, default=20, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    opts = parse(argv)
    K, d, N, T = opts.states, opts.features, opts.runs, opts.length
    if opts.numpyro_worker is not None:
        result = numpyro_worker(opts.numpyro_worker, K, d, N, T, opts.worker_steps)
        print(json.dumps(result))
        return result
    device = resolve_device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    blocks, per_block = (2, 2) if opts.quick else (3, 4)
    settings = [1, os.cpu_count() or 1] if device.type == "cpu" else [1]
    busy = start_busy(opts.busy)
    try:
        figures = measure(opts, device, sync, blocks, per_block, settings)
    finally:
        for proc in busy:
            proc.terminate()
            proc.wait()
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return figures


def measure(opts, device, sync, blocks, per_block, settings) -> dict:
    """Every timing of the benchmark (see the module docstring)."""
    K, d, N, T = opts.states, opts.features, opts.runs, opts.length
    truth = planted_params(K, d, seed=0)
    X, lengths = sample_runs(truth, N, T, seed=1)
    Z = torch.as_tensor(X, dtype=torch.float64, device=device)
    Z_padded = Z.reshape(N, T, d)
    lengths_t = torch.as_tensor(lengths)
    prior = HMMPrior()
    init = sites_from_params(truth, device=device, min_covar=prior.min_covar)
    load_before = load()
    print(f"data: N={N} runs x T={T}, d={d}, K={K}, full covariance, device={device}; "
          f"cores {os.cpu_count()}, busy processes {opts.busy}, load {load_before:.1f}", flush=True)
    with torch.no_grad():  # same model, same parameters -> same log-likelihood
        ours_ll = pyro.poutine.condition(hmm_model, data=init)(Z, lengths_t, K, "full", prior)
        tr = pyro.poutine.trace(pyro.poutine.condition(baseline_model, data=init)).get_trace(
            Z_padded, K, "full", prior
        )
        base_ll = tr.nodes["z"]["fn"].log_prob(Z_padded).sum()
    print(f"log-likelihood at the planted parameters: ours {float(ours_ll):.6f}, "
          f"DiscreteHMM {float(base_ll):.6f}")
    per_step = time_pyro(settings, blocks, per_block, Z, Z_padded, lengths_t, K, init, prior, sync, opts.fb_method)
    if device.type == "cpu":
        for n in settings:
            found = time_numpyro(n, opts, 2 * blocks * per_block)
            if found is not None:
                per_step[f"numpyro@{n}"] = found["seconds_per_step"]
        if not any(key.startswith("numpyro") for key in per_step):
            print("numpyro: not installed (pip install numpyro jax), not timed")
    for n in settings:
        row = {name: per_step.get(f"{name}@{n}") for name in
               ("ours", "ours_library_defaults", "pyro_discretehmm", "numpyro")}
        ours = row["ours"]
        text = ", ".join(f"{name} {v:.4f}" for name, v in row.items() if v is not None)
        ratios = ", ".join(f"{name} / ours = {v / ours:.1f}x" for name, v in row.items()
                           if v is not None and name != "ours")
        print(f"{n} thread(s): seconds per SVI step {text}; {ratios}", flush=True)
    figures = {
        "N": N, "T": T, "d": d, "K": K, "device": str(device), "cores": os.cpu_count(), "busy": opts.busy,
        "load_before": load_before, "load_after": load(), "seconds_per_step": per_step,
        "loglik_ours": float(ours_ll), "loglik_baseline": float(base_ll),
    }
    if not opts.no_fit:
        figures.update(converged_fit(opts, X, lengths, truth, device, per_step.get(f"pyro_discretehmm@{settings[-1]}")))
    return figures


def converged_fit(opts, X, lengths, truth, device, s_base) -> dict:
    """Wall time of a converged ``fit_svi`` of ours and the baseline's extrapolated time."""
    steps = 300 if opts.quick else 3000
    start = HMMParams(truth.start_prob, truth.trans_mat, truth.means + 0.1, truth.covars, "full")
    t0 = time.perf_counter()
    fit = fit_svi(X, lengths, start, guide="normal", steps=steps, device=str(device), progress=False, seed=0)
    t_fit = time.perf_counter() - t0
    print(f"converged fit of ours (MAP warm start + SVI, AutoNormal): {t_fit:.1f} s, "
          f"{fit.n_steps} SVI steps, converged={fit.converged}; the baseline would need "
          f"about {fit.n_steps * s_base:.0f} s for the SVI steps alone (extrapolated)")
    return {"fit_seconds_ours": t_fit, "fit_svi_steps": fit.n_steps, "fit_converged": fit.converged,
            "fit_seconds_baseline_extrapolated": fit.n_steps * s_base}


if __name__ == "__main__":
    main()
