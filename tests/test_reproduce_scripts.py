"""The reproduction driver (scripts/reproduce_paper.py): commands and settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce_paper.py"
PAPER_SETTINGS = [
    "modular_addition",
    "modular_addition_stabilized",
    "mnist",
    "cifar100",
    "cifar100_destabilized",
    "sparse_parities",
]


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, cwd=REPO)


def _printed_commands(*args: str) -> list[str]:
    """The ``+ command`` lines a successful run of the driver prints."""
    done = _run_script(*args)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("+ ")]


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("reproduce_paper", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_paper_setting_has_a_wrapper_and_the_papers_numbers(driver):
    for name in PAPER_SETTINGS:
        assert (REPO / "scripts" / f"reproduce_{name}.sh").is_file()
        paper = driver.PAPER[driver.SETTINGS[name]["paper"]]
        assert set(paper["table4"]) == {"kmeans", "hmm1", "hmm"}
        if paper["table2"]:
            assert paper["table4"]["hmm"][0] == len(paper["table2"]["coefficients"])


def test_settings_resolve_to_real_tasks_and_variants(driver):
    from bayes_trainmap.tasks.registry import get_task

    for name, setting in driver.SETTINGS.items():
        task = get_task(setting["task"], variant=setting["variant"])
        assert task.config, name


@pytest.mark.parametrize("name", ["cifar100_destabilized", "modular_addition_reduced_stabilized"])
def test_dry_run_prints_collect_fit_and_report_commands(name, tmp_path):
    lines = _printed_commands(name, "--dry-run", "--runs", str(tmp_path / "r"), "--fits", str(tmp_path / "f"))
    assert len(lines) == 3  # collect, then fit (with its report) for mle and svi
    assert "collect" in lines[0] and f"--out {tmp_path / 'r' / name}" in lines[0]
    assert "--mode mle" in lines[1] and "--mode svi" in lines[2]
    assert all(f"--out {tmp_path / 'f' / name}-" in line for line in lines[1:])
    if name == "cifar100_destabilized":
        assert "--variant destabilized" in lines[0] and "--task cifar100_destabilized" in lines[1]
    else:
        assert "layer_norm=true" in lines[0] and "--variant reduced" in lines[0]
    assert not (tmp_path / "f").exists()  # a dry run writes nothing


def test_demo_fits_the_shipped_set_without_collecting(driver):
    for name, setting in driver.SETTINGS.items():
        if "demo" in setting:
            assert (driver.REPO / setting["demo"] / "collection.json").is_file(), name
    lines = _printed_commands("digits", "--demo", "--dry-run", "--modes", "mle")
    assert len(lines) == 1 and "bayes_trainmap/demo_data/digits" in lines[0] and " fit " in lines[0]


def test_demo_is_refused_where_no_set_is_shipped():
    done = _run_script("cifar100", "--demo", "--dry-run")
    assert done.returncode == 2 and "no demo set is shipped for cifar100" in done.stderr
