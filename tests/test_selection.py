"""Model selection by held-out BIC."""

from __future__ import annotations

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM as ReferenceHMM

from bayes_trainmap.data import split_runs, zscore_per_run
from bayes_trainmap.core.errors import ModelSelectionError
from bayes_trainmap.fitting.selection import (
    check_supported,
    max_supported_states,
    n_free_parameters,
    parse_states,
    restart_seed,
    select_n_states,
)
from bayes_trainmap.inference.params import HMMParams


def _split_arrays(ts, seed=0):
    X, lengths = ts.feature_matrix()
    Z, _ = zscore_per_run(X, lengths)
    train, _ = split_runs(ts.run_ids, seed=seed)
    is_train = np.isin(ts.run_ids, train)
    rows = np.repeat(is_train, lengths)
    return Z[rows], lengths[is_train], Z[~rows], lengths[~is_train]


@pytest.fixture(scope="module")
def planted_arrays(planted_set):
    return _split_arrays(planted_set)


def _reference_score(params: HMMParams, X, lengths) -> float:
    """Held-out log-likelihood from hmmlearn with our fitted parameters."""
    ref = ReferenceHMM(n_components=params.n_states, covariance_type=params.covariance_type)
    ref.n_features = params.n_features
    ref.startprob_ = params.start_prob
    ref.transmat_ = params.trans_mat
    ref.means_ = params.means
    ref.covars_ = params.covars
    return float(ref.score(X, lengths))


def test_parameter_count_by_hand():
    # K=3, d=2: 2 start + 6 transitions + 6 means + 3*3 (full) or 3*2 (diag) covariance entries
    assert n_free_parameters(3, 2, "full") == 2 + 6 + 6 + 9
    assert n_free_parameters(3, 2, "diag") == 2 + 6 + 6 + 6
    assert n_free_parameters(1, 14, "full") == 14 + 105
    rng = np.random.default_rng(0)
    for cov in ("full", "diag"):
        k, d = 4, 3
        covars = np.stack([np.eye(d)] * k) if cov == "full" else np.ones((k, d))
        params = HMMParams(
            start_prob=np.full(k, 1 / k),
            trans_mat=np.full((k, k), 1 / k),
            means=rng.normal(size=(k, d)),
            covars=covars,
            covariance_type=cov,
        )
        assert n_free_parameters(k, d, cov) == params.n_free_parameters()


def test_bic_table_matches_hand_computation_and_reference_likelihood(planted_arrays):
    X_train, len_train, X_val, len_val = planted_arrays
    result = select_n_states(
        X_train, len_train, X_val, len_val, states=[2, 3], n_restarts=2, random_state=7, progress=False
    )
    table = result.table
    assert list(table["n_states"]) == [2, 2, 3, 3] and list(table["restart"]) == [0, 1, 0, 1]
    n_val = X_val.shape[0]
    assert result.n_val == n_val
    for row in table.itertuples():
        p = n_free_parameters(row.n_states, X_train.shape[1], "full")
        assert row.n_parameters == p
        assert row.bic == pytest.approx(-2.0 * row.val_log_likelihood + p * np.log(n_val), rel=1e-12)
        assert row.aic == pytest.approx(-2.0 * row.val_log_likelihood + 2.0 * p, rel=1e-12)
    # the curve keeps, per K, the restart with the highest *training* log-likelihood
    for row in result.curve.itertuples():
        rows = table[table["n_states"] == row.n_states]
        best = rows.loc[rows["train_log_likelihood"].idxmax()]
        assert row.restart == best["restart"] and row.bic == best["bic"]
        model = result.models[row.n_states]
        assert _reference_score(model.params_, X_val, len_val) == pytest.approx(row.val_log_likelihood, rel=1e-9)
    assert result.best_n_states == int(result.curve.loc[result.curve["bic"].idxmin(), "n_states"])
    assert result.best_model is result.models[result.best_n_states]


def test_planted_number_of_states_is_recovered(planted_arrays):
    result = select_n_states(*planted_arrays, states=range(1, 6), n_restarts=2, random_state=0, progress=False)
    assert result.best_n_states == 3
    bic = result.curve.set_index("n_states")["bic"]
    assert bic[3] < bic[2] < bic[1]  # under-fitting is penalised by the likelihood
    assert bic[3] < bic[5]  # over-fitting by the parameter count


def test_restart_seeds_are_reproducible(planted_arrays, capsys):
    seeds = {(k, r): restart_seed(11, k, r) for k in range(1, 9) for r in range(5)}
    assert len(set(seeds.values())) == len(seeds)
    assert seeds == {(k, r): restart_seed(11, k, r) for k in range(1, 9) for r in range(5)}
    assert restart_seed(12, 3, 0) != seeds[(3, 0)]
    first = select_n_states(*planted_arrays, states="1-2", n_restarts=2, random_state=11, progress=True)
    assert "BIC sweep" in capsys.readouterr().err  # tqdm bar on stderr
    second = select_n_states(*planted_arrays, states="1-2", n_restarts=2, random_state=11, progress=False)
    assert list(first.table["seed"]) == [seeds[(k, r)] for k in (1, 2) for r in (0, 1)]
    np.testing.assert_array_equal(
        first.table[["train_log_likelihood", "val_log_likelihood", "bic"]].to_numpy(),
        second.table[["train_log_likelihood", "val_log_likelihood", "bic"]].to_numpy(),
    )


def test_too_many_states_for_the_data():
    rng = np.random.default_rng(0)
    X_train, X_val = rng.normal(size=(20, 3)), rng.normal(size=(10, 3))
    expected = r"K=7 states: the training runs have 20 checkpoints x 3 features = 60 values.*111 free parameters"
    with pytest.raises(ModelSelectionError, match=expected):
        select_n_states(X_train, [10, 10], X_val, [10], states=[1, 7], progress=False)
    # p(K) = (K-1) + K(K-1) + 3K + 6K: p(4) = 51 <= 60 values < p(5) = 69
    assert max_supported_states(20, 3, "full") == 4
    check_supported(max_supported_states(20, 3, "full"), 20, 3)
    with pytest.raises(ModelSelectionError):
        check_supported(max_supported_states(20, 3, "full") + 1, 20, 3)
    with pytest.raises(ModelSelectionError, match="K=3 states"):
        check_supported(3, 2, 50, "diag")  # more states than checkpoints


@pytest.mark.parametrize(
    "spec, expected",
    [("auto", None), ("3", range(3, 4)), (4, range(4, 5)), ("2-5", range(2, 6)), (" 2 - 5 ", range(2, 6)),
     ([3, 1, 2], range(1, 4)), (range(1, 9), range(1, 9))],
)
def test_parse_states(spec, expected):
    assert parse_states(spec) == expected


@pytest.mark.parametrize("spec", ["0", "5-2", "x", "1-", "0-3", [], [1, 3], "-1"])
def test_parse_states_rejects(spec):
    with pytest.raises(ModelSelectionError):
        parse_states(spec)
