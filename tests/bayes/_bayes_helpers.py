"""Helpers of the Bayesian-path tests: tiny random HMMs and a planted detour problem."""

from __future__ import annotations

import numpy as np

from bayes_trainmap.data.simulate import simulate_training_runs
from bayes_trainmap.inference.params import HMMParams


def random_params(n_states=3, n_features=2, covariance_type="full", seed=0) -> HMMParams:
    """A random, well-conditioned Gaussian HMM."""
    rng = np.random.default_rng(seed)
    K, d = n_states, n_features
    factors = rng.normal(size=(K, d, d)) * 0.4
    covars = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(d)
    if covariance_type == "diag":
        covars = np.einsum("kii->ki", covars)
    return HMMParams(
        start_prob=rng.dirichlet(np.ones(K)),
        trans_mat=rng.dirichlet(np.ones(K) * 2, size=K),
        means=rng.normal(0.0, 1.5, size=(K, d)),
        covars=covars,
        covariance_type=covariance_type,
    )


class Planted:
    """An easy planted problem in the exact HMM regime, in latent (known-affine) units.

    ``smoothing=1`` and geometric dwell times make the simulated features exact draws
    of the planted HMM; undoing the simulator's known per-feature affine map gives
    data whose true parameters are ``truth`` (no per-run z-scoring, which would make
    the truth run-dependent).
    """

    def __init__(self, seed=3, n_runs=24, n_checkpoints=120, n_features=2):
        sim = simulate_training_runs(
            n_runs=n_runs,
            n_checkpoints=n_checkpoints,
            n_features=n_features,
            path_dwell=(15, 20),
            delay=25,
            fork_after=0,
            detour_prob=0.5,
            separation=2.0,
            noise=0.3,
            smoothing=1.0,
            dwell="geometric",
            random_state=seed,
        )
        p = sim.planted
        self._mle = None
        self.sim = sim
        self.Z = (sim.feature_matrix() - p["feature_offsets"]) / p["feature_scales"]
        self.lengths = sim.lengths
        K, d = p["n_states"], n_features
        self.truth = HMMParams(
            start_prob=np.asarray(p["start_prob"], dtype=float),
            trans_mat=np.asarray(p["trans_mat"], dtype=float),
            means=np.asarray(p["latent_means"], dtype=float),
            covars=np.tile(np.eye(d) * p["noise"] ** 2, (K, 1, 1)),
            covariance_type="full",
            feature_names=sim.feature_names,
        )
        self.detour_state = int(p["detour_state"])
        self.convergence_steps = sim.convergence_steps

    def mle_start(self) -> HMMParams:
        """A perturbed truth: a starting point whose labels match the truth."""
        K = self.truth.n_states
        return HMMParams(
            start_prob=np.full(K, 1.0 / K),
            trans_mat=0.8 * np.eye(K) + 0.2 / K,
            means=self.truth.means + 0.2,
            covars=self.truth.covars * 1.5,
            covariance_type="full",
            feature_names=self.truth.feature_names,
        )

    def mle(self):
        """EM from :meth:`mle_start`, run to tight convergence (cached)."""
        from bayes_trainmap.inference.baum_welch import GaussianHMM

        if self._mle is not None:
            return self._mle
        model = GaussianHMM(self.truth.n_states, init=self.mle_start(), n_iter=500, tol=1e-9, min_covar=1e-6)
        self._mle = model.fit(self.Z, self.lengths)
        return self._mle
