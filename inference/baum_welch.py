"""Maximum-likelihood Gaussian HMMs by Baum-Welch (EM), with scikit-learn habits.

The E-step runs the forward-backward kernels of :mod:`inference.forward_backward`
(numba on CPU, batched torch on an accelerator) over all sequences at once. The
data enter every iteration only through the fixed quadratic features of
:class:`inference.emissions.QuadraticFeatures` (built once per fit): the emission
log-densities are one skinny product ``F @ W(params)`` and the M-step's weighted
sufficient statistics (first moments and upper-triangular second moments of every
state) one product ``gamma.T @ F``.

M-step (identical to hmmlearn's ``GaussianHMM`` with its priors at their no-op
values ``startprob_prior=1, transmat_prior=1, means_weight=0, covars_prior=0``),
followed by a diagonal floor:

* ``pi_k ∝ sum_n gamma_{n,1}(k)``, ``A_jk ∝ sum xi_t(j, k)``;
* ``mu_k = sum_t gamma_t(k) x_t / N_k`` with ``N_k = sum_t gamma_t(k)``;
* ``Sigma_k = sum_t gamma_t(k) (x_t - mu_k)(x_t - mu_k)^T / N_k + min_covar I``
  (diagonal: the diagonal of the same). The floor is how scikit-learn's
  ``GaussianMixture(reg_covar)`` regularises; it keeps every covariance positive
  definite however few checkpoints a state explains. (hmmlearn 0.3 uses
  ``min_covar`` only at initialisation; with ``min_covar=0`` the two M-steps
  coincide.)

A transition row whose state is never left (no expected transitions out of it)
keeps its previous value instead of becoming 0/0. A state whose posterior mass
``N_k`` falls below ``empty_state_mass`` is reported with an
:class:`EmptyStateWarning` and re-seeded: its mean moves to the checkpoint the
current model explains worst (lowest best-state emission log-density), its
covariance to the pooled data covariance (+ floor), its transition row to uniform,
and the transitions into it (and its start probability) are raised to at least 1/K
so that it can be entered again. Re-seeding never reopens a **structural zero**: an
entry of the start vector or transition matrix that is exactly 0 in the restart's
initial parameters (a left-right model, say) stays 0 -- the uniform row and the
raised entries cover only the entries the initialisation allows. (EM itself never
turns an exact 0 into a positive value, so those zeros are the model's design.)
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any

import numpy as np

from .emissions import QuadraticFeatures, gaussian_log_likelihood
from .errors import ModelSizeError
from .forward_backward import check_lengths, forward_backward, log_likelihood, viterbi
from .params import COVARIANCE_TYPES, HMMParams, bic

__all__ = ["GaussianHMM", "EmptyStateWarning", "NotFittedError"]

logger = logging.getLogger(__name__)


class EmptyStateWarning(UserWarning):
    """A hidden state's posterior mass collapsed during EM; the state was re-seeded."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before :meth:`GaussianHMM.fit` (or ``from_params``)."""


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


