"""The paper's reference numbers: consistent with the paper's own definitions, and reachable from every caller."""

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.analysis import paper_reference as ref
from bayes_trainmap.analysis.baselines import (
    baselines_table,
    hmm1_selection,
    hmm_selection_from_curve,
    kmeans_selection,
)
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.data import SIMULATED_DEMO, available_demos

TABLE1_KEYS = {"r_squared", "p_value", "dissimilarity", "forking"}  # Analysis.table1's keys


@pytest.mark.parametrize("setting", sorted(ref.PAPER))
def test_each_setting_obeys_the_papers_definitions(setting):
    paper = ref.PAPER[setting]
    assert set(paper["table1"]) == TABLE1_KEYS
    t1 = paper["table1"]
    assert 0 <= t1["r_squared"] <= 1 and t1["dissimilarity"] >= 0
    assert t1["p_value"] == "<0.001" or 0 < t1["p_value"] <= 1
    assert set(paper["table4"]) == set(ref.TABLE4_KEYS.values())
    # Table 2 exists exactly for the forking maps; a detour has a positive coefficient (section 3.4).
    assert (paper["table2"] is not None) == t1["forking"]
    if paper["table2"]:
        coefficients = paper["table2"]["coefficients"]
        assert len(coefficients) == paper["table4"]["hmm"][0]  # one per state of the chosen HMM
        assert paper["table2"]["detours"] and all(coefficients[k] > 0 for k in paper["table2"]["detours"])
    assert setting in ref.ROW_NAMES


def test_every_shipped_demo_set_names_a_paper_setting():
    shipped = [name for name in available_demos() if name != SIMULATED_DEMO]
    assert sorted(ref.DEMO_SETTINGS) == sorted(shipped)
    assert all(ref.paper_setting_of_demo(name) in ref.PAPER for name in shipped)
    assert ref.paper_setting_of_demo(SIMULATED_DEMO) is None


def test_table4_keys_cover_the_models_the_baselines_name():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    lengths = np.array([30, 30])
    curve = pd.DataFrame({"n_states": [1, 2], "bic": [10.0, 5.0], "val_log_likelihood": [-5.0, -2.0]})
    selections = [
        kmeans_selection(X[:30], X[30:], [1, 2], n_init=1),
        hmm1_selection(X[:30, :1], lengths[:1], X[30:, :1], lengths[1:], [1, 2], n_restarts=1, n_iter=5),
        hmm_selection_from_curve(curve),
    ]
    models = list(baselines_table(selections)["model"])
    assert [ref.table4_key(m) for m in models] == ["kmeans", "hmm1", "hmm"]
    with pytest.raises(BayesTrainmapError, match="'GMM'"):
        ref.table4_key("GMM")


def test_paper_reference_returns_a_copy_and_names_an_unknown_setting():
    numbers = ref.paper_reference("sparse_parities")
    numbers["table2"]["coefficients"][0] = 99.0
    assert ref.PAPER["sparse_parities"]["table2"]["coefficients"][0] == 0.77
    with pytest.raises(BayesTrainmapError, match="'digits'"):
        ref.paper_reference("digits")
