"""Report files from a real fit directory: existence, JSON structure, self-contained HTML, re-rendering."""

import copy
import json
import re

import numpy as np
import pytest

from bayes_trainmap.fitting import pipeline
from bayes_trainmap.analysis.detours import convergence_regression
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.report import build_report, load_analysis, render_terminal, validate_report_json, write_report
from bayes_trainmap.report.data import FIGURE_NAMES
from bayes_trainmap.data.simulate import simulate_training_runs


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    sim = simulate_training_runs(20, n_checkpoints=150, path_dwell=(20, 25, 20), delay=30, random_state=1)
    result = pipeline.fit(
        sim.trajectories, states=[5], n_restarts=1, progress=False, analyze=False, outcome="eval_accuracy", threshold=0.9
    )
    out = tmp_path_factory.mktemp("fits") / "fit"
    result.save(out, report=False)
    # No analysis.json yet: the report computes it from the fit-directory files alone.
    assert not (out / "analysis.json").exists()
    write_report(out)
    return out


def test_files_exist_and_json_validates(fit_dir):
    for name in ("report.md", "report.html", "report.json", "analysis.json"):
        assert (fit_dir / name).is_file(), name
    report = json.loads((fit_dir / "report.json").read_text())
    validate_report_json(report)
    # K is fixed in this fit, so there is no selection curve figure.
    expected = {"training_map", "regression_coefficients", "convergence_histogram", "state_timeline"}
    assert expected <= set(report["figures"]) <= set(FIGURE_NAMES)
    for files in report["figures"].values():
        for path in files.values():
            assert (fit_dir / path).stat().st_size > 1000
    assert report["fit"]["n_states"] == 5 and len(report["states"]) == 5
    assert [row["model"] for row in report["table4"]] == ["HMM", "k-means", "HMM-1"]
    assert report["table1"]["forking"] is True and len(report["detour_states"]) == 1
    # Strict JSON: no NaN/Infinity tokens anywhere.
    assert not re.search(r"\bNaN\b|Infinity", (fit_dir / "report.json").read_text())


