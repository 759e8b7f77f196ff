"""MAP ("MAP Baum-Welch") and SVI fits of the Bayesian Gaussian HMM.

Both fits optimise over Pyro's unconstrained parameter space with the fast model
:func:`inference.bayes_model.hmm_model` (states marginalised exactly by the compiled
forward-backward, Fisher-identity gradients) and start from a maximum-likelihood fit,
so that state ``k`` of the posterior is state ``k`` of the MLE.

* :func:`fit_map` -- ``AutoDelta`` guide: gradient ascent on the log joint density
  ``log p(z | theta) + log p(theta)`` evaluated at constrained values (no Jacobian), i.e.
  the MAP estimate. With :meth:`HMMPrior.flat` it is the MLE.
* :func:`fit_svi` -- a Gaussian variational family over the unconstrained parameters
  (mean-field, low-rank plus diagonal, or full-rank), warm-started at the MAP estimate
  with a small initial scale, fitted with ``Trace_ELBO``.

Pure: no file I/O, no printing; progress via tqdm, messages via ``logging``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import init_to_value
from tqdm.auto import tqdm

from .bayes_model import (
    HMMPrior,
    covariances_from_sites,
    hmm_model,
    n_unconstrained_parameters,
    params_from_sites,
    sites_from_params,
)
from .emissions import gaussian_log_likelihood
from .errors import DivergenceError
from .forward_backward import forward_backward
from .guides import GUIDES
from .map_em import map_em
from .threads import thread_budget

__all__ = [
    "DEFAULT_GUIDE",
    "GUIDES",
    "MAX_FULL_RANK",
    "BayesianFit",
    "auto_guide",
    "elbo_converged",
    "fit_map",
    "fit_svi",
    "off_the_boundary",
]

logger = logging.getLogger(__name__)

#: Variational families of :func:`fit_svi`; "auto" resolves by :func:`auto_guide`.

#: "auto" uses the full-rank Gaussian up to this many unconstrained parameters and the
#: low-rank-plus-diagonal one above it. ``benchmarks/calibration.py`` (K=3, d=3: 35
#: parameters) found the full-rank guide's posterior SDs of the state means equal to
#: those of the oracle posterior given the true states; a full-rank guide for K=6,
#: d=14 (749 parameters) would have ~281k scale parameters to fit.
MAX_FULL_RANK = 300
DEFAULT_GUIDE = "mvn"


def auto_guide(n_states: int, n_features: int, covariance_type: str) -> str:
    """The guide family "auto" picks for a model of this size."""
    dim = n_unconstrained_parameters(n_states, n_features, covariance_type)
    return DEFAULT_GUIDE if dim <= MAX_FULL_RANK else "lowrank"


def _as_device(device: str | torch.device) -> torch.device:
    """A concrete torch device (``"auto"`` is resolved by the caller)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return device


