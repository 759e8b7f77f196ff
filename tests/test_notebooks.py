"""The notebooks in ``notebooks/``: the committed ``.ipynb`` are their ``.py`` sources, and they run.

The sources are jupytext percent-format scripts (``notebooks/NN_*.py``);
``scripts/build_notebooks.sh`` writes the ``.ipynb`` from them. Each notebook is built
from its source here and executed top to bottom in a fresh ``python3`` kernel (nbclient),
in a temporary directory, with ``BTM_NOTEBOOK_FAST=1`` so that restarts, SVI steps and
draws are small; any cell error fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SETUP_MODULE = NOTEBOOK_DIR / "_setup.py"  # imported by the first cell of every notebook
FAST_ENV = "BTM_NOTEBOOK_FAST"
CELL_TIMEOUT_S = 600
NAMES = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_its_source_and_is_listed():
    assert NAMES == ["01_walkthrough", "02_bayesian_diagnostics", "03_paper_tables"]
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for name in NAMES:
        assert f"{name}.ipynb" in readme and f"{name}.py" in readme


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_matches_its_source(name):
    """The committed cells are exactly what jupytext makes of the ``.py`` source, without outputs."""
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    committed = nbformat.read(path, as_version=4)
    nbformat.validate(committed)
    source = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    assert _cells(committed) == _cells(source), f"{path.name} differs from {name}.py; run scripts/build_notebooks.sh"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), "committed outputs"
    assert committed.metadata["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < 300_000


def test_setup_outside_a_kernel_uses_a_non_interactive_backend():
    """``python notebooks/NN_*.py`` draws into Agg, and the fast switch follows the environment."""
    code = (
        "import matplotlib, _setup; fast = _setup.setup_notebook(); "
        "print(matplotlib.get_backend().lower(), fast, matplotlib.rcParams['figure.dpi'])"
    )
    for value, expected in (("1", "True"), ("0", "False")):
        env = {**os.environ, FAST_ENV: value, "MPLBACKEND": "", "PYTHONPATH": str(NOTEBOOK_DIR)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert done.stdout.split() == ["agg", expected, "80.0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")  # run from the source, never from stale outputs
    shutil.copy(SETUP_MODULE, tmp_path / SETUP_MODULE.name)
    monkeypatch.setenv(FAST_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernel imports this checkout's package, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook drew no figure"
