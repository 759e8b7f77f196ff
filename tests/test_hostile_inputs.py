"""Random hostile inputs through the CLI (issue 13): exit 0 with a result or exit 2 with one
``error:`` line, never a traceback, and nothing written outside ``--out``."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap import cli
from bayes_trainmap.data import save_trajectories

N_CASES = 24


def _files_below(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


def _junk(rng: np.random.Generator, folder, planted_frame: pd.DataFrame) -> str:
    """One hostile trajectory input of a randomly chosen kind."""
    kind = rng.integers(8)
    path = folder / f"case{rng.integers(10**9)}"
    if kind == 0:  # random bytes with a data file's name
        path = path.with_suffix(str(rng.choice([".parquet", ".csv", ".jsonl"])))
        path.write_bytes(rng.bytes(int(rng.integers(0, 400))))
    elif kind == 1:  # a real Parquet file cut short
        save_trajectories(_frame_set(_subset(planted_frame)), path.with_suffix(".parquet"))
        data = path.with_suffix(".parquet").read_bytes()
        path = path.with_suffix(".parquet")
        path.write_bytes(data[: int(rng.integers(1, len(data)))])
    elif kind == 2:  # CSV with random cells replaced by junk strings, NaN, inf or huge numbers
        frame = _subset(planted_frame).astype(object)
        for _ in range(int(rng.integers(1, 6))):
            i, j = rng.integers(len(frame)), rng.integers(frame.shape[1])
            frame.iat[i, j] = rng.choice(["x", "", "nan", "inf", "-1e400", "1e308", "0x1f"])
        path = path.with_suffix(".csv")
        frame.to_csv(path, index=False)
    elif kind == 3:  # columns dropped or renamed at random
        frame = _subset(planted_frame)
        cols = list(frame.columns)
        drop = rng.choice(cols, size=int(rng.integers(1, len(cols))), replace=False)
        path = path.with_suffix(".csv")
        frame.drop(columns=list(drop)).to_csv(path, index=False)
    elif kind == 4:  # a directory of runs with random steps shuffled or duplicated
        frame = _subset(planted_frame).copy()
        frame["step"] = rng.permutation(frame["step"].to_numpy()) if rng.random() < 0.5 else 0
        save_trajectories(_frame_set(frame), path)
    elif kind == 5:  # an empty directory, or one holding only unrelated files
        path.mkdir()
        if rng.random() < 0.5:
            (path / "notes.txt").write_text("not a trajectory")
    elif kind == 6:  # a single run, or runs of one checkpoint
        frame = _subset(planted_frame, n_runs=1 if rng.random() < 0.5 else 3, length=int(rng.integers(1, 3)))
        path = path.with_suffix(".csv")
        frame.to_csv(path, index=False)
    else:  # a path that does not exist
        path = path / "missing"
    return str(path)


def _subset(frame: pd.DataFrame, n_runs: int = 4, length: int = 30) -> pd.DataFrame:
    runs = frame["run"].unique()[:n_runs]
    return frame[frame["run"].isin(runs)].groupby("run", sort=False).head(length).reset_index(drop=True)


def _frame_set(frame):
    from bayes_trainmap.data import TrajectorySet

    return TrajectorySet(frame)


def _check(capsys, status: int, out_dir, root, before: set[str]) -> None:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if status != 0:
        assert status == 2, captured.err
        lines = [line for line in captured.err.strip().splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        assert not os.path.exists(out_dir)
    written = _files_below(root) - before
    assert all(f.startswith(os.path.relpath(out_dir, root)) for f in written), written


def test_random_junk_data_gives_a_result_or_one_error_line(capsys, tmp_path, planted_set):
    rng = np.random.default_rng(20261202)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for case in range(N_CASES):
        data = _junk(rng, inputs, planted_set.frame)
        out = tmp_path / f"out{case}"
        before = _files_below(tmp_path)
        status = cli.main(["fit", "--data", data, "--states", "2", "--n-restarts", "1", "--bootstrap", "0",
                           "--no-report", "--quiet", "--out", str(out)])
        _check(capsys, status, out, tmp_path, before)


OPTION_VALUES = {
    "--states": ["0", "-1", "9-2", "x", "1.5", "99", "2"],
    "--n-restarts": ["0", "-3", "1", "two"],
    "--window": ["0", "-5", "3", "1e9"],
    "--val-fraction": ["0", "1", "-0.5", "nan", "0.5"],
    "--threshold": ["nan", "inf", "-5", "7", "0.5"],
    "--tol": ["-1", "nan", "0"],
    "--n-iter": ["0", "-1", "3"],
    "--device": ["tpu", "cuda:x", "cpu"],
    "--interval": ["0", "1", "1.5", "0.8"],
    "--bootstrap": ["-1", "0", "2"],
    "--outcome": ["missing_column", "l1", "eval_accuracy"],
    "--features": ["nope", "l1,l1", "step", "l1,l2"],
}


def test_random_option_values_give_a_result_or_one_error_line(capsys, tmp_path, planted_dir):
    rng = np.random.default_rng(7)
    names = list(OPTION_VALUES)
    for case in range(N_CASES):
        chosen = rng.choice(names, size=int(rng.integers(1, 4)), replace=False)
        argv = ["fit", "--data", planted_dir, "--states", "2", "--n-restarts", "1", "--bootstrap", "0",
                "--no-report", "--quiet"]
        for name in chosen:
            argv += [name, str(rng.choice(OPTION_VALUES[name]))]
        out = tmp_path / f"out{case}"
        before = _files_below(tmp_path)
        try:
            status = cli.main([*argv, "--out", str(out)])
        except SystemExit as stop:  # argparse's own type errors: its usage line, then one error line
            assert stop.code == 2
            err = capsys.readouterr().err
            assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("python -m bayes_trainmap fit: error:")
            assert not os.path.exists(out)
            continue
        _check(capsys, status, out, tmp_path, before)


@pytest.mark.parametrize("argv", [["fit", "--mdoe", "svi"], ["report"], ["watch"], ["fit", "--mode"]])
def test_usage_errors_exit_2_without_traceback(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        status = cli.main(argv)
        raise SystemExit(status)
    assert stop.value.code == 2 and "Traceback" not in capsys.readouterr().err


# -- damaged fit directories through `report` and `decode` -----------------------------


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory, planted_set):
    root = tmp_path_factory.mktemp("fitted")
    save_trajectories(planted_set, root / "runs")
    status = cli.main(["fit", "--data", str(root / "runs"), "--states", "2", "--n-restarts", "1", "--bootstrap", "0",
                       "--k-resamples", "0", "--quiet", "--out", str(root / "fit")])
    assert status == 0
    return root


#: Stands for an integer literal of 5,000 digits (beyond Python's int-string limit) in written JSON.
_HUGE_INT = "<5000 digits>"


def _hostile_json(rng: np.random.Generator):
    return [
        lambda: "x" * int(rng.integers(0, 50)), list, lambda: None, lambda: float("nan"),
        lambda: _HUGE_INT, lambda: -1e308, lambda: {"nested": [[[[]]]]}, lambda: True,
    ][int(rng.integers(8))]()


def _rewrite_json_value(rng: np.random.Generator, value):
    """``value`` with one randomly chosen leaf or branch replaced by a hostile one."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = list(value)[int(rng.integers(len(value)))]
        return {**value, key: _rewrite_json_value(rng, value[key])}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = int(rng.integers(len(value)))
        return [*value[:i], _rewrite_json_value(rng, value[i]), *value[i + 1:]]
    return _hostile_json(rng)