@dataclass
class BayesianFit:
    """Result of :func:`fit_map` or :func:`fit_svi`.

    Attributes
    ----------
    mode : {"map", "svi"}
    guide_name : str
        ``"delta"`` for MAP, else the variational family.
    params : HMMParams
        Point estimate: the MAP value, or the variational posterior median.
    elbo_history : np.ndarray, shape (n_steps,)
        ELBO per optimisation step (MAP: the log joint density per objective
        evaluation).
    converged : bool
        Whether the relative-change criterion stopped the fit before ``steps``.
    n_states, covariance_type, prior
        The model.
    settings : dict
        Every optimisation setting the fit used, defaults resolved (optimizer, steps,
        tolerances, learning rate, warm start, initial scale, CPU threads), for
        ``config.json``.
    """

    mode: str
    guide_name: str
    params: object
    elbo_history: np.ndarray
    converged: bool
    n_states: int
    covariance_type: str
    prior: HMMPrior
    guide: object = field(repr=False, default=None)
    model_args: tuple = field(repr=False, default=())
    settings: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.elbo_history)

    def sample_sites(self, n_draws: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n_draws`` joint draws of the site values from the variational posterior.

        Returns
        -------
        dict of str -> np.ndarray
            ``start_prob (S, K)``, ``trans_mat (S, K, K)``, ``means (S, K, d)``,
            ``scales (S, K, d)`` and, for full covariance, ``corr_chol (S, K, d, d)``.
        """
        if self.mode != "svi":
            raise ValueError(f"a {self.mode!r} fit has no posterior to sample; use mode='svi'")
        if n_draws < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws!r}")
        draws: dict[str, list] = {}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(n_draws):
                for name, value in self.guide(*self.model_args).items():
                    draws.setdefault(name, []).append(value.detach().cpu().numpy())
        return {name: np.stack(values) for name, values in draws.items()}

    def sample_params(self, n_draws: int, seed: int = 0) -> list:
        """``n_draws`` posterior draws as :class:`~inference.params.HMMParams`."""
        sites = self.sample_sites(n_draws, seed)
        return [
            params_from_sites(
                {name: values[s] for name, values in sites.items()},
                self.covariance_type,
                template=self.params,
                min_covar=self.prior.min_covar,
            )
            for s in range(n_draws)
        ]


def _prepare(Z, lengths, device):
    device = _as_device(device)
    Z = torch.as_tensor(np.asarray(Z) if not isinstance(Z, torch.Tensor) else Z)
    Z = Z.to(device=device, dtype=torch.float64)
    lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
    if Z.ndim != 2:
        raise ValueError(f"Z must have shape (n_total, d), got {tuple(Z.shape)}")
    if lengths.ndim != 1 or int(lengths.sum()) != Z.shape[0] or bool((lengths < 1).any()):
        raise ValueError(
            f"lengths must be positive and sum to Z.shape[0]={Z.shape[0]}, "
            f"got sum {int(lengths.sum())}"
        )
    return Z, lengths, device


def elbo_converged(history, window: int, tol: float) -> bool:
    """Least-squares trend test of the last ``window`` ELBO values: has the ELBO stopped changing?

    Fits ``elbo_t = a + b t`` by least squares to the last ``window`` values and
    bounds the change the trend projects over one more window by ``(|b| + 2 se(b))
    window`` (``se`` from the residual scatter, i.e. the step-to-step noise of the
    one-sample ELBO). The fit has converged when that bound is below ``tol``
    relative to the ELBO, ``tol * max(|mean|, 1)``: the ELBO is then known to move by
    less than the tolerance per window, not merely to be too noisy to tell. A noisy
    ELBO (a guide still far from the posterior) therefore keeps the fit running
    until ``steps`` and is reported as not converged. The test before (relative
    change of the mean between two windows) could neither stop on a flat noisy
    ELBO nor tell a trend from noise.

    Parameters
    ----------
    history : sequence of float, shape (n_steps,)
        ELBO per step.
    window : int
        Steps in the test (at least 3); fewer steps run means "not converged".
    tol : float
        Relative tolerance of the projected change per window.

    Returns
    -------
    bool
    """
    window = int(window)
    if window < 3 or len(history) < window:
        return False
    y = np.asarray(history[-window:], dtype=float)
    t = np.arange(window, dtype=float) - (window - 1) / 2.0
    sxx = float(t @ t)
    slope = float(t @ (y - y.mean())) / sxx
    residual = y - y.mean() - slope * t
    se = np.sqrt(float(residual @ residual) / (window - 2) / sxx)
    return (abs(slope) + 2.0 * se) * window <= tol * max(abs(float(y.mean())), 1.0)


def _optimise(
    model_args, guide, *, steps, lr, lr_decay, tol, window, progress, desc, average=False, check_every=None
):
    """Run SVI until the ELBO stops changing (:func:`elbo_converged`, tested every
    ``check_every`` steps, default ``window // 4``); returns (history, converged).

    With ``average``, the guide's parameters are finally set to the mean of their
    iterates over the last complete block of ``window // 2`` steps (tail, or
    Polyak-Ruppert, averaging, in the unconstrained space; half the test's window, so
    that the average lags the end by less than ``window`` steps). A single-sample ELBO
    gradient keeps the last iterate jittering around the optimum; on ``benchmarks/calibration.py``'s
    data the posterior means of the last iterate sat 0.2 posterior SDs (up to 0.8)
    from the MAP, which the average removes.
    """
    gamma = lr_decay ** (1.0 / max(steps, 1))
    optimiser = pyro.optim.ClippedAdam({"lr": lr, "lrd": gamma, "clip_norm": 100.0})
    svi = SVI(hmm_model, guide, optimiser, loss=Trace_ELBO())
    history: list[float] = []
    converged = False
    tail = _TailAverage(max(1, window // 2)) if average else None
    check_every = max(1, int(check_every or window // 4))
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(steps):
            # Argument validation costs ~10% of a step on small data; the model's
            # values are valid by construction (constrained sites, tested densities).
            with pyro.validation_enabled(False):
                loss = svi.step(*model_args)
            if not np.isfinite(loss):
                raise DivergenceError(
                    f"{desc}: the loss became non-finite at step {len(history) + 1}; lower --lr (got {lr:g})"
                )
            history.append(-float(loss))
            if tail is not None:
                tail.add(guide)
            bar.update(1)
            if len(history) % check_every == 0:
                bar.set_postfix(elbo=f"{history[-1]:.4g}")
                if elbo_converged(history, window, tol):
                    converged = True
                    break
    if tail is not None:
        tail.apply(guide)
    logger.info("%s: %d steps, converged=%s, final ELBO %.6g", desc, len(history), converged, history[-1])
    return np.asarray(history), converged


class _TailAverage:
    """Mean of a module's unconstrained parameters over the last complete window of steps."""

    def __init__(self, window: int):
        self.window = int(window)
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.last_mean: dict[str, torch.Tensor] | None = None

    def add(self, module) -> None:
        with torch.no_grad():
            for name, value in module.named_parameters():
                if name in self.sums:
                    self.sums[name] += value
                else:
                    self.sums[name] = value.detach().clone()
        self.count += 1
        if self.count == self.window:
            self.last_mean = {name: total / self.count for name, total in self.sums.items()}
            self.sums, self.count = {}, 0

    def apply(self, module) -> None:
        """Overwrite the parameters with the last window's mean (no-op before one window)."""
        if self.last_mean is None:
            return
        with torch.no_grad():
            for name, value in module.named_parameters():
                if name in self.last_mean:
                    value.copy_(self.last_mean[name])


def _constrained_point(guide, model_args) -> np.ndarray:
    """The guide's point as one vector of the quantities a map is built from: start and
    transition probabilities, means and covariances (z-score units)."""
    with torch.no_grad():
        point = guide.median(*model_args)
    covars = covariances_from_sites(point["scales"], point.get("corr_chol"), model_args[-1].min_covar)
    parts = [point["start_prob"], point["trans_mat"], point["means"], covars]
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in parts])


