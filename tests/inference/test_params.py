"""HMMParams: validation, relabelling, parameter counts and exact round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayes_trainmap.inference.params import FORMAT_VERSION, HMMParams


def _params(covariance_type="full", K=3, d=2, seed=0):
    rng = np.random.default_rng(seed)
    if covariance_type == "full":
        A = rng.normal(size=(K, d, d))
        covars = A @ A.transpose(0, 2, 1) + np.eye(d)
    else:
        covars = rng.uniform(0.5, 2.0, size=(K, d))
    return HMMParams(
        start_prob=rng.dirichlet(np.ones(K)),
        trans_mat=rng.dirichlet(np.ones(K), size=K),
        means=rng.normal(size=(K, d)),
        covars=covars,
        covariance_type=covariance_type,
        feature_names=[f"f{i}" for i in range(d)],
        normalization={"method": "zscore_per_run", "window": 1000},
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_round_trip_is_exact(tmp_path, covariance_type, suffix):
    p = _params(covariance_type)
    # Values that are not short decimals exercise the float repr round trip.
    p.means[0, 0] = np.nextafter(1 / 3, 1.0)
    path = p.save(tmp_path / f"params{suffix}")
    q = HMMParams.load(path)
    for name in ("start_prob", "trans_mat", "means", "covars"):
        assert np.array_equal(getattr(p, name), getattr(q, name)), name
    assert q.covariance_type == covariance_type
    assert q.feature_names == ["f0", "f1"]
    assert q.normalization == {"method": "zscore_per_run", "window": 1000}
    assert not any(f.name.startswith(".") for f in tmp_path.iterdir())  # temp file gone


def test_json_layout_is_plain_lists_with_version(tmp_path):
    path = _params().save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert isinstance(data["covars"][0][0][0], float)
    data["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        HMMParams.from_dict(data)


def test_npz_is_loaded_without_pickle(tmp_path):
    p = _params()
    path = tmp_path / "p.npz"
    arrays = {n: getattr(p, n) for n in ("start_prob", "trans_mat", "means", "covars")}
    np.savez(path, meta=np.array([{"a": 1}], dtype=object), **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):  # object arrays need pickle: refused
        HMMParams.load(path)


def test_bad_suffix_raises(tmp_path):
    with pytest.raises(ValueError, match=r"\.json or \.npz"):
        _params().save(tmp_path / "p.pkl")


def test_n_free_parameters_hand_counted():
    # K=3, d=2 full: start 2 + trans 6 + means 6 + covars 3*3 = 23
    assert _params("full", K=3, d=2).n_free_parameters() == 23
    # diag: 2 + 6 + 6 + 6 = 20
    assert _params("diag", K=3, d=2).n_free_parameters() == 20
    # K=6, d=14 full: 5 + 30 + 84 + 6*105 = 749
    assert _params("full", K=6, d=14).n_free_parameters() == 749
    assert _params("full", K=1, d=1).n_free_parameters() == 2


def test_full_covars_of_diag():
    p = _params("diag")
    full = p.full_covars()
    assert full.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.diagonal(full, axis1=1, axis2=2), p.covars)
    assert full[0, 0, 1] == 0.0


def test_permute_relabels_every_field():
    p = _params("full")
    order = [2, 0, 1]
    q = p.permute(order)
    np.testing.assert_array_equal(q.start_prob, p.start_prob[order])
    np.testing.assert_array_equal(q.means, p.means[order])
    np.testing.assert_array_equal(q.covars, p.covars[order])
    for i in range(3):
        for j in range(3):
            assert q.trans_mat[i, j] == p.trans_mat[order[i], order[j]]
    assert q.permute(np.argsort(order)).allclose(p, rtol=0)
    with pytest.raises(ValueError, match="permutation of range"):
        p.permute([0, 0, 1])


def _kwargs(**change):
    p = _params("full")
    kw = dict(
        start_prob=p.start_prob, trans_mat=p.trans_mat, means=p.means, covars=p.covars,
        covariance_type="full",
    )
    kw.update(change)
    return kw


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(start_prob=np.array([0.5, 0.5, 0.5])), "start_prob must sum to 1"),
        (dict(start_prob=np.array([1.2, -0.2, 0.0])), r"start_prob must be non-negative"),
        (dict(trans_mat=np.full((3, 3), 0.3)), "row 0 of trans_mat must sum to 1"),
        (dict(trans_mat=np.full((2, 2), 0.5)), r"trans_mat must have shape \(3, 3\)"),
        (dict(start_prob=np.ones(2) / 2), r"start_prob must have shape \(3,\)"),
        (dict(covars=np.ones((3, 2))), r"covars must have shape \(3, 2, 2\)"),
        (dict(covars=np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]], np.eye(2)])),
         "state 1 is not positive definite"),
        (dict(covars=np.array([np.eye(2), [[1.0, 0.5], [0.0, 1.0]], np.eye(2)])),
         "state 1 is not symmetric"),
        (dict(covars=np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), covariance_type="diag"),
         "state 1 must be positive"),
        (dict(covariance_type="tied"), "covariance_type must be one of"),
        (dict(means=np.full((3, 2), np.nan)), "means contains NaN"),
        (dict(feature_names=["a"]), "feature_names has 1 names, expected 2"),
    ],
)
def test_validation_errors(change, match):
    with pytest.raises(ValueError, match=match):
        HMMParams(**_kwargs(**change))


def test_default_feature_names_and_copies():
    kw = _kwargs()
    p = HMMParams(**kw)
    assert p.feature_names == ["feature_0", "feature_1"]
    kw["means"][0, 0] = 123.0
    assert p.means[0, 0] != 123.0  # inputs are copied
    assert p.n_states == 3 and p.n_features == 2
