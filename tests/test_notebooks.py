"""The notebooks in ``notebooks/``: in sync with their generator, and they run.

Each notebook is executed top to bottom in a fresh ``python3`` kernel (nbclient), from
a temporary copy, with ``BTM_NOTEBOOK_FAST=1`` so that restarts, SVI steps and draws
are small; any cell error fails the test.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT_S = 600


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _load_builder()
NAMES = list(BUILDER.NOTEBOOKS)


def test_every_notebook_is_generated_and_listed():
    on_disk = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert on_disk == sorted(NAMES)
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for name in NAMES:
        assert f"{name}.ipynb" in readme


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_matches_generator(name):
    """The committed cells are exactly what scripts/build_notebooks.py writes (no hand edits)."""
    committed = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(committed)
    generated = BUILDER.build_notebook(name)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in generated.cells]
    # Outputs, when committed, come from one full run of these very cells.
    counts = [c.get("execution_count") for c in committed.cells if c.cell_type == "code"]
    assert counts == [None] * len(counts) or counts == list(range(1, len(counts) + 1))
    if counts and counts[0] is not None:
        assert committed.metadata["bayes_trainmap"] == {"executed_fast": False}, "outputs of a --fast run"
    assert (NOTEBOOK_DIR / f"{name}.ipynb").stat().st_size < 1_500_000


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    path = tmp_path / f"{name}.ipynb"
    shutil.copy(NOTEBOOK_DIR / f"{name}.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # run from the sources, never from stale outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv(BUILDER.FAST_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook drew no figure"