class GaussianHMM:
    """Gaussian hidden Markov model fitted by Baum-Welch.

    Parameters
    ----------
    n_states : int
        Number of hidden states ``K`` (1 <= K <= number of checkpoints).
    covariance_type : {"full", "diag"}
    n_iter : int
        Maximum number of EM iterations per restart.
    tol : float
        EM stops when the total log-likelihood improves by less than ``tol``
        between two iterations (hmmlearn's rule).
    init : {"kmeans", "random"} or HMMParams
        ``"kmeans"``: means from seeded k-means (scikit-learn), every covariance the
        pooled data covariance plus the floor, uniform start and transition
        probabilities (hmmlearn's initialisation). ``"random"``: means at distinct
        random checkpoints, pooled covariances, Dirichlet(1) start and transition rows.
        An :class:`HMMParams` starts EM from those parameters (then ``n_restarts`` must be 1).
    n_restarts : int
        Independent EM runs from different initialisations; the one with the
        highest final training log-likelihood is kept.
    min_covar : float
        Added to the diagonal of every covariance at every M-step.
    random_state : int, numpy.random.Generator or None
        Seeds the initialisations (each restart draws its own seed from it).
    device : str or torch.device
        ``"cpu"`` (numpy + numba kernels), ``"cuda"``/``"cuda:1"``/a torch device (torch
        kernels on that device) or ``"auto"`` (CUDA when available).
    feature_names : list of str, optional
        Stored in the fitted :class:`HMMParams`.
    empty_state_mass : float
        Posterior mass (expected number of checkpoints) below which a state counts
        as empty and is re-seeded.
    backend : {"auto", "numba", "torch"}
        Forward-backward implementation; ``"auto"`` follows ``device``.
    fb_method : {"auto", "sequential", "scan"}
        Time recursion of the torch forward-backward and Viterbi (the ``method`` of
        :mod:`inference.forward_backward`): ``"scan"`` is the parallel-in-time
        associative scan (and implies the torch backend), ``"auto"`` uses it on CUDA
        for runs of at least ``SCAN_MIN_LENGTH`` checkpoints.

    Attributes
    ----------
    params_ : HMMParams
        Fitted parameters.
    log_likelihood_ : float
        Total training log-likelihood of ``params_``.
    history_ : list of float
        Total training log-likelihood at every EM iteration of the kept restart
        (evaluated at the parameters entering that iteration, as hmmlearn's monitor).
    converged_ : bool
        Whether the kept restart stopped by the ``tol`` rule before ``n_iter``.
    n_iter_ : int
        EM iterations run by the kept restart.
    restart_log_likelihoods_ : list of float
        Final training log-likelihood of every restart.
    best_restart_ : int
    n_empty_state_events_ : int
        Number of state re-seedings over all restarts.
    """

    def __init__(
        self,
        n_states: int,
        covariance_type: str = "full",
        n_iter: int = 100,
        tol: float = 1e-4,
        init: str | HMMParams = "kmeans",
        n_restarts: int = 1,
        min_covar: float = 1e-3,
        random_state=None,
        device="cpu",
        feature_names=None,
        *,
        empty_state_mass: float = 1e-3,
        backend: str = "auto",
        fb_method: str = "auto",
    ):
        self.n_states = n_states
        self.covariance_type = covariance_type
        self.n_iter = n_iter
        self.tol = tol
        self.init = init
        self.n_restarts = n_restarts
        self.min_covar = min_covar
        self.random_state = random_state
        self.device = device
        self.feature_names = feature_names
        self.empty_state_mass = empty_state_mass
        self.backend = backend
        self.fb_method = fb_method

    def __repr__(self) -> str:
        return (
            f"GaussianHMM(n_states={self.n_states}, covariance_type={self.covariance_type!r}, "
            f"n_iter={self.n_iter}, tol={self.tol}, n_restarts={self.n_restarts}, "
            f"min_covar={self.min_covar}, random_state={self.random_state!r})"
        )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_params(cls, params: HMMParams, **kwargs) -> GaussianHMM:
        """A fitted estimator with the given parameters (no EM is run)."""
        if not isinstance(params, HMMParams):
            raise ValueError(f"params must be an HMMParams, got {type(params).__name__}")
        model = cls(
            n_states=params.n_states,
            covariance_type=params.covariance_type,
            init=params,
            feature_names=list(params.feature_names),
            **kwargs,
        )
        model.params_ = params.copy()
        model.history_ = []
        model.converged_ = False
        model.n_iter_ = 0
        model.log_likelihood_ = float("nan")
        model.restart_log_likelihoods_ = []
        model.best_restart_ = 0
        model.n_empty_state_events_ = 0
        return model

    # --------------------------------------------------------------- validation
    def _check_hyperparameters(self) -> None:
        if isinstance(self.n_states, bool) or not isinstance(self.n_states, numbers.Integral):
            raise ValueError(f"n_states must be an integer, got {self.n_states!r}")
        if self.n_states < 1:
            raise ModelSizeError(f"n_states must be at least 1, got {self.n_states}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}"
            )
        if not isinstance(self.n_iter, numbers.Integral) or self.n_iter < 1:
            raise ValueError(f"n_iter must be a positive integer, got {self.n_iter!r}")
        if not isinstance(self.n_restarts, numbers.Integral) or self.n_restarts < 1:
            raise ValueError(f"n_restarts must be a positive integer, got {self.n_restarts!r}")
        if not np.isfinite(self.min_covar) or self.min_covar < 0:
            raise ValueError(f"min_covar must be a finite number >= 0, got {self.min_covar!r}")
        if self.fb_method not in ("auto", "sequential", "scan"):
            raise ValueError(
                f"fb_method must be 'auto', 'sequential' or 'scan', got {self.fb_method!r}"
            )
        if not (self.empty_state_mass >= 0):
            raise ValueError(f"empty_state_mass must be >= 0, got {self.empty_state_mass!r}")
        if isinstance(self.init, HMMParams):
            if self.n_restarts != 1:
                raise ValueError(
                    f"n_restarts must be 1 when init is an HMMParams, got {self.n_restarts}"
                )
            if self.init.n_states != self.n_states:
                raise ValueError(
                    f"init has {self.init.n_states} states but n_states={self.n_states}"
                )
            if self.init.covariance_type != self.covariance_type:
                raise ValueError(
                    f"init has covariance_type={self.init.covariance_type!r} but the "
                    f"estimator has {self.covariance_type!r}"
                )
        elif self.init not in ("kmeans", "random"):
            raise ValueError(f"init must be 'kmeans', 'random' or an HMMParams, got {self.init!r}")

    def _validate_X(self, X, lengths, n_features=None):
        """-> (X float64 numpy (n, d), lengths int64 (N,))."""
        if _is_torch(X):
            X = X.detach().cpu().numpy()
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("X must be a numeric 2-D array (n_checkpoints, n_features)") from None
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_checkpoints, n_features), got shape {X.shape}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X must have at least one row and one column, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            bad = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(
                f"X must be finite; X[{bad[0]}, {bad[1]}] = {float(X[bad[0], bad[1]])}"
            )
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features but the model was fitted with {n_features}")
        return X, check_lengths(lengths, X.shape[0])

    def _check_fitted(self) -> HMMParams:
        params = getattr(self, "params_", None)
        if params is None:
            raise NotFittedError("this GaussianHMM is not fitted yet; call fit() or from_params()")
        return params

    # ------------------------------------------------------------------- device
    def _torch_device(self):
        """None for the numpy/numba path, else the torch device to run on."""
        device = self.device
        if device is None or (isinstance(device, str) and device == "cpu"):
            return None if self.backend != "torch" else _torch().device("cpu")
        torch = _torch()
        if isinstance(device, str) and device == "auto":
            if not torch.cuda.is_available():
                return None if self.backend != "torch" else torch.device("cpu")
            device = "cuda"
        dev = torch.device(device)
        if dev.type == "cpu" and self.backend != "torch":
            return None
        return dev

    def _fb_backend(self, dev) -> str:
        if self.backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {self.backend!r}")
        if dev is None:
            if self.backend == "auto":
                return "torch" if self.fb_method == "scan" else "numba"
            return self.backend
        return "torch"

    # -------------------------------------------------------------------- E-step
    def _log_emission(self, Xd, params: HMMParams):
        """(n, K) on the compute device/kind of ``Xd``."""
        return gaussian_log_likelihood(Xd, params.means, params.covars, params.covariance_type)

    def _logs(self, params: HMMParams, like):
        with np.errstate(divide="ignore"):
            ls, lt = np.log(params.start_prob), np.log(params.trans_mat)
        if _is_torch(like):
            torch = _torch()
            return (
                torch.as_tensor(ls, device=like.device),
                torch.as_tensor(lt, device=like.device),
            )
        return ls, lt

    # --------------------------------------------------------------------- fit
    def fit(self, X, lengths=None) -> GaussianHMM:
        """Fit by EM with ``n_restarts`` initialisations; keep the best.

        Parameters
        ----------
        X : array, shape (n, d)
            Concatenated sequences (finite values).
        lengths : array of int, shape (N,), optional
            Sequence lengths summing to n; None for one sequence.

        Returns
        -------
        self
        """
        self._check_hyperparameters()
        X, lengths = self._validate_X(X, lengths)
        n, d = X.shape
        K = int(self.n_states)
        if K > n:
            raise ModelSizeError(
                f"cannot fit K={K} states to {n} checkpoints; K must be at most the number of checkpoints"
            )
        names = self._feature_names(d)
        if isinstance(self.init, HMMParams) and self.init.n_features != d:
            raise ValueError(f"init has {self.init.n_features} features but X has {d}")
        dev = self._torch_device()
        backend = self._fb_backend(dev)
        Xd = X if dev is None else _torch().as_tensor(X, device=dev)
        design = QuadraticFeatures(Xd, self.covariance_type)  # shared by all restarts
        rng = np.random.default_rng(self.random_state)
        pooled = np.atleast_2d(np.cov(X.T)) if n > 1 else np.eye(d)

        best = None
        restart_lls = []
        self.n_empty_state_events_ = 0
        for restart in range(int(self.n_restarts)):
            seed = int(rng.integers(2**31 - 1))
            init = self._initial_params(X, pooled, seed, names)
            result = self._em(X, design, lengths, init, pooled, backend)
            restart_lls.append(result["log_likelihood"])
            logger.debug(
                "K=%d restart %d: log-likelihood %.6f after %d iterations",
                K, restart, result["log_likelihood"], result["n_iter"],
            )
            if best is None or result["log_likelihood"] > best["log_likelihood"]:
                best = dict(result, restart=restart)
        self.params_ = best["params"]
        self.log_likelihood_ = float(best["log_likelihood"])
        self.history_ = [float(v) for v in best["history"]]
        self.converged_ = bool(best["converged"])
        self.n_iter_ = int(best["n_iter"])
        self.restart_log_likelihoods_ = [float(v) for v in restart_lls]
        self.best_restart_ = int(best["restart"])
        return self

    def _feature_names(self, d: int) -> list[str]:
        if self.feature_names is not None:
            names = [str(n) for n in self.feature_names]
            if len(names) != d:
                raise ValueError(f"feature_names has {len(names)} names but X has {d} features")
            return names
        if isinstance(self.init, HMMParams):
            return list(self.init.feature_names)
        return [f"feature_{i}" for i in range(d)]

    def _initial_params(self, X, pooled, seed: int, names) -> HMMParams:
        K, d = int(self.n_states), X.shape[1]
        if isinstance(self.init, HMMParams):
            p = self.init.copy()
            p.feature_names = list(names)
            return p
        cov = pooled + self.min_covar * np.eye(d)
        if self.init == "kmeans":
            from sklearn.cluster import KMeans

            with warnings.catch_warnings():
                # Fewer distinct points than clusters is handled by EM (empty-state reseeding).
                warnings.filterwarnings("ignore", message="Number of distinct clusters")
                means = KMeans(n_clusters=K, n_init=1, random_state=seed).fit(X).cluster_centers_
            start = np.full(K, 1.0 / K)
            trans = np.full((K, K), 1.0 / K)
        else:
            rng = np.random.default_rng(seed)
            means = X[rng.choice(X.shape[0], size=K, replace=False)]
            start = rng.dirichlet(np.ones(K))
            trans = rng.dirichlet(np.ones(K), size=K)
        covars = np.broadcast_to(cov, (K, d, d)).copy()
        if self.covariance_type == "diag":
            covars = np.diagonal(covars, axis1=1, axis2=2).copy()
        return HMMParams(start, trans, means, covars, self.covariance_type, list(names))

    def _em(self, X, design, lengths, params: HMMParams, pooled, backend) -> dict[str, Any]:
        history: list[float] = []
        # Structural zeros of the initialisation, kept through any re-seeding.
        support = (np.asarray(params.start_prob) > 0, np.asarray(params.trans_mat) > 0)
        converged = reseeded = False
        it = 0
        for it in range(1, int(self.n_iter) + 1):
            log_b = design.log_likelihood(params.means, params.covars)
            ls, lt = self._logs(params, log_b)
            fb = forward_backward(log_b, ls, lt, lengths, backend=backend, method=self.fb_method)
            total = float(fb.log_likelihood.sum())
            if not np.isfinite(total):
                raise ModelSizeError(
                    f"the log-likelihood became {total} at EM iteration {it} (K={self.n_states}); "
                    "check the scale of the data"
                )
            history.append(total)
            # After a re-seeding M-step the likelihood may drop: no convergence test then.
            just_reseeded = reseeded
            events_before = self.n_empty_state_events_
            try:
                params = self._m_step(X, design, fb, params, log_b, pooled, support)
            except ValueError as exc:
                # Only a covariance problem is helped by a larger floor; say so only then.
                hint = (
                    f"; increase min_covar (now {self.min_covar:g})"
                    if "covar" in str(exc) or "positive definite" in str(exc)
                    else ""
                )
                raise ModelSizeError(
                    f"EM iteration {it} with K={self.n_states} produced invalid parameters ({exc}){hint}"
                ) from None
            reseeded = self.n_empty_state_events_ > events_before
            if len(history) >= 2 and not just_reseeded and history[-1] - history[-2] < self.tol:
                converged = True
                break
        # Log-likelihood of the parameters actually returned (one more forward pass).
        log_b = design.log_likelihood(params.means, params.covars)
        ls, lt = self._logs(params, log_b)
        final_ll = float(np.sum(_to_numpy(log_likelihood(log_b, ls, lt, lengths, backend=backend, method=self.fb_method))))
        return dict(params=params, history=history, converged=converged, n_iter=it, log_likelihood=final_ll)

    # -------------------------------------------------------------------- M-step
    def _m_step(self, X, design, fb, old: HMMParams, log_b, pooled, support=None) -> HMMParams:
        start = np.maximum(_to_numpy(fb.expected_start), 0.0)
        start = start / start.sum()
        xi = np.maximum(_to_numpy(fb.expected_transitions), 0.0)
        row = xi.sum(1)
        trans = old.trans_mat.copy()
        seen = row > 0  # a state never left keeps its row instead of 0/0
        trans[seen] = xi[seen] / row[seen, None]
        mass, means, covars = design.weighted_moments(fb.posteriors)
        if self.covariance_type == "full":
            d = covars.shape[1]
            covars[:, np.arange(d), np.arange(d)] += self.min_covar
        else:
            covars += self.min_covar
        empty = np.flatnonzero(mass < self.empty_state_mass)
        if empty.size:
            start, means, covars, trans = self._reseed(
                empty, mass, start, means, covars, trans, X, log_b, pooled, support
            )
        return HMMParams(start, trans, means, covars, self.covariance_type, list(old.feature_names),
                         dict(old.normalization))

    def _reseed(self, empty, mass, start, means, covars, trans, X, log_b, pooled, support=None):
        """Re-seed the ``empty`` states; ``support = (start > 0 (K,), trans > 0 (K, K))``
        of the initial parameters marks the entries that may be positive (None: all)."""
        d = X.shape[1]
        K = len(mass)
        if support is None:
            support = (np.ones(K, dtype=bool), np.ones((K, K), dtype=bool))
        start_ok, trans_ok = support
        best_fit = _to_numpy(log_b).max(axis=1)  # how well the best state explains each checkpoint
        worst = np.argsort(best_fit, kind="stable")
        cov = pooled + self.min_covar * np.eye(d)
        for rank, k in enumerate(empty):
            point = int(worst[rank % len(worst)])
            self.n_empty_state_events_ = getattr(self, "n_empty_state_events_", 0) + 1
            warnings.warn(
                EmptyStateWarning(
                    f"state {k} of K={len(mass)} is empty (posterior mass {mass[k]:.3g} < "
                    f"{self.empty_state_mass:g} checkpoints); re-seeded its mean at checkpoint "
                    f"{point} (the one the model explains worst), its covariance at the pooled "
                    f"data covariance, its transition row at uniform and reopened transitions into it "
                    "(both only where the initial model has no structural zero)"
                ),
                stacklevel=4,
            )
            means[k] = X[point]
            covars[k] = cov if self.covariance_type == "full" else np.diag(cov)
            # The M-step has also cut every path into the state; reopen them, but
            # only where the initial model allows a positive probability.
            trans[k] = np.where(trans_ok[k], 1.0 / K, 0.0)
            trans[:, k] = np.where(trans_ok[:, k], np.maximum(trans[:, k], 1.0 / K), 0.0)
            if start_ok[k]:
                start[k] = max(start[k], 1.0 / K)
        trans /= trans.sum(axis=1, keepdims=True)
        start /= start.sum()
        return start, means, covars, trans

    # ----------------------------------------------------------------- inference
    def _run(self, X, lengths):
        params = self._check_fitted()
        X, lengths = self._validate_X(X, lengths, params.n_features)
        dev = self._torch_device()
        backend = self._fb_backend(dev)
        Xd = X if dev is None else _torch().as_tensor(X, device=dev)
        log_b = self._log_emission(Xd, params)
        ls, lt = self._logs(params, log_b)
        return log_b, ls, lt, lengths, backend

    def score_sequences(self, X, lengths=None) -> np.ndarray:
        """Log-likelihood ``log p(x_1:T_i)`` of every sequence, shape (N,)."""
        log_b, ls, lt, lengths, backend = self._run(X, lengths)
        return _to_numpy(log_likelihood(log_b, ls, lt, lengths, backend=backend, method=self.fb_method))

    def score_samples(self, X, lengths=None) -> np.ndarray:
        """Deprecated: per-sequence log-likelihoods, now :meth:`score_sequences`.

        (scikit-learn's ``score_samples`` returns one value per *sample*; an HMM's
        checkpoints are not independent samples, so the per-sequence score is named for what
        it is.)
        """
        warnings.warn("GaussianHMM.score_samples is deprecated; use score_sequences", DeprecationWarning, stacklevel=2)
        return self.score_sequences(X, lengths)

    def score(self, X, lengths=None) -> float:
        """Total log-likelihood ``log p(X)`` summed over sequences."""
        return float(np.sum(self.score_sequences(X, lengths)))

    def predict(self, X, lengths=None) -> np.ndarray:
        """Viterbi state paths, shape (n,) int64."""
        log_b, ls, lt, lengths, backend = self._run(X, lengths)
        return _to_numpy(viterbi(log_b, ls, lt, lengths, backend=backend, method=self.fb_method)[0]).astype(np.int64)

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """Smoothed posteriors p(s_t | z_1:T), shape (n, K)."""
        log_b, ls, lt, lengths, backend = self._run(X, lengths)
        return _to_numpy(forward_backward(
            log_b, ls, lt, lengths, backend=backend, method=self.fb_method
        ).posteriors)

    def filtered_proba(self, X, lengths=None) -> np.ndarray:
        """Filtered posteriors p(s_t | z_1:t), shape (n, K)."""
        log_b, ls, lt, lengths, backend = self._run(X, lengths)
        res = forward_backward(
            log_b, ls, lt, lengths, filtered=True, backend=backend, method=self.fb_method
        )
        return _to_numpy(res.filtered)

    def n_parameters(self) -> int:
        """Free parameters ``p`` of the model (see :meth:`HMMParams.n_free_parameters`)."""
        return self._check_fitted().n_free_parameters()

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion ``-2 log p(X) + p ln(n)``, n = checkpoints in X."""
        n = self._validate_X(X, lengths, self._check_fitted().n_features)[0].shape[0]
        return bic(self.score(X, lengths), self.n_parameters(), n)

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion ``-2 log p(X) + 2 p``."""
        return -2.0 * self.score(X, lengths) + 2.0 * self.n_parameters()

    def sample(self, n_samples: int = 1, random_state=None):
        """Draw one sequence from the model.

        Returns
        -------
        X : (n_samples, d) float64
        states : (n_samples,) int64
        """
        params = self._check_fitted()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        rng = np.random.default_rng(random_state)
        K = params.n_states
        states = np.empty(n_samples, dtype=np.int64)
        uniforms = rng.random(n_samples)
        start_cdf = np.cumsum(params.start_prob)
        trans_cdf = np.cumsum(params.trans_mat, axis=1)
        # Inverse-CDF draws; min() guards against a cdf ending just below 1.
        states[0] = min(np.searchsorted(start_cdf, uniforms[0] * start_cdf[-1], side="right"), K - 1)
        for t in range(1, n_samples):
            row = trans_cdf[states[t - 1]]
            states[t] = min(np.searchsorted(row, uniforms[t] * row[-1], side="right"), K - 1)
        chol = np.linalg.cholesky(params.full_covars())
        noise = rng.standard_normal((n_samples, params.n_features))
        X = params.means[states] + np.einsum("tij,tj->ti", chol[states], noise)
        return X, states


def _torch():
    import torch

    return torch


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
