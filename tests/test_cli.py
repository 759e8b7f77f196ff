"""The command line end to end, and every kind of bad input through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_trainmap import cli, data
from bayes_trainmap.data import save_trajectories
from bayes_trainmap.fitting.config import FitConfig

FAST = ["--states", "1-3", "--n-restarts", "1"]


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_fit_end_to_end_writes_the_fit_directory(capsys, planted_dir, tmp_path):
    out = tmp_path / "fit"
    status, stdout, _ = _run(
        capsys, "fit", "--data", planted_dir, *FAST, "--out", out, "--threshold", "0.9", "--outcome-direction", "higher"
    )
    assert status == 0
    for name in ("model.json", "config.json", "selection.csv", "selection_curve.csv", "zscored.parquet",
                 "decoded.parquet", "zscore.json", "summary.json", "analysis.json", "figures/selection_curve.png",
                 "report.html", "report.md", "report.json"):
        assert (out / name).is_file(), name
    assert "Chosen K = 3" in stdout and f"fit directory: {out}" in stdout
    assert "Detour states" in stdout  # the report's terminal tables follow the summary
    (out / "report.html").unlink()
    config = json.loads((out / "config.json").read_text())
    assert config["cli"]["states"] == "1-3" and config["resolved"]["data"]["path"] == planted_dir
    assert config["resolved"]["states_searched"] == [1, 2, 3] and config["config"]["mode"] == "mle"
    assert config["config"]["outcome_direction"] == "higher"
    assert json.loads((out / "analysis.json").read_text())["convergence"]["higher_is_better"] is True
    status, stdout, _ = _run(capsys, "report", out, "--quiet")
    assert status == 0 and stdout == f"report: {out / 'report.html'}\n" and (out / "report.html").is_file()


def test_default_out_dir_and_demo_data(capsys, tmp_path, monkeypatch, planted_set):
    demo_root = tmp_path / "demo"
    save_trajectories(planted_set, demo_root / "sparse_parities")
    monkeypatch.setattr(data, "DEMO_DATA_DIR", demo_root)
    monkeypatch.chdir(tmp_path)
    status, stdout, _ = _run(
        capsys, "fit", "--mode", "mle", "--states", "3", "--restarts", "1", "--quiet", "--no-report"
    )
    assert status == 0 and stdout == ""
    fit_dir = tmp_path / "fits" / "sparse_parities-mle"
    assert json.loads((fit_dir / "summary.json").read_text())["n_states"] == 3
    # running again replaces the previous fit directory
    assert _run(capsys, "fit", "--states", "2", "--restarts", "1", "--quiet", "--no-report")[0] == 0
    assert json.loads((fit_dir / "summary.json").read_text())["n_states"] == 2
    assert sorted(p.name for p in (tmp_path / "fits").iterdir()) == ["sparse_parities-mle"]


def test_module_entry_point_in_a_subprocess(planted_dir, tmp_path):
    out = tmp_path / "fit"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bayes_trainmap", "fit", "--data", planted_dir, "--states", "2", "--restarts", "1",
         "--covariance", "diag", "--features", "l1,l2", "--out", str(out), "--no-report"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "BIC sweep" in done.stderr and "Traceback" not in done.stderr
    model = json.loads((out / "model.json").read_text())
    assert json.loads((out / "config.json").read_text())["resolved"]["features"] == ["l1", "l2"]
    assert "diag" in json.dumps(model)
    bad = subprocess.run(
        [sys.executable, "-m", "bayes_trainmap", "fit", "--data", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: trajectory data not found")


# ------------------------------------------------------------------------- bad input
def _write_csv(frame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def _nan(f):
    f.loc[5, "l2"] = np.nan
    return f


def _inf(f):
    f.loc[5, "l1"] = np.inf
    return f


def _duplicate(f):
    f.loc[2, "step"] = 10
    return f


def _unsorted(f):
    f.loc[2, "step"] = 5
    return f


def _short(f):
    return f[(f["run"] != "run_2") | (f["step"] == 0)]


def _text(f):
    f["l2"] = f["l2"].astype(object)
    f.loc[7, "l2"] = "n/a?"
    return f


def _one_run(f):
    return f[f["run"] == "run_0"]


def _all_nan_outcome(f):
    f["eval_accuracy"] = np.nan
    return f


def _no_statistics(f):
    return f[["run", "seed", "step", "eval_accuracy"]]


BAD_FRAMES = {
    "nan": (_nan, [], "non-finite feature value"),
    "inf": (_inf, [], "non-finite feature value"),
    "duplicate steps": (_duplicate, [], "duplicate steps in run 'run_0'"),
    "unsorted steps": (_unsorted, [], "unsorted steps in run 'run_0'"),
    "too short": (_short, [], "'run_2' (1) have fewer than 2 checkpoints"),
    "non-numeric": (_text, [], "feature column 'l2' is not numeric"),
    "missing feature": (lambda f: f, ["--features", "l1", "var_b"], "feature column(s) ['var_b'] not found"),
    "no statistics": (_no_statistics, [], "no feature columns found"),
    "one run": (_one_run, [], "need at least 2 runs"),
    "too many states": (lambda f: f, ["--states", "40"], "cannot fit K=40 states"),
    "malformed states": (lambda f: f, ["--states", "3-x"], "cannot parse states '3-x'"),
    "unknown task": (lambda f: f, ["--task", "chess"], "no threshold preset for task 'chess'"),
    "missing outcome": (lambda f: f, ["--outcome", "bleu"], "outcome column 'bleu' not found"),
    "no restarts": (lambda f: f, ["--restarts", "0"], "restarts must be at least 1"),
    "no iterations": (lambda f: f, ["--n-iter", "0"], "expected n_iter >= 1"),
    "bad val fraction": (lambda f: f, ["--val-fraction", "1.5"], "val_fraction must be in (0, 1)"),
    "bad window": (lambda f: f, ["--window", "0"], "window must be a positive number"),
    "bad device": (lambda f: f, ["--device", "tpu"], "device must be 'auto', 'cpu' or 'cuda[:N]'"),
    "nan threshold": (lambda f: f, ["--threshold", "nan"], "threshold must be a finite number"),
    "negative accuracy threshold": (lambda f: f, ["--threshold", "-5"], "outside [0, 1], the range of the accuracy"),
    "accuracy threshold above 1": (lambda f: f, ["--threshold", "7"], "threshold 7 is outside [0, 1]"),
    "threshold crossed everywhere": (lambda f: f, ["--threshold", "0.05"], "every run would converge at its first"),
    "all-nan outcome": (
        _all_nan_outcome, ["--outcome", "eval_accuracy"], "'eval_accuracy' has no finite value in any run"
    ),
    "outcome as a feature": (lambda f: f, ["--features", "l1,eval_accuracy"], "cannot also be a model feature"),
}


def _assert_one_line_error(status, stdout, stderr, expected):
    assert status == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_input_gives_one_line_and_status_2(case, capsys, tmp_path, frame_factory):
    change, extra, expected = BAD_FRAMES[case]
    path = _write_csv(change(frame_factory()), tmp_path / "runs.csv")
    out = tmp_path / "fit"
    status, stdout, stderr = _run(capsys, "fit", "--data", path, *extra, "--out", out)
    _assert_one_line_error(status, stdout, stderr, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]  # no fit dir, no staging dir


def _file(name: str, content: bytes):
    def make(directory: Path) -> Path:
        (directory / name).write_bytes(content)
        return directory / name

    return make


def _empty_dir(directory: Path) -> Path:
    (directory / "dir").mkdir()
    return directory / "dir"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "absent", "trajectory data not found"),
        (_file("empty.csv", b""), "is empty"),
        (_file("empty.parquet", b""), "is empty"),
        (_file("header.csv", b"run,step,l1\n"), "contains no checkpoints"),
        (_file("broken.parquet", b"PAR1 not really"), "cannot read Parquet file"),
        (_empty_dir, "contains no .parquet or .csv"),
    ],
    ids=["absent", "empty-csv", "empty-parquet", "header-only", "corrupt-parquet", "empty-dir"],
)
def test_unreadable_data_gives_one_line(make, expected, capsys, tmp_path):
    path = make(tmp_path)
    status, stdout, stderr = _run(capsys, "fit", "--data", path, "--out", tmp_path / "fit")
    _assert_one_line_error(status, stdout, stderr, expected)
    assert not (tmp_path / "fit").exists()


def test_refuses_to_overwrite_a_directory_that_is_not_a_fit(capsys, tmp_path, planted_dir):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    status, stdout, stderr = _run(capsys, "fit", "--data", planted_dir, "--out", target)
    _assert_one_line_error(status, stdout, stderr, "is not a fit directory")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    status, stdout, stderr = _run(capsys, "report", target)
    _assert_one_line_error(status, stdout, stderr, "is not a fit directory")


def test_constant_feature_is_reported_not_fatal(capsys, tmp_path, frame_factory):
    frame = frame_factory(lengths=(30, 30, 30, 30, 30))
    frame["code_sparsity"] = 0.25
    path = _write_csv(frame, tmp_path / "runs.csv")
    status, stdout, stderr = _run(capsys, "fit", "--data", path, "--states", "2", "--restarts", "1",
                                  "--out", tmp_path / "fit", "--no-report")
    assert status == 0
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert any("code_sparsity" in line and "constant" in line for line in warnings), stderr
    assert json.loads((tmp_path / "fit" / "summary.json").read_text())["dropped_features"] == ["code_sparsity"]
    assert "Left out (constant in every run): code_sparsity" in stdout


def test_bugs_are_not_swallowed(monkeypatch, capsys, planted_dir, tmp_path):
    from bayes_trainmap.fitting import pipeline

    def buggy(*args, **kwargs):
        raise TypeError("a genuine bug")

    monkeypatch.setattr(pipeline, "fit", buggy)
    with pytest.raises(TypeError, match="genuine bug"):
        cli.main(["fit", "--data", planted_dir, "--out", str(tmp_path / "fit")])

    class EngineInputError(ValueError):
        pass

    EngineInputError.__module__ = "bayes_trainmap.inference.baum_welch"

    def engine_refuses(*args, **kwargs):
        raise EngineInputError("X has 0 rows")

    monkeypatch.setattr(pipeline, "fit", engine_refuses)
    status, stdout, stderr = _run(capsys, "fit", "--data", planted_dir, "--out", tmp_path / "fit")
    _assert_one_line_error(status, stdout, stderr, "X has 0 rows")

    def plain(*args, **kwargs):
        raise ValueError("numpy-level bug")

    monkeypatch.setattr(pipeline, "fit", plain)
    with pytest.raises(ValueError, match="numpy-level bug"):
        cli.main(["fit", "--data", planted_dir, "--out", str(tmp_path / "fit")])



def test_tasks_command_is_delegated_and_fit_does_not_import_training_code(capsys, tmp_path):
    status, stdout, _ = _run(capsys, "tasks")
    assert status == 0 and "sparse_parities" in stdout
    probe = (
        "import sys; from bayes_trainmap.cli import main; "
        f"status = main(['fit', '--data', {str(tmp_path / 'missing')!r}]); "
        "print(status, 'bayes_trainmap.tasks.cli' in sys.modules, 'bayes_trainmap.tasks.loop' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr


def test_fit_summary_fits_an_80_column_terminal(capsys, tmp_path, monkeypatch):
    """Issue 15: on the shipped demo, the summary is at most 45 lines, none wider than 80."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)  # a short --out: paths are printed whole
    out = Path("demo")
    status, stdout, _ = _run(capsys, "fit", "--states", "5", "--n-restarts", "1", "--bootstrap", "4",
                             "--k-resamples", "0", "--out", out)
    assert status == 0
    lines = stdout.rstrip("\n").split("\n")
    assert len(lines) <= 45 and max(len(line) for line in lines) <= 80, stdout
    assert lines[-4] == f"fit directory: {out}" and lines[-3].startswith("next: python -m bayes_trainmap report")
    assert sum("never reached" in line for line in lines) == 1  # each warning once
    assert lines[0].startswith("MLE fit of sparse_parities") and "state" in stdout and "→" in stdout
    status, verbose, _ = _run(capsys, "report", out, "--verbose")
    assert status == 0 and "seed-000 (" in verbose and len(verbose.splitlines()) > len(lines)