def _optimise_lbfgs(model_args, guide, *, steps, tol, param_tol, progress, check_every=10):
    """Deterministic MAP objective: SciPy's L-BFGS-B on the flattened ``AutoDelta``
    parameters (its line search is more robust than ``torch.optim.LBFGS``'s on this
    ill-conditioned problem).

    Besides L-BFGS-B's own tests it stops, converged, once no probability, mean or
    covariance entry moved by more than ``param_tol`` over the last ``check_every``
    iterations. On real runs the log joint keeps creeping up for thousands of
    iterations (tens of nats per 1,000 on the sparse-parities demo, where the state
    means move by hundredths of an SD), which we attribute to the LKJ prior pulling
    against covariances at the floor; the relative ``ftol`` never fires there.
    Returns (history of the log joint per evaluation, converged)."""
    from scipy.optimize import minimize

    loss_fn = Trace_ELBO().differentiable_loss
    with torch.no_grad():
        guide(*model_args)  # create the unconstrained parameters
    parameters = list(guide.parameters())
    shapes = [p.shape for p in parameters]
    sizes = [p.numel() for p in parameters]
    history: list[float] = []
    bar = tqdm(total=steps, desc="MAP (L-BFGS)", disable=not progress, leave=False)

    def assign(x: np.ndarray) -> None:
        with torch.no_grad():
            for p, chunk, shape in zip(parameters, np.split(x, np.cumsum(sizes)[:-1]), shapes):
                p.copy_(torch.as_tensor(chunk, dtype=p.dtype).reshape(shape))

    def objective(x: np.ndarray):
        assign(x)
        for p in parameters:
            p.grad = None
        loss = loss_fn(hmm_model, guide, *model_args)
        if not torch.isfinite(loss):
            # Outside the region the line search should explore: report it as
            # infinitely bad so L-BFGS-B backtracks.
            return np.inf, np.zeros_like(x)
        loss.backward()
        grad = np.concatenate([p.grad.detach().cpu().numpy().ravel() for p in parameters])
        value = loss.detach().item()
        history.append(-value)
        return value, grad

    x0 = np.concatenate([p.detach().cpu().numpy().ravel() for p in parameters])
    state = {"iteration": 0, "x": x0, "reference": None, "settled": False}

    def callback(x):
        bar.update(1)
        bar.set_postfix(log_joint=f"{history[-1]:.6g}")
        state["iteration"] += 1
        state["x"] = np.array(x)
        if param_tol > 0 and state["iteration"] % check_every == 0:
            assign(x)
            point = _constrained_point(guide, model_args)
            previous, state["reference"] = state["reference"], point
            if previous is not None and np.max(np.abs(point - previous)) < param_tol:
                state["settled"] = True
                raise StopIteration

    result = minimize(
        objective, x0, jac=True, method="L-BFGS-B", callback=callback,
        options={"maxiter": steps, "ftol": tol, "gtol": 1e-6, "maxcor": 20},
    )
    bar.close()
    assign(state["x"] if state["settled"] else result.x)
    converged = bool(result.success) or state["settled"]
    if not converged:
        logger.warning("MAP L-BFGS-B stopped without converging: %s", result.message)
    logger.info(
        "MAP: %d L-BFGS-B iterations (%s), log joint %.10g", state["iteration"],
        "parameters settled" if state["settled"] else result.message, -result.fun,
    )
    return np.asarray(history), converged


