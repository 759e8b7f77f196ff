"""The settings every notebook in this folder starts with.

Imported by the first code cell of ``01_walkthrough.py``, ``02_bayesian_diagnostics.py``
and ``03_paper_tables.py`` (Jupyter and ``python notebooks/NAME.py`` both put this
folder on ``sys.path``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import matplotlib
import pandas as pd

#: ``BTM_NOTEBOOK_FAST=1`` (set by ``tests/test_notebooks.py``) asks for small budgets.
FAST_ENV = "BTM_NOTEBOOK_FAST"


def setup_notebook() -> bool:
    """Apply the display and logging settings of the notebooks; return the fast switch.

    Outside a Jupyter kernel (``python notebooks/01_walkthrough.py``) figures go to the
    non-interactive Agg backend and are never shown.

    Returns
    -------
    bool
        Whether ``BTM_NOTEBOOK_FAST=1`` is set, in which case every notebook shrinks its
        restarts, optimisation steps and posterior draws.
    """
    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
        matplotlib.rcParams["figure.max_open_warning"] = 0  # a script keeps every figure open
    matplotlib.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.max_colwidth", 70)
    pd.set_option("display.precision", 3)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Progress bars are off in every fit; silence tqdm's notice about missing ipywidgets.
    warnings.filterwarnings("ignore", message="IProgress not found")
    return os.environ.get(FAST_ENV) == "1"
