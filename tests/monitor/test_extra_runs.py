"""``report FITDIR --extra-runs NEWRUNS``: the report lists decoded runs that were not fitted."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from bayes_trainmap.cli import main
from bayes_trainmap.data import TrajectorySet, save_trajectories
from bayes_trainmap.data.fitdir import load_fit_dir
from bayes_trainmap.fitting import pipeline
from bayes_trainmap.monitor.extra_runs import extra_runs_rows


@pytest.fixture(scope="module")
def fit_dir(planted_set, tmp_path_factory):
    result = pipeline.fit(planted_set, states=3, n_restarts=1, progress=False, window=40)
    return load_fit_dir(result.save(tmp_path_factory.mktemp("fit") / "fit", report=False))


def _transitions(states):
    return [(int(a), int(b)) for a, b in itertools.pairwise(states) if a != b]


def _planted_extra(planted_set):
    """run_03 as it is (renamed) and run_03 played backwards (steps kept increasing)."""
    run = planted_set.frame.query("run == 'run_03'").reset_index(drop=True)
    same = run.assign(run="same_03")
    backwards = run.iloc[::-1].reset_index(drop=True).assign(run="backwards_03", step=run["step"].to_numpy())
    return TrajectorySet(pd.concat([same, backwards], ignore_index=True))


def test_extra_runs_rows_flag_the_edges_of_a_run_played_backwards(fit_dir, planted_set):
    saved = fit_dir.decoded
    seen = {e for _, rows in saved.groupby("run") for e in _transitions(rows["state"].to_numpy())}
    path = saved.query("run == 'run_03'")["state"].to_numpy()
    extra = _planted_extra(planted_set)
    rows = {r["run"]: r for r in extra_runs_rows(fit_dir, extra)}
    assert rows["same_03"]["new_edges"] == []
    assert rows["same_03"]["path"] == [int(path[0])] + [b for _, b in _transitions(path)]
    # the backwards run is z-scored over its own (other) first checkpoints, so decode it rather than mirror run_03
    backwards = fit_dir.decode(extra.subset(["backwards_03"])).states
    assert rows["backwards_03"]["path"] == [int(backwards[0])] + [b for _, b in _transitions(backwards)]
    expected_new = [e for e in _transitions(backwards) if e not in seen]
    assert expected_new, "the planted map is one-way, so the run played backwards takes new edges"
    assert [(e["source"], e["target"]) for e in rows["backwards_03"]["new_edges"]] == expected_new
    assert rows["same_03"]["converged_step"] is not None  # the planted runs reach the threshold


def test_decode_of_the_fitted_runs_shows_no_new_edges(fit_dir, planted_set):
    rows = extra_runs_rows(fit_dir, planted_set)
    assert [r["run"] for r in rows] == list(planted_set.run_ids)
    assert all(r["new_edges"] == [] for r in rows)


def test_report_cli_adds_the_section(fit_dir, planted_set, tmp_path, capsys):
    import shutil

    fit = tmp_path / "fit"
    shutil.copytree(fit_dir.path, fit)
    save_trajectories(_planted_extra(planted_set), tmp_path / "new")
    assert main(["report", str(fit), "--extra-runs", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "decoded extra runs:" in out and "backwards_03: " in out
    md = (fit / "report.md").read_text()
    section = md[md.index("## Decoded extra runs"):]
    lines = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ") and "_03" in line}
    assert set(lines) == {"same_03", "backwards_03"}
    assert "NEW" in lines["backwards_03"] and "NEW" not in lines["same_03"]
    assert "Decoded extra runs" in (fit / "report.html").read_text()
    report = json.loads((fit / "report.json").read_text())
    assert sorted(r["run"] for r in report["extra_runs"]) == ["backwards_03", "same_03"]
    # a plain report has no such section
    assert main(["report", str(fit), "--quiet"]) == 0
    assert "Decoded extra runs" not in (fit / "report.md").read_text()


def test_report_cli_refuses_bad_extra_runs(fit_dir, planted_set, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["report", str(fit_dir.path), "--extra-runs", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    frame = planted_set.subset(["run_01", "run_02"]).frame
    a = frame[frame["run"] == "run_01"]
    b = frame[frame["run"] == "run_02"].drop(columns=[c for c in fit_dir.feature_names[:1]])
    (tmp_path / "mixed").mkdir()
    a.to_csv(tmp_path / "mixed" / "run_01.csv", index=False)
    b.to_csv(tmp_path / "mixed" / "run_02.csv", index=False)
    assert main(["report", str(fit_dir.path), "--extra-runs", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