def _optimise_map(optimizer, model_args, guide, *, steps, tol, param_tol, lr, lr_decay, window, progress):
    """The MAP optimiser's run: (history of the log joint, converged)."""
    if optimizer == "lbfgs":
        return _optimise_lbfgs(model_args, guide, steps=steps, tol=tol, param_tol=param_tol, progress=progress)
    return _optimise(model_args, guide, steps=steps, lr=lr, lr_decay=lr_decay, tol=tol, window=window,
                     progress=progress, desc="MAP (Adam)")


def fit_map(
    Z, lengths, init_params, *, prior: HMMPrior | None = None, optimizer: str = "lbfgs", steps: int = 500,
    lr: float = 0.02, lr_decay: float = 0.1, tol: float = 1e-12, param_tol: float = 1e-4, em_steps: int = 50,
    window: int = 50, device: str = "cpu", seed: int = 0, progress: bool = True, threads: int | None = None,
) -> BayesianFit:
    """MAP estimate with an ``AutoDelta`` guide ("MAP Baum-Welch").

    The objective ``-(log p(z | theta) + log p(theta))`` is deterministic (the states
    are marginalised exactly), so L-BFGS is the default; ``optimizer="adam"`` runs the
    same guide through ``pyro.infer.SVI``. Both start after ``em_steps`` EM iterations
    of :func:`inference.map_em.map_em`, which reach the covariance floor in closed form
    where gradient steps crawl (on a sparse-parities bag, 200 L-BFGS iterations from
    EM's point left the means 0.01-0.02 SD from where 1500 end, 0.12-0.20 SD without).

    Parameters
    ----------
    Z : array or torch.Tensor, shape (n_total, d)
        Concatenated z-scored runs.
    lengths : array, shape (N,)
    init_params : HMMParams
        Starting point (normally the MLE fit); fixes ``K``, the covariance type and the
        state labels.
    prior : HMMPrior, optional
        Defaults to ``HMMPrior()``; ``HMMPrior.flat()`` makes the MAP the MLE.
    optimizer : {"lbfgs", "adam"}
    steps : int
        Maximum number of iterations of the optimiser; 0 returns EM's point (the MAP
        without the scale and LKJ prior terms).
    lr, lr_decay, window : float, float, int
        Adam only: learning rate, decayed geometrically to ``lr * lr_decay`` over
        ``steps``; the window of the convergence test.
    tol : float
        Stop when the log joint changes by less than ``tol`` (relative) between
        iterations (L-BFGS-B's ``ftol``) or over the trend of the last ``window``
        steps (Adam; :func:`elbo_converged`).
    param_tol : float
        L-BFGS only: also stop, converged, once no probability, mean or covariance
        entry moved by more than ``param_tol`` over 10 iterations (0: never).
    em_steps : int
        EM iterations before the optimiser (0: start at ``init_params`` itself).
    device : {"cpu", "cuda", "auto"}
    seed : int
    progress : bool
        Show a tqdm progress bar.
    threads : int, optional
        CPU thread budget of the fit (:func:`inference.threads.thread_budget`: numba's
        threads; torch runs on one); default from the cores and the machine's load.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    Z, lengths, device = _prepare(Z, lengths, device)
    prior = prior or HMMPrior()
    K, cov = init_params.n_states, init_params.covariance_type
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model_args = (Z, lengths, K, cov, prior)
    with thread_budget(threads) as n_threads:
        em = map_em(Z.detach().cpu().numpy(), lengths.numpy(), init_params, prior, n_iter=em_steps) if em_steps > 0 else None
        init_params = init_params if em is None else em.params
        init = sites_from_params(init_params, device=device, min_covar=prior.min_covar)
        guide = AutoDelta(hmm_model, init_loc_fn=init_to_value(values=init))
        if steps == 0:  # EM alone (its history is the conjugate log joint)
            history, converged = (em.history, em.converged) if em is not None else (np.empty(0), False)
        else:
            history, converged = _optimise_map(
                optimizer, model_args, guide, steps=steps, tol=tol, param_tol=param_tol, lr=lr,
                lr_decay=lr_decay, window=window, progress=progress,
            )
        with torch.no_grad():
            point = guide.median(*model_args)
    settings = {
        "optimizer": optimizer, "steps": int(steps), "tol": float(tol), "threads": n_threads,
        "em_steps": int(em_steps), "em_converged": None if em is None else em.converged,
        **({"param_tol": float(param_tol)} if optimizer == "lbfgs" else
           {"lr": float(lr), "lr_decay": float(lr_decay), "window": int(window)}),
    }
    return BayesianFit(
        mode="map",
        guide_name="delta",
        params=init_params if steps == 0 else params_from_sites(point, cov, init_params, prior.min_covar),
        elbo_history=history,
        converged=converged,
        n_states=K,
        covariance_type=cov,
        prior=prior,
        guide=guide,
        model_args=model_args,
        settings=settings,
    )


def _make_guide(name: str, init_values: dict, init_scale: float, rank: int | None):
    init_loc_fn = init_to_value(values=init_values)
    if name == "normal":
        return AutoNormal(hmm_model, init_loc_fn=init_loc_fn, init_scale=init_scale)
    if name == "lowrank":
        return AutoLowRankMultivariateNormal(
            hmm_model, init_loc_fn=init_loc_fn, init_scale=init_scale, rank=rank
        )
    return AutoMultivariateNormal(hmm_model, init_loc_fn=init_loc_fn, init_scale=init_scale)


def off_the_boundary(params, Z, lengths, prior: HMMPrior):
    """``params`` with start and transition probabilities at their posterior means.

    The mean is taken under the Dirichlet prior given the expected counts of
    ``params`` (one forward-backward pass): ``(E[n_jk] + alpha_jk) / (E[n_j] + sum_k
    alpha_jk)``. A maximum-likelihood or MAP fit under a flat Dirichlet puts a
    transition that no run takes at exactly 0; floored to 1e-8 that is a logit of
    about -18, from which Adam (steps of at most ``lr``) cannot bring the guide to
    the posterior's scale within a fit: SVI then reported [0, 0] where NUTS gives
    [0.0002, 0.0096] (``tests/bayes/test_svi_against_nuts.py``). Well-determined
    entries move by about ``alpha / E[n_j]``.

    Parameters
    ----------
    params : HMMParams
    Z : np.ndarray or torch.Tensor, shape (n, d)
    lengths : array of int, shape (N,)
    prior : HMMPrior
    """
    Zn = Z.detach().cpu().numpy() if isinstance(Z, torch.Tensor) else np.asarray(Z, dtype=float)
    lens = lengths.cpu().numpy() if isinstance(lengths, torch.Tensor) else np.asarray(lengths)
    log_b = gaussian_log_likelihood(Zn, params.means, params.covars, params.covariance_type)
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(params.start_prob), np.log(params.trans_mat)
    fb = forward_backward(log_b, log_start, log_trans, lens, backend="numba")
    start_conc, trans_conc = prior.dirichlet_concentrations(params.n_states)
    counts = np.asarray(fb.expected_transitions, dtype=float) + trans_conc
    start = np.asarray(fb.expected_start, dtype=float) + start_conc
    return replace(params, trans_mat=counts / counts.sum(axis=1, keepdims=True), start_prob=start / start.sum())


def fit_svi(
    Z,
    lengths,
    init_params,
    *,
    prior: HMMPrior | None = None,
    guide: str = "auto",
    rank: int | None = None,
    steps: int = 3000,
    lr: float = 0.01,
    lr_decay: float = 0.1,
    tol: float = 3e-4,
    window: int = 200,
    map_steps: int = 200,
    init_scale: float = 0.01,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> BayesianFit:
    """Stochastic variational inference over the unconstrained HMM parameters.

    The guide is centred at the MAP estimate (itself started from ``init_params``, so
    labels match the MLE), with the start and transition probabilities moved to their
    posterior means given the MAP's expected counts (:func:`off_the_boundary`), initial
    scale ``init_scale``, and fitted by ``Trace_ELBO`` with one particle per step.

    Parameters
    ----------
    Z, lengths, init_params, prior, device, seed, progress
        As in :func:`fit_map`.
    guide : {"auto", "normal", "lowrank", "mvn"}
        Mean-field normal (``AutoNormal``), low-rank plus diagonal
        (``AutoLowRankMultivariateNormal``) or full-rank (``AutoMultivariateNormal``)
        Gaussian over the unconstrained parameters; "auto" = :func:`auto_guide`
        (full-rank up to :data:`MAX_FULL_RANK` parameters, else low-rank).
    rank : int, optional
        Rank of the low-rank guide (Pyro's default ``sqrt(dim)`` when None).
    steps, lr, lr_decay, tol, window
        At most ``steps`` Adam steps, stopped by :func:`elbo_converged` over the last
        ``window`` steps (tested every ``window // 4``); the guide is then set to its
        mean over the last complete block of ``window // 2`` steps.
    map_steps : int
        L-BFGS iterations of the MAP warm start (0 starts the guide at ``init_params``).
    init_scale : float
        Initial posterior standard deviation in unconstrained space.
    threads : int, optional
        CPU thread budget, as in :func:`fit_map`.
    """
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    Z, lengths, device = _prepare(Z, lengths, device)
    guide_name = (
        auto_guide(init_params.n_states, init_params.n_features, init_params.covariance_type)
        if guide == "auto"
        else guide
    )
    prior = prior or HMMPrior()
    K, cov = init_params.n_states, init_params.covariance_type
    start, map_converged = init_params, None
    if map_steps > 0:
        map_fit = fit_map(
            Z, lengths, init_params, prior=prior, steps=map_steps, device=device,
            seed=seed, progress=progress, threads=threads,
        )
        start, map_converged = map_fit.params, bool(map_fit.converged)
    start = off_the_boundary(start, Z, lengths, prior)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model_args = (Z, lengths, K, cov, prior)
    variational = _make_guide(
        guide_name, sites_from_params(start, device=device, min_covar=prior.min_covar), init_scale, rank
    )
    with thread_budget(threads) as n_threads:
        history, converged = _optimise(
            model_args, variational, steps=steps, lr=lr, lr_decay=lr_decay, tol=tol,
            window=window, progress=progress, desc=f"SVI ({guide_name})", average=True,
        )
        with torch.no_grad():
            median = variational.median(*model_args)
    settings = {
        "optimizer": "adam", "steps": int(steps), "lr": float(lr), "lr_decay": float(lr_decay),
        "tol": float(tol), "window": int(window), "check_every": max(1, int(window) // 4),
        "convergence_test": "least-squares ELBO trend over the last window (elbo_converged)",
        "map_steps": int(map_steps), "map_converged": map_converged, "init_scale": float(init_scale),
        "rank": rank, "particles": 1, "tail_average_steps": max(1, int(window) // 2), "threads": n_threads,
    }
    return BayesianFit(
        mode="svi",
        guide_name=guide_name,
        params=params_from_sites(median, cov, template=init_params, min_covar=prior.min_covar),
        elbo_history=history,
        converged=converged,
        n_states=K,
        covariance_type=cov,
        prior=prior,
        guide=variational,
        model_args=model_args,
        settings=settings,
    )