def _damage(rng: np.random.Generator, fit_dir) -> str:
    """Damage one file of ``fit_dir`` in a random way; return a description of what was done.

    Half of the damage is done as a hostile writer would, with ``manifest.json``'s
    checksums updated to match, so the validation behind the checksums is exercised too.
    """
    import json

    from bayes_trainmap.data.fitdir import update_manifest

    names = sorted(_files_below(fit_dir))
    name = str(rng.choice(names))
    path = fit_dir / name
    kind = int(rng.integers(7))
    if kind == 0:  # cut short
        data = path.read_bytes()
        path.write_bytes(data[: int(rng.integers(0, max(len(data), 1)))])
    elif kind == 1:  # random bytes
        path.write_bytes(rng.bytes(int(rng.integers(0, 300))))
    elif kind == 2:  # deleted
        path.unlink()
    elif kind == 3 and name.endswith(".json"):  # one value of another type or size
        value = _rewrite_json_value(rng, json.loads(path.read_text()))
        path.write_text(json.dumps(value, allow_nan=True).replace(f'"{_HUGE_INT}"', "9" * 5000))
    elif kind == 4 and name.endswith(".json"):  # nesting deeper than any parser's recursion limit
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == 5 and name.endswith(".parquet"):  # a valid Parquet file of another table
        frame = pd.read_parquet(path)
        frame = frame.drop(columns=[str(rng.choice(list(frame.columns)))]) if rng.random() < 0.5 else frame.iloc[::2]
        frame.to_parquet(path, index=False)
    else:  # a directory where the file was
        path.unlink()
        path.mkdir()
    if rng.random() < 0.5 and name != "manifest.json" and (fit_dir / "manifest.json").is_file():
        update_manifest(fit_dir, [])  # a consistent but hostile directory
        return f"{name}: kind {kind}, checksums updated"
    return f"{name}: kind {kind}"