def test_misspelled_option_names_the_command_and_suggests(capsys):
    status, stdout, stderr = _run(capsys, "fit", "--mdoe", "svi")
    assert status == 2 and stdout == ""
    usage, error = stderr.strip().split("\n")[-2:] if stderr.count("\n") >= 1 else ("", stderr)
    assert "bayes_trainmap fit" in stderr.split("error:")[0]  # fit's own usage, not the top level's
    assert error == "error: unrecognized argument --mdoe; did you mean --mode?"
    status, _, stderr = _run(capsys, "report", "x", "--quiett")
    assert status == 2 and "did you mean --quiet?" in stderr


def _same_json(a, b, path=""):
    """Paths where parsed JSON values differ (numbers to 1e-9 relative: parallel sums differ in the last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [f"{path}/{k}" for k in set(a) ^ set(b)] + [d for k in set(a) & set(b) for d in _same_json(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        return [path] if len(a) != len(b) else [d for i, (x, y) in enumerate(zip(a, b)) for d in _same_json(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if a is not None and b is not None and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300) else [path]
    return [] if a == b else [path]


def test_report_recomputes_the_analysis_fit_made_with_its_options(capsys, planted_dir, tmp_path):
    """Issue 14: fit with --random-state 7, drop analysis.json, re-render: the same analysis (baselines included)."""
    out = tmp_path / "fit"
    status, _, _ = _run(capsys, "fit", "--data", planted_dir, *FAST, "--random-state", "7", "--out", out, "--quiet")
    assert status == 0
    written = json.loads((out / "analysis.json").read_text())
    (out / "analysis.json").unlink()
    assert _run(capsys, "report", out, "--quiet")[0] == 0
    assert _same_json(written, json.loads((out / "analysis.json").read_text())) == []
    assert written["baselines"]  # the random state matters here: the baselines are fitted from it
    config = json.loads((out / "config.json").read_text())
    assert FitConfig.from_dict(config["config"]).to_dict() == config["config"]  # config.json round-trips
    assert config["config"]["random_state"] == 7 and config["analysis"]["random_state"] == 7
