"""The interactive map of report.html: self-contained SVG, table links, the glossary, and a headless-Chromium check."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bayes_trainmap.fitting import pipeline
from bayes_trainmap.report.html_map import inline_svg, map_data
from bayes_trainmap.report import write_report
from bayes_trainmap.core.schema import STATISTIC_GLOSSARY, STATISTIC_NAMES
from bayes_trainmap.data.simulate import simulate_training_runs

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    sim = simulate_training_runs(16, n_checkpoints=120, path_dwell=(20, 25, 20), delay=25, random_state=3)
    result = pipeline.fit(
        sim.trajectories, states=[5], n_restarts=1, n_iter=30, progress=False, outcome="eval_accuracy", threshold=0.9
    )
    out = tmp_path_factory.mktemp("fits") / "fit"
    result.save(out, report=False)
    write_report(out)
    return out


def test_inline_svg_has_no_outside_reference(fit_dir):
    svg = (fit_dir / "figures" / "training_map.svg").read_text()
    assert "http://" in svg  # matplotlib's namespaces and metadata ...
    inlined = inline_svg(svg)
    assert "http" not in inlined and "<!DOCTYPE" not in inlined and "<?xml" not in inlined  # ... are gone
    assert inlined.startswith("<svg") and inlined.endswith("</svg>")
    assert "*{" not in inlined  # matplotlib's global style would leak into the page


def test_every_state_and_edge_is_linked_to_its_table_row(fit_dir):
    report = json.loads((fit_dir / "report.json").read_text())
    text = (fit_dir / "report.html").read_text()
    data = map_data(report)
    visited = [s["state"] for s in report["states"] if s["n_runs"] > 0]
    svg_states = set(re.findall(r'<g id="tm-state-(\d+)"', text))
    svg_edges = re.findall(r'<g id="tm-edge-(e\d+)"', text)
    assert svg_states == {str(s) for s in visited}
    assert svg_edges == [f"e{i + 1}" for i in range(len(report["edges"]))]
    assert set(re.findall(r'<tr[^>]* data-state="(\d+)"', text)) == {str(s["state"]) for s in report["states"]}
    # The edge table's key column is the figure's key, row by row.
    rows = re.findall(r'<tr data-edge="(e\d+)"><td>(e\d+)</td><td class="text">(\d+) → (\d+)</td>', text)
    assert [(k, k2) for k, k2, *_ in rows] == [(k, k) for k in svg_edges]
    for key, _, a, b in rows:
        edge = next(e for e in report["edges"] if (e["source"], e["target"]) == (int(a), int(b)))
        assert data["edges"][key]["runs"] == edge["runs"]
    for s in report["states"]:
        assert data["states"][str(s["state"])]["runs"] == s["runs"]


def test_report_labels_are_column_names_and_the_glossary_covers_them(fit_dir):
    report = json.loads((fit_dir / "report.json").read_text())
    features = report["fit"]["features"]
    md = (fit_dir / "report.md").read_text()
    html = (fit_dir / "report.html").read_text()
    # Every feature named in an edge label or a state's top features is a data column.
    named = [f for e in report["edges"] for f in re.findall(r"(\w+) [↑↓→] \d", e["label"])]
    named += [f for s in report["states"] for f in s["top_features"]]
    assert named and set(named) <= set(features)
    for text in (md.split("## Feature glossary")[0], html.split('id="glossary"')[0]):  # all but the glossary
        for label in re.findall(r"(\w+) [↑↓→] \d+\.\d\d", text):
            assert label in features, label
        for old in ("lambda_max", "var(b)", "L1/L2", "var(lambda)", "mean(w)"):
            assert old not in text, old
    glossary = md.split("## Feature glossary", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+) \| ([^|]+) \|$", glossary, flags=re.M)
    assert [r[0] for r in rows[1:]] == features  # header row first
    for name, paper, meaning in rows[1:]:
        assert (paper.strip(), meaning.strip()) == STATISTIC_GLOSSARY[name]
    assert 'id="glossary"' in html and all(f"<td class=\"text\">{f}</td>" in html for f in features)
    assert set(STATISTIC_GLOSSARY) == set(STATISTIC_NAMES)


def _chromium(args, tmp_path):
    base = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_in_headless_chromium(fit_dir, tmp_path):
    from PIL import Image

    report = json.loads((fit_dir / "report.json").read_text())
    url = (fit_dir / "report.html").as_uri() + "#tm=edge:e1"
    dom = _chromium(["--window-size=1200,2400", "--dump-dom", url], tmp_path).stdout
    # The script ran: it counted the interactive items and selected edge e1 from the address.
    n_items = sum(s["n_runs"] > 0 for s in report["states"]) + len(report["edges"])
    assert re.search(rf'data-tm-ready="{n_items}"', dom)
    assert 'data-tm-selected="edge:e1"' in dom
    assert re.search(r'<tr data-edge="e1" class="tm-row-on">', dom)
    a, b = report["edges"][0]["source"], report["edges"][0]["target"]
    info = re.search(r'<div id="tm-info"[^>]*>(.*?)</div>\s*<script', dom, flags=re.S).group(1)
    assert f"Edge e1: {a} → {b}" in info and report["edges"][0]["runs"][0] in info
    # Map and tables are present and the map was laid out at a real size.
    assert "<h3>States</h3>" in dom and "<h3>Edges</h3>" in dom and '<svg role="img"' in dom
    x, y, w, h = (int(v) for v in re.search(r'data-tm-box="([\d,-]+)"', dom).group(1).split(","))
    assert w > 400 and h > 150
    def highlight_pixels(address):
        shot = tmp_path / "shot.png"
        _chromium(["--window-size=1200,2400", f"--screenshot={shot}", address], tmp_path)
        region = np.asarray(Image.open(shot).convert("RGB")).astype(int)[y : y + h, x : x + w]
        assert region.std() > 10  # drawn, not blank
        return int((np.abs(region - np.array([0xE6, 0x7E, 0x22])).sum(axis=2) < 30).sum())

    # The selected edge is drawn in the highlight colour (#e67e22), which nothing else uses.
    assert highlight_pixels(url) > 50
    assert highlight_pixels((fit_dir / "report.html").as_uri()) < 5
