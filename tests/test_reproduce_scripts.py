"""The reproduction driver (scripts/reproduce_paper.py): commands, settings, layout work-around."""

from __future__ import annotations

import importlib.util
import itertools
import random
import subprocess
import sys
from pathlib import Path

import networkx as nx
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
    from tasks.registry import get_task

    for name, setting in driver.SETTINGS.items():
        task = get_task(setting["task"], variant=setting["variant"])
        assert task.config, name


@pytest.mark.parametrize("name", ["cifar100_destabilized", "modular_addition_reduced_stabilized"])
def test_dry_run_prints_collect_fit_and_report_commands(name, tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), name, "--dry-run", "--runs", str(tmp_path / "r"), "--fits", str(tmp_path / "f")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    lines = [line for line in out.splitlines() if line.startswith("+ ")]
    assert len(lines) == 5  # collect, then fit + report for mle and svi
    assert "collect" in lines[0] and f"--out {tmp_path / 'r' / name}" in lines[0]
    assert "--mode mle" in lines[1] and "--mode svi" in lines[3]
    if name == "cifar100_destabilized":
        assert "--variant destabilized" in lines[0] and "--task cifar100_destabilized" in lines[1]
    else:
        assert "layer_norm=true" in lines[0] and "--variant reduced" in lines[0]
    assert not (tmp_path / "f").exists()  # a dry run writes nothing


def test_back_edges_break_every_cycle_and_only_cycles(driver):
    # two separate 2-cycles reached from the initial state: the case the layout missed
    edges = [(3, 1), (1, 2), (2, 1), (2, 0), (3, 4), (4, 3)]
    back = driver._back_edges(edges, [3])
    assert back == {(2, 1), (4, 3)}
    assert nx.is_directed_acyclic_graph(nx.DiGraph([e for e in edges if e not in back]))
    # brute force over small random graphs: the rest is a DAG, and a DAG loses nothing
    rng = random.Random(0)
    pairs = list(itertools.permutations(range(5), 2))
    for _ in range(200):
        edges = rng.sample(pairs, rng.randint(1, 10))
        back = driver._back_edges(edges, [0])
        assert nx.is_directed_acyclic_graph(nx.DiGraph([e for e in edges if e not in back]))
        if nx.is_directed_acyclic_graph(nx.DiGraph(edges)):
            assert back == set()


def test_layout_work_around_draws_a_map_with_two_two_cycles(driver):
    from bayes_trainmap import plots

    states, edges = [0, 1, 2, 3, 4], [(3, 1), (1, 2), (2, 1), (2, 0), (3, 4), (4, 3)]
    with driver._safe_map_layout():
        layout = plots.map_layout(states, edges, [3])
    assert set(layout.positions) == set(states)
    assert len(layout.back_edges) >= 2  # one edge of each 2-cycle is drawn curved
    assert plots.map_layout is not None and plots.map_layout.__name__ == "map_layout"  # restored
