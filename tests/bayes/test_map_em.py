"""EM towards the MAP (the preconditioner of fit_map) against independent oracles:
Baum-Welch for a flat prior, a direct optimisation of the covariance M-step, and the
conjugate log joint computed from scipy densities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import optimize, stats

from bayes_trainmap.inference.baum_welch import GaussianHMM
from bayes_trainmap.inference.bayes_fit import fit_map
from bayes_trainmap.inference.bayes_model import HMMPrior
from bayes_trainmap.inference.map_em import clip_covariances, map_em


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_flat_prior_em_is_baum_welch_without_a_floor(planted, covariance_type):
    start = planted.mle_start()
    if covariance_type == "diag":
        start = dataclasses.replace(
            start, covars=np.diagonal(start.covars, axis1=1, axis2=2).copy(), covariance_type="diag"
        )
    n_iter = 6
    em = map_em(planted.Z, planted.lengths, start, HMMPrior.flat(), n_iter=n_iter, tol=-np.inf)
    bw = GaussianHMM(
        start.n_states, covariance_type, n_iter=n_iter, tol=-np.inf, init=start, min_covar=0.0
    ).fit(planted.Z, planted.lengths)
    # A flat prior has a zero conjugate log prior: the histories are the log-likelihoods.
    np.testing.assert_allclose(em.history, bw.history_, rtol=1e-12)
    for name in ("start_prob", "trans_mat", "means", "covars"):
        np.testing.assert_allclose(getattr(em.params, name), getattr(bw.params_, name), rtol=0, atol=1e-9)


def _gaussian_objective(sigma, scatter):
    """``-log det Sigma - tr(Sigma^-1 S)``: the covariance part of the M-step objective."""
    return -np.linalg.slogdet(sigma)[1] - np.trace(np.linalg.solve(sigma, scatter))


def test_clipped_covariance_maximises_the_m_step_objective_above_the_floor():
    rng = np.random.default_rng(0)
    d, floor = 3, 0.05
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    scatter = basis @ np.diag([1.3, 0.02, 0.001]) @ basis.T  # two eigenvalues below the floor
    clipped = clip_covariances(scatter[None], floor, "full")[0]
    np.testing.assert_allclose(np.linalg.eigvalsh(clipped), [floor, floor, 1.3], atol=1e-12)

    # Oracle: optimise directly over Sigma = floor I + B B^T, B unconstrained.
    def loss(b):
        B = b.reshape(d, d)
        return -_gaussian_objective(floor * np.eye(d) + B @ B.T, scatter)

    best = min(
        (optimize.minimize(loss, rng.normal(size=d * d), method="BFGS", options={"gtol": 1e-10}) for _ in range(3)),
        key=lambda r: r.fun,
    )
    assert -best.fun <= _gaussian_objective(clipped, scatter) + 1e-9
    assert _gaussian_objective(clipped, scatter) == pytest.approx(-best.fun, abs=1e-6)
    # diagonal: elementwise
    np.testing.assert_array_equal(clip_covariances(np.array([[0.01, 2.0]]), floor, "diag"), [[floor, 2.0]])


def _conjugate_log_joint(params, prior, Z, lengths):
    """Independent oracle: hmmlearn-free forward algorithm of the engine's scorer plus scipy
    log densities of the Dirichlet and Normal priors (their constants cancel in differences)."""
    ll = GaussianHMM.from_params(params).score(Z, lengths)
    K = params.n_states
    value = ll + stats.dirichlet.logpdf(params.start_prob, np.full(K, prior.start_concentration))
    for j in range(K):
        alpha = np.full(K, prior.trans_concentration) + prior.stickiness * np.eye(K)[j]
        value += stats.dirichlet.logpdf(params.trans_mat[j], alpha)
    value += stats.norm.logpdf(params.means, prior.mean_loc, prior.mean_scale).sum()
    return value


def test_every_iteration_raises_the_conjugate_log_joint_and_respects_the_floor(planted):
    # Informative enough that the prior terms move the fit: sticky rows, shrunk means,
    # a floor above the planted noise variance (0.09) so that clipping binds.
    prior = HMMPrior(trans_concentration=2.0, stickiness=20.0, start_concentration=2.0, mean_scale=0.3,
                     min_covar=0.12)
    start = planted.mle_start()
    params = map_em(planted.Z, planted.lengths, start, prior, n_iter=0).params  # the floored start
    values = [_conjugate_log_joint(params, prior, planted.Z, planted.lengths)]
    for _ in range(8):
        params = map_em(planted.Z, planted.lengths, params, prior, n_iter=1, tol=-np.inf).params
        values.append(_conjugate_log_joint(params, prior, planted.Z, planted.lengths))
    assert np.all(np.diff(values) > -1e-8 * abs(values[-1]))
    assert values[-1] > values[0] + 1.0
    assert np.linalg.eigvalsh(params.covars).min() >= 0.12 - 1e-12
    # the mean prior pulls towards 0 compared with the flat-prior fit
    flat = map_em(planted.Z, planted.lengths, start, dataclasses.replace(prior, mean_scale=None), n_iter=16).params
    assert np.abs(params.means).sum() < np.abs(flat.means).sum()
    # ... and the history map_em keeps equals the oracle up to one constant
    em = map_em(planted.Z, planted.lengths, start, prior, n_iter=5, tol=-np.inf)
    oracle = [_conjugate_log_joint(p, prior, planted.Z, planted.lengths) for p in _iterates(planted, start, prior, 5)]
    np.testing.assert_allclose(np.diff(em.history), np.diff(oracle), rtol=1e-8, atol=1e-6)


def _iterates(planted, start, prior, n):
    """The parameters entering each of ``n`` iterations (the first is the floored start)."""
    out = [map_em(planted.Z, planted.lengths, start, prior, n_iter=0).params]
    for k in range(1, n):
        out.append(map_em(planted.Z, planted.lengths, start, prior, n_iter=k, tol=-np.inf).params)
    return out


def test_fit_map_records_its_em_preconditioner(planted):
    fit = fit_map(planted.Z, planted.lengths, planted.mle_start(), steps=20, em_steps=7, progress=False)
    assert fit.settings["em_steps"] == 7
    assert fit.settings["em_converged"] in (True, False)
    plain = fit_map(planted.Z, planted.lengths, planted.mle_start(), steps=20, em_steps=0, progress=False)
    assert plain.settings["em_converged"] is None
    # Twenty L-BFGS iterations from EM's point end higher than from the raw start.
    assert fit.elbo_history[-1] > plain.elbo_history[-1]