def test_html_is_self_contained(fit_dir):
    text = (fit_dir / "report.html").read_text()
    for forbidden in ("http://", "https://", 'src="/', "<link", "@import", "url(", "<iframe", "fetch(", "XMLHttpRequest"):
        assert forbidden not in text, forbidden
    # Scripts are inline: the map's data and its interaction code, none loaded from anywhere.
    scripts = re.findall(r"<script([^>]*)>", text)
    assert scripts == [' type="application/json" id="tm-data"', ""]
    assert '<svg role="img"' in text and 'id="tm-map"' in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Training map" in text and "Detour" in text and "no selection curve" in text
    md = (fit_dir / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (fit_dir / link).is_file(), link


def test_terminal_summary_has_the_tables(fit_dir):
    text = render_terminal(fit_dir)
    for title in ("Table 1 row", "States", "Edges", "Convergence regression", "Detour states:", "Table 4 row"):
        assert title in text
    assert "\x1b[" not in text  # plain text, no ANSI codes


def test_rerender_from_the_fit_directory_via_cli(fit_dir):
    from bayes_trainmap.cli import main

    before = json.loads((fit_dir / "report.json").read_text())
    (fit_dir / "report.html").unlink()
    assert main(["report", str(fit_dir), "--quiet"]) == 0
    assert (fit_dir / "report.html").is_file()
    assert json.loads((fit_dir / "report.json").read_text()) == before


def test_insignificant_regression_warns_everywhere(fit_dir, tmp_path):
    original = load_analysis(fit_dir)
    analysis = load_analysis(fit_dir)
    rng = np.random.default_rng(0)
    occ = analysis.occupancy.to_numpy()
    analysis.regression = convergence_regression(occ, rng.normal(size=occ.shape[0]) + 100)
    assert analysis.regression.f_pvalue >= 0.05
    write_report(fit_dir, analysis=analysis)
    try:
        report = json.loads((fit_dir / "report.json").read_text())
        assert any("should not be interpreted" in w for w in report["warnings"])
        assert "should not be interpreted" in (fit_dir / "report.html").read_text()
        assert "should not be interpreted" in (fit_dir / "report.md").read_text()
        assert "should not be interpreted" in render_terminal(fit_dir)
    finally:
        write_report(fit_dir, analysis=original)


def test_rank_deficient_regression_says_not_identified_everywhere(fit_dir):
    original = load_analysis(fit_dir)
    analysis = load_analysis(fit_dir)
    occ = analysis.occupancy.to_numpy().copy()
    visited = np.flatnonzero(occ.sum(0) > 0)
    a, b = visited[-2:]
    occ[:, a] = occ[:, b] = (occ[:, a] + occ[:, b]) / 2  # two states with collinear occupancies
    rng = np.random.default_rng(1)
    analysis.regression = convergence_regression(occ, 100 + 50 * occ[:, visited[0]] + rng.normal(size=occ.shape[0]))
    assert analysis.regression.not_identified_states == [a, b]
    write_report(fit_dir, analysis=analysis)
    try:
        report = json.loads((fit_dir / "report.json").read_text())
        validate_report_json(report)
        assert [report["regression"]["identified"][k] for k in (a, b)] == [False, False]
        assert [report["states"][k]["identified"] for k in (a, b)] == [False, False]
        assert any("rank-deficient" in w for w in report["warnings"])
        for text in ((fit_dir / "report.md").read_text(), (fit_dir / "report.html").read_text(),
                     render_terminal(fit_dir, width=220)):
            assert "not identified" in text
        assert f"aliased with state(s) [{a}, {b}]" in (fit_dir / "report.md").read_text()
        broken = copy.deepcopy(report)
        broken["regression"]["detour"][a] = True
        with pytest.raises(BayesTrainmapError, match="not identified"):
            validate_report_json(broken)
    finally:
        write_report(fit_dir, analysis=original)


def _uncertainty(report):
    return {
        "interval": 0.9,
        "n_draws": 50,
        "alignment_ambiguous_rate": 0.02,
        "elbo": list(np.linspace(-5000, -1000, 40)),
        "edges": [
            {"source": e["source"], "target": e["target"], "p_exists": 0.4 if i == 0 else 0.97,
             "trans_prob_median": e["trans_prob"], "trans_prob_lo": 0.5 * e["trans_prob"],
             "trans_prob_hi": 1.5 * e["trans_prob"], "n_runs_median": e["n_runs"], "n_runs_lo": 1, "n_runs_hi": e["n_runs"]}
            for i, e in enumerate(report["edges"])
        ] + [
            # A transition only some posterior draws use.
            {"source": report["edges"][0]["target"], "target": report["edges"][0]["source"], "p_exists": 0.1,
             "trans_prob_median": 0.001, "trans_prob_lo": 0.0, "trans_prob_hi": 0.01,
             "n_runs_median": 0.0, "n_runs_lo": 0.0, "n_runs_hi": 1.0}
        ],
        "states": [
            {"state": s["state"], "coef_median": s["coefficient"], "coef_lo": (s["coefficient"] or 0) - 1,
             "coef_hi": (s["coefficient"] or 0) + 1, "p_detour": 0.5, "occupancy_median": s["occupancy"]}
            for s in report["states"]
        ],
        "r_squared": {"median": 0.9, "lo": 0.8, "hi": 0.95},
    }


def test_uncertainty_is_shown_in_tables_and_figures(fit_dir):
    report = json.loads((fit_dir / "report.json").read_text())
    analysis = load_analysis(fit_dir)
    analysis.uncertainty = _uncertainty(report)
    write_report(fit_dir, analysis=analysis)
    try:
        with_unc = json.loads((fit_dir / "report.json").read_text())
        validate_report_json(with_unc)
        assert "elbo" in with_unc["figures"]
        html = (fit_dir / "report.html").read_text()
        assert "Posterior uncertainty" in html and "P(edge)" in html and "90%" in html
        assert "posterior draws only" in html
        assert "P(detour)" in render_terminal(fit_dir, width=220)
        broken = copy.deepcopy(with_unc)
        del broken["uncertainty"]["edges"][0]["p_exists"]
        with pytest.raises(BayesTrainmapError, match="p_exists"):
            validate_report_json(broken)
    finally:
        analysis.uncertainty = None
        write_report(fit_dir, analysis=analysis)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: d.pop("table1"), "missing key 'table1'"),
        (lambda d: d["states"].pop(), "state rows"),
        (lambda d: d["edges"].append({**d["edges"][0], "target": 99}), "not a transition"),
        (lambda d: d["regression"]["coefficients"].pop(), "regression.coefficients"),
        (lambda d: d["table1"].update(forking="yes"), "forking must be a bool"),
        (lambda d: d.update(format="other"), "format"),
    ],
)
def test_validator_rejects_broken_reports(fit_dir, breakage, message):
    report = build_report(fit_dir)
    validate_report_json(report)
    breakage(report)
    with pytest.raises(BayesTrainmapError, match=message):
        validate_report_json(report)