def test_damaged_fit_directories_give_a_report_or_one_error_line(capsys, tmp_path, fitted_dir):
    import shutil

    rng = np.random.default_rng(13)
    for case in range(N_CASES):
        work = tmp_path / f"case{case}"
        shutil.copytree(fitted_dir / "fit", work / "fit")
        what = _damage(rng, work / "fit")
        before = _files_below(tmp_path)
        argv = ["report", str(work / "fit"), "--quiet"] if case % 3 else \
            ["decode", str(work / "fit"), "--data", str(fitted_dir / "runs"), "--out", str(work / "decoded.parquet")]
        status = cli.main(argv)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, what
        if status != 0:
            lines = [line for line in captured.err.strip().splitlines() if not line.startswith("warning:")]
            assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (what, captured.err)
        elif argv[0] == "report":
            assert (work / "fit" / "report.html").is_file(), what
        written = _files_below(tmp_path) - before
        assert all(f.startswith(f"case{case}/") for f in written), (what, written)


def test_a_diverging_svi_is_one_error_line(capsys, tmp_path, planted_dir):
    """Issue 13: `--lr 1e9` makes the ELBO non-finite; one line naming the remedy, no traceback."""
    out = tmp_path / "fit"
    status = cli.main(["fit", "--data", planted_dir, "--mode", "svi", "--lr", "1e9", "--steps", "5", "--states", "2",
                       "--n-restarts", "1", "--bootstrap", "0", "--k-resamples", "0", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert status == 2 and len(lines) == 1 and "lower --lr" in lines[0], err
    assert not out.exists()


def test_recording_new_files_does_not_bless_a_changed_one(tmp_path, fitted_dir):
    """update_manifest(added=...) hashes only the added files: a model edited behind the
    package's back stays refused after a later report records its own files."""
    import shutil

    from bayes_trainmap.core.errors import FitDirectoryError
    from bayes_trainmap.data.fitdir import load_fit_dir, update_manifest

    fit = tmp_path / "fit"
    shutil.copytree(fitted_dir / "fit", fit)
    (fit / "model.json").write_text((fit / "model.json").read_text().replace("1", "2", 1))
    (fit / "notes.md").write_text("added by the package")
    update_manifest(fit, [fit / "notes.md"])
    with pytest.raises(FitDirectoryError, match="model.json differs"):
        load_fit_dir(fit)
