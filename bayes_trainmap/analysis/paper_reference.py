"""The numbers reported by Hu et al. (TMLR 2023), to set beside a reproduction.

One place for the paper's Tables 1, 2 and 4: ``scripts/reproduce_paper.py`` and
``notebooks/03_paper_tables.py`` both read them from here.

``PAPER[setting]`` holds, for each of the paper's six settings,

* ``"table1"``: ``r_squared``, ``p_value``, ``dissimilarity``, ``forking`` (the keys of
  :attr:`bayes_trainmap.analysis.Analysis.table1`); a p-value the paper reports only as
  an upper bound is kept as the string it prints (``"<0.001"``);
* ``"table2"``: ``None`` where the paper has no coefficient table (linear maps), else
  ``coefficients`` (one per state, in the paper's state order) and ``detours`` (the
  states the paper names as detours);
* ``"table4"``: ``(components, BIC)`` of the selected model for ``kmeans``, ``hmm1`` and
  ``hmm`` (:func:`table4_key` maps the baselines' model names to these keys).
"""

from __future__ import annotations

import copy
from typing import Any

from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["DEMO_SETTINGS", "PAPER", "ROW_NAMES", "TABLE4_KEYS", "paper_reference", "paper_setting_of_demo", "table4_key"]

PAPER: dict[str, dict[str, Any]] = {
    "modular_addition": {
        "table1": {"r_squared": 0.977, "p_value": "<0.001", "dissimilarity": 0.496, "forking": True},
        "table2": {"coefficients": [-0.15, 0.98, 1.19, -0.20, 0.18, 0.95], "detours": [2, 5]},
        "table4": {"kmeans": (16, 103700), "hmm1": (15, -14070), "hmm": (6, -5724)},
    },
    "modular_addition_stabilized": {
        "table1": {"r_squared": 0.514, "p_value": "<0.001", "dissimilarity": 0.038, "forking": False},
        "table2": None,
        "table4": {"kmeans": (10, 3864), "hmm1": (5, 166.0), "hmm": (3, 759.9)},
    },
    "cifar100": {
        "table1": {"r_squared": 0.094, "p_value": 0.469, "dissimilarity": 0.028, "forking": False},
        "table2": None,
        "table4": {"kmeans": (16, 19360), "hmm1": (10, -1851), "hmm": (5, -124400)},
    },
    "cifar100_destabilized": {
        "table1": {"r_squared": 0.905, "p_value": "<0.001", "dissimilarity": 0.806, "forking": True},
        "table2": {"coefficients": [0.66, 1.20, 0.28, 1.91, 1.12], "detours": [1]},
        "table4": {"kmeans": (16, 23210), "hmm1": (15, -1432), "hmm": (5, -59080)},
    },
    "sparse_parities": {
        "table1": {"r_squared": 0.961, "p_value": "<0.001", "dissimilarity": 0.183, "forking": True},
        "table2": {"coefficients": [0.77, 0.41, 0.98, -0.23, 0.58, 1.13], "detours": [0]},
        "table4": {"kmeans": (16, 23660), "hmm1": (13, -2965), "hmm": (6, -49530)},
    },
    "mnist": {
        "table1": {"r_squared": 0.049, "p_value": 0.611, "dissimilarity": 0.063, "forking": False},
        "table2": None,
        "table4": {"kmeans": (16, 3244), "hmm1": (11, -1064), "hmm": (6, -101200)},
    },
}

#: The row name of each setting in the paper's Table 1.
ROW_NAMES: dict[str, str] = {
    "modular_addition": "Modular addition",
    "modular_addition_stabilized": "Modular addition, stabilized",
    "cifar100": "CIFAR-100",
    "cifar100_destabilized": "CIFAR-100, destabilized",
    "sparse_parities": "Sparse parities",
    "mnist": "MNIST",
}

#: The paper setting each shipped demo set stands for. ``sparse_parities`` is the paper's
#: task; ``digits`` (scikit-learn 8x8 digits) and ``modular_addition`` (the task's reduced
#: variant) are smaller CPU stand-ins, so their comparison is only indicative.
DEMO_SETTINGS: dict[str, str] = {
    "sparse_parities": "sparse_parities",
    "sparse_parities_h256": "sparse_parities",
    "digits": "mnist",
    "modular_addition": "modular_addition",
}

#: Table-4 key of each baseline model name (``bayes_trainmap.analysis.baselines``).
TABLE4_KEYS: dict[str, str] = {"k-means": "kmeans", "HMM-1": "hmm1", "HMM": "hmm"}


def paper_reference(setting: str) -> dict[str, Any]:
    """The paper's numbers for one setting (a copy; see the module docstring for its keys).

    Raises
    ------
    BayesTrainmapError
        If ``setting`` is not one of the paper's settings (``PAPER``).
    """
    if setting not in PAPER:
        raise BayesTrainmapError(f"unknown paper setting {setting!r}; expected one of {sorted(PAPER)}")
    return copy.deepcopy(PAPER[setting])


def paper_setting_of_demo(demo: str) -> str | None:
    """The paper setting a shipped demo set stands for, or ``None`` (e.g. ``"simulated"``)."""
    return DEMO_SETTINGS.get(demo)


def table4_key(model: str) -> str:
    """The ``PAPER[...]["table4"]`` key of a baseline model name (``"k-means"`` -> ``"kmeans"``).

    Raises
    ------
    BayesTrainmapError
        If ``model`` is not ``"k-means"``, ``"HMM-1"`` or ``"HMM"``.
    """
    if model not in TABLE4_KEYS:
        raise BayesTrainmapError(f"unknown baseline model {model!r}; expected one of {sorted(TABLE4_KEYS)}")
    return TABLE4_KEYS[model]
