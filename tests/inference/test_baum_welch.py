"""Baum-Welch GaussianHMM: hmmlearn oracle, EM properties, relabelling, warnings, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hmmlearn import hmm

from bayes_trainmap.inference.errors import ModelSizeError
from bayes_trainmap.inference.baum_welch import EmptyStateWarning, GaussianHMM, NotFittedError
from bayes_trainmap.inference.params import HMMParams

LENGTHS = [60, 25, 90, 41]


def _planted(covariance_type="full", K=3, d=3, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    trans = np.full((K, K), 0.1 / max(K - 1, 1)) + np.eye(K) * (0.9 - 0.1 / max(K - 1, 1))
    trans /= trans.sum(1, keepdims=True)
    if covariance_type == "full":
        A = rng.normal(scale=0.5, size=(K, d, d))
        covars = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    else:
        covars = rng.uniform(0.3, 1.5, size=(K, d))
    return HMMParams(
        start_prob=rng.dirichlet(np.ones(K)),
        trans_mat=trans,
        means=rng.normal(scale=sep, size=(K, d)),
        covars=covars,
        covariance_type=covariance_type,
    )


def _data(params, lengths=LENGTHS, seed=0):
    gen = GaussianHMM.from_params(params)
    parts = [gen.sample(T, random_state=seed * 1000 + i) for i, T in enumerate(lengths)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class _FlooredHMMLearn(hmm.GaussianHMM):
    """hmmlearn's M-step followed by the diagonal floor ``min_covar * I``.

    hmmlearn 0.3 applies ``min_covar`` only at initialisation; our engine adds it at
    every M-step (scikit-learn's ``reg_covar`` convention), so the oracle adds it too.
    """

    def _do_mstep(self, stats):
        super()._do_mstep(stats)
        if self.covariance_type == "full":
            self._covars_ = self._covars_ + self.min_covar * np.eye(self.n_features)
        else:
            self._covars_ = self._covars_ + self.min_covar


def _hmmlearn_fit(init: HMMParams, X, lengths, n_iter, min_covar):
    cls = hmm.GaussianHMM if min_covar == 0 else _FlooredHMMLearn
    ref = cls(
        n_components=init.n_states,
        covariance_type=init.covariance_type,
        min_covar=min_covar,
        covars_prior=0.0,
        covars_weight=1.0,
        means_prior=0.0,
        means_weight=0.0,
        startprob_prior=1.0,
        transmat_prior=1.0,
        n_iter=n_iter,
        tol=-np.inf,
        init_params="",
        params="stmc",
        implementation="log",
    )
    ref.startprob_ = init.start_prob.copy()
    ref.transmat_ = init.trans_mat.copy()
    ref.means_ = init.means.copy()
    ref.covars_ = init.covars.copy()
    return ref.fit(X, lengths)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("min_covar", [0.0, 1e-2])
def test_matches_hmmlearn_from_identical_initial_parameters(covariance_type, min_covar):
    true = _planted(covariance_type, K=3, d=3, seed=1, sep=1.5)
    X, _ = _data(true, seed=1)
    # A deliberately poor start so that EM moves for all iterations.
    init = GaussianHMM(3, covariance_type, init="random", random_state=7, min_covar=min_covar)
    init = init._initial_params(X, np.cov(X.T), seed=7, names=["a", "b", "c"])
    n_iter = 25
    ours = GaussianHMM(
        3, covariance_type, n_iter=n_iter, tol=-np.inf, init=init, min_covar=min_covar
    ).fit(X, LENGTHS)
    ref = _hmmlearn_fit(init, X, LENGTHS, n_iter, min_covar)

    ref_hist = np.array(ref.monitor_.history)
    assert len(ours.history_) == len(ref_hist) == n_iter
    np.testing.assert_allclose(ours.history_, ref_hist, rtol=1e-8, atol=0)
    assert ours.history_[-1] - ours.history_[0] > 1.0  # EM actually moved
    p = ours.params_
    np.testing.assert_allclose(p.start_prob, ref.startprob_, atol=1e-8)
    np.testing.assert_allclose(p.trans_mat, ref.transmat_, atol=1e-8)
    np.testing.assert_allclose(p.means, ref.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(p.covars, ref._covars_, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    np.testing.assert_allclose(ours.score(X, LENGTHS), ref.score(X, LENGTHS), rtol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), ref.predict_proba(X, LENGTHS), atol=1e-8)
    assert ours.log_likelihood_ == pytest.approx(ours.score(X, LENGTHS), rel=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_em_never_decreases_log_likelihood(covariance_type):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        K, d = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        true = _planted(covariance_type, K=K, d=d, seed=seed, sep=2.0)
        lengths = list(rng.integers(40, 120, size=int(rng.integers(1, 5))))
        X, _ = _data(true, lengths, seed=seed)
        model = GaussianHMM(
            K, covariance_type, n_iter=30, tol=-np.inf, init="random", min_covar=0.0,
            random_state=seed, empty_state_mass=0.0,
        ).fit(X, lengths)
        hist = np.array(model.history_ + [model.log_likelihood_])
        assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:])), (seed, np.diff(hist).min())


def test_recovers_planted_parameters_up_to_relabelling():
    true = _planted("full", K=3, d=2, seed=4, sep=4.0)
    X, states = _data(true, [400] * 5, seed=4)
    model = GaussianHMM(3, "full", n_iter=100, n_restarts=3, random_state=0).fit(X, [400] * 5)
    assert model.converged_ and model.n_iter_ < 100
    order = [int(np.argmin(np.linalg.norm(model.params_.means - m, axis=1))) for m in true.means]
    assert sorted(order) == [0, 1, 2]
    fitted = model.params_.permute(order)
    np.testing.assert_allclose(fitted.means, true.means, atol=0.15)
    # Transitions against the planted path's own frequencies (free of sampling noise).
    counts = np.zeros((3, 3))
    for path in np.split(states, 5):
        np.add.at(counts, (path[:-1], path[1:]), 1)
    np.testing.assert_allclose(fitted.trans_mat, counts / counts.sum(1, keepdims=True), atol=0.03)
    np.testing.assert_allclose(fitted.covars, true.covars, atol=0.2)
    relabelled = np.argsort(order)[model.predict(X, [400] * 5)]
    # Decodes as well as the planted model itself (states 1 and 2 overlap, so < 100%).
    oracle = np.mean(GaussianHMM.from_params(true).predict(X, [400] * 5) == states)
    assert np.mean(relabelled == states) >= oracle - 0.01
    assert len(model.restart_log_likelihoods_) == 3
    assert model.log_likelihood_ == max(model.restart_log_likelihoods_)


def test_relabelling_states_leaves_likelihood_unchanged_and_permutes_posteriors():
    true = _planted("full", K=3, d=2, seed=2)
    X, _ = _data(true, seed=2)
    order = [2, 0, 1]
    a = GaussianHMM.from_params(true)
    b = GaussianHMM.from_params(true.permute(order))
    np.testing.assert_allclose(a.score(X, LENGTHS), b.score(X, LENGTHS), rtol=1e-12)
    np.testing.assert_allclose(b.predict_proba(X, LENGTHS), a.predict_proba(X, LENGTHS)[:, order], atol=1e-12)
    np.testing.assert_allclose(b.filtered_proba(X, LENGTHS), a.filtered_proba(X, LENGTHS)[:, order], atol=1e-12)
    np.testing.assert_array_equal(np.asarray(order)[b.predict(X, LENGTHS)], a.predict(X, LENGTHS))
    np.testing.assert_allclose(a.predict_proba(X, LENGTHS).sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(a.filtered_proba(X, LENGTHS).sum(1), 1.0, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_torch_backend_fit_equals_numba_fit(covariance_type):
    true = _planted(covariance_type, K=3, d=3, seed=3, sep=1.5)
    X, _ = _data(true, seed=3)
    kw = dict(n_iter=15, tol=-np.inf, init="random", random_state=3)
    a = GaussianHMM(3, covariance_type, backend="numba", **kw).fit(X, LENGTHS)
    b = GaussianHMM(3, covariance_type, backend="torch", **kw).fit(X, LENGTHS)
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-10)
    assert a.params_.allclose(b.params_, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(a.predict(X, LENGTHS), b.predict(X, LENGTHS))
    np.testing.assert_allclose(a.filtered_proba(X, LENGTHS), b.filtered_proba(X, LENGTHS), atol=1e-10)


def test_empty_state_is_reported_and_reseeded():
    true = _planted("full", K=2, d=2, seed=5)
    X, _ = _data(true, seed=5)
    init = HMMParams(
        start_prob=[0.5, 0.25, 0.25],
        trans_mat=np.full((3, 3), 1 / 3),
        means=np.vstack([true.means, [1e3, 1e3]]),  # state 2 explains nothing
        covars=np.stack([np.eye(2)] * 3),
    )
    model = GaussianHMM(3, "full", n_iter=50, tol=1e-4, init=init)
    with pytest.warns(EmptyStateWarning, match=r"state 2 of K=3 is empty .*re-seeded its mean at checkpoint \d+"):
        model.fit(X, LENGTHS)
    # The likelihood drop after re-seeding is not mistaken for convergence.
    assert model.n_iter_ > 3 and model.converged_
    assert model.n_empty_state_events_ >= 1
    assert np.all(np.abs(model.params_.means) < 100)  # moved back into the data
    assert np.all(model.predict_proba(X, LENGTHS).sum(0) > 0)


def test_reseeding_keeps_the_structural_zeros_of_a_left_right_model():
    """A left-right init (start [1, 0, 0], upper-bidiagonal transitions) whose last
    state explains nothing: re-seeding it must not reopen the exact zeros (no start
    in state 2, no backward transitions, no 0 -> 2 skip)."""
    true = _planted("full", K=2, d=2, seed=5)
    X, _ = _data(true, seed=5)
    trans = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    init = HMMParams(
        start_prob=[1.0, 0.0, 0.0],
        trans_mat=trans,
        means=np.vstack([true.means, [1e3, 1e3]]),  # state 2 explains nothing
        covars=np.stack([np.eye(2)] * 3),
    )
    model = GaussianHMM(3, "full", n_iter=30, tol=1e-4, init=init)
    with pytest.warns(EmptyStateWarning, match=r"state 2 of K=3 is empty"):
        model.fit(X, LENGTHS)
    assert model.n_empty_state_events_ >= 1
    zeros = trans == 0
    np.testing.assert_array_equal(model.params_.trans_mat[zeros], 0.0)
    np.testing.assert_array_equal(model.params_.start_prob[1:], 0.0)
    np.testing.assert_allclose(model.params_.trans_mat.sum(1), 1.0, atol=1e-12)
    # The re-seeded state can be entered again through the allowed 1 -> 2 transition.
    assert model.params_.trans_mat[1, 2] > 0
    assert np.all(np.isfinite(model.predict_proba(X, LENGTHS)))


def test_no_warning_on_well_posed_fit():
    true = _planted("diag", K=2, d=2, seed=6, sep=4.0)
    X, _ = _data(true, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianHMM(2, "diag", n_iter=20, random_state=0).fit(X, LENGTHS)


def test_covariances_stay_positive_definite_with_duplicated_points():
    # Three distinct points repeated: per-state scatter is singular without the floor.
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 20, axis=0)
    model = GaussianHMM(3, "full", n_iter=10, min_covar=1e-3, random_state=0).fit(X, [30, 30])
    for cov in model.params_.covars:
        assert np.linalg.eigvalsh(cov).min() >= 1e-3 - 1e-12


def test_information_criteria_hand_checked():
    true = _planted("full", K=3, d=3, seed=7)
    X, _ = _data(true, seed=7)
    model = GaussianHMM.from_params(true)
    ll = model.score(X, LENGTHS)
    n = sum(LENGTHS)
    p_full = 2 + 6 + 9 + 3 * 6  # (K-1) + K(K-1) + K d + K d(d+1)/2
    assert model.n_parameters() == p_full == 35
    assert model.bic(X, LENGTHS) == pytest.approx(-2 * ll + 35 * np.log(n), rel=1e-12)
    assert model.aic(X, LENGTHS) == pytest.approx(-2 * ll + 70, rel=1e-12)
    diag = GaussianHMM.from_params(_planted("diag", K=3, d=3, seed=7))
    assert diag.n_parameters() == 2 + 6 + 9 + 9
    np.testing.assert_allclose(model.score_sequences(X, LENGTHS).sum(), ll, rtol=1e-12)
    assert model.score_sequences(X, LENGTHS).shape == (4,)
    with pytest.warns(DeprecationWarning, match="score_sequences"):
        np.testing.assert_array_equal(model.score_samples(X, LENGTHS), model.score_sequences(X, LENGTHS))


def test_restarts_are_reproducible_and_keep_the_best():
    true = _planted("full", K=3, d=2, seed=8, sep=1.0)
    X, _ = _data(true, seed=8)
    kw = dict(n_iter=30, n_restarts=4, random_state=123, init="random")
    a = GaussianHMM(3, **kw).fit(X, LENGTHS)
    b = GaussianHMM(3, **kw).fit(X, LENGTHS)
    assert a.restart_log_likelihoods_ == b.restart_log_likelihoods_
    assert a.params_.allclose(b.params_, rtol=0)
    assert a.log_likelihood_ == max(a.restart_log_likelihoods_)
    assert a.restart_log_likelihoods_[a.best_restart_] == a.log_likelihood_
    assert len(set(a.restart_log_likelihoods_)) > 1  # restarts really differ


def test_converged_flag_and_history():
    true = _planted("diag", K=2, d=2, seed=9, sep=5.0)
    X, _ = _data(true, seed=9)
    m = GaussianHMM(2, "diag", n_iter=200, tol=1e-6, random_state=0).fit(X, LENGTHS)
    assert m.converged_ and m.n_iter_ == len(m.history_) < 200
    assert m.history_[-1] - m.history_[-2] < 1e-6
    m2 = GaussianHMM(2, "diag", n_iter=2, tol=-np.inf, random_state=0).fit(X, LENGTHS)
    assert not m2.converged_ and m2.n_iter_ == 2


def test_sample_follows_the_model():
    true = _planted("full", K=2, d=2, seed=10)
    X, states = GaussianHMM.from_params(true).sample(20000, random_state=0)
    assert X.shape == (20000, 2) and states.dtype == np.int64
    counts = np.zeros((2, 2))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), true.trans_mat, atol=0.02)
    for k in range(2):
        np.testing.assert_allclose(X[states == k].mean(0), true.means[k], atol=0.05)
        np.testing.assert_allclose(np.cov(X[states == k].T), true.covars[k], atol=0.08)


def test_saved_params_rebuild_the_same_model(tmp_path):
    true = _planted("full", K=3, d=2, seed=11)
    X, _ = _data(true, seed=11)
    fitted = GaussianHMM(3, n_iter=10, random_state=0, feature_names=["x", "y"]).fit(X, LENGTHS)
    assert fitted.params_.feature_names == ["x", "y"]
    loaded = GaussianHMM.from_params(HMMParams.load(fitted.params_.save(tmp_path / "m.json")))
    np.testing.assert_array_equal(loaded.predict(X, LENGTHS), fitted.predict(X, LENGTHS))
    assert loaded.score(X, LENGTHS) == fitted.score(X, LENGTHS)


@pytest.mark.parametrize(
    "X,lengths,kwargs,exc,match",
    [
        (np.zeros(10), None, {}, ValueError, r"X must be 2-D"),
        (np.full((10, 2), np.nan), None, {}, ValueError, r"X must be finite; X\[0, 0\] = nan"),
        (np.zeros((10, 2)), [4, 4], {}, ValueError, "lengths sum to 8 but X has 10 rows"),
        (np.zeros((10, 2)), [10, 0], {}, ValueError, "lengths must be positive"),
        (np.zeros((4, 2)), None, {"n_states": 5}, ModelSizeError,
         "cannot fit K=5 states to 4 checkpoints"),
        (np.zeros((4, 2)), None, {"n_states": 0}, ModelSizeError, "n_states must be at least 1"),
        (np.zeros((4, 2)), None, {"init": "spectral"}, ValueError, "init must be 'kmeans', 'random'"),
        (np.zeros((4, 2)), None, {"covariance_type": "tied"}, ValueError, "covariance_type must be one of"),
        (np.zeros((4, 2)), None, {"min_covar": -1.0}, ValueError, "min_covar must be"),
        (np.zeros((4, 2)), None, {"feature_names": ["a"]}, ValueError, "feature_names has 1 names but X has 2"),
    ],
)
def test_bad_inputs_raise(X, lengths, kwargs, exc, match):
    kw = {"n_states": 2, **kwargs}
    with pytest.raises(exc, match=match):
        GaussianHMM(**kw).fit(X, lengths)


def test_misuse_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        GaussianHMM(2).predict(np.zeros((3, 2)))
    p = _planted("full", K=2, d=2)
    with pytest.raises(ValueError, match="n_restarts must be 1 when init is an HMMParams"):
        GaussianHMM(2, init=p, n_restarts=2).fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="init has 2 states but n_states=3"):
        GaussianHMM(3, init=p).fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted with 2"):
        GaussianHMM.from_params(p).score(np.zeros((5, 3)))
    assert issubclass(ModelSizeError, ValueError)
