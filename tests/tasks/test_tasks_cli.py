"""``collect`` and ``tasks`` on the command line: happy paths and bad input (exit status 2)."""

from __future__ import annotations

import json

import pytest

from bayes_trainmap.cli import main as package_main
from bayes_trainmap.data import load_trajectories
from bayes_trainmap.tasks.cli import main, parse_overrides


def test_collect_then_resume_from_the_package_cli(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["collect", "--task", "sparse_parities", "--size", "smoke", "--steps", "10", "--seeds", "0-2",
            "--out", str(out), "--no-progress"]
    assert package_main(argv) == 0
    assert "3 run(s) trained (ensemble), 0 already finished" in capsys.readouterr().out
    assert package_main(argv) == 0
    assert "0 run(s) trained, 3 already finished" in capsys.readouterr().out
    assert load_trajectories(out).n_runs == 3


def test_collect_sequential_with_overrides(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["collect", "--task", "digits", "--size", "smoke", "--steps", "10", "--seeds", "1,3",
                 "--sequential", "--set", "hidden=8", "--out", str(out), "--no-progress"]) == 0
    assert "2 run(s) trained (sequential)" in capsys.readouterr().out
    assert json.loads((out / "collection.json").read_text())["config"]["hidden"] == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "sparse_parities", "--variant", "odd"], "no variant 'odd'"),
        (["--task", "sparse_parities", "--stabilized"], "no variant 'stabilized'"),
        (["--task", "sparse_parities", "--seeds", "3-1"], "malformed seed range"),
        (["--task", "sparse_parities", "--seeds", "a"], "malformed seed range"),
        (["--task", "sparse_parities", "--set", "lr"], "KEY=VALUE"),
        (["--task", "sparse_parities", "--set", "colour=3"], "unknown config keys"),
        (["--task", "sparse_parities", "--data-root", "/x"],
         "unknown config keys for task 'sparse_parities': data_root"),
        (["--task", "sparse_parities", "--device", "cuda:9x"], "device"),
    ],
)
def test_collect_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(["collect", *argv, "--size", "smoke", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_collect_refuses_another_configuration_and_unwritable_output(tmp_path, capsys):
    base = ["collect", "--task", "sparse_parities", "--size", "smoke", "--seeds", "0", "--no-progress"]
    assert main([*base, "--steps", "10", "--out", str(tmp_path / "o")]) == 0
    assert main([*base, "--steps", "20", "--out", str(tmp_path / "o")]) == 2
    assert "config.steps (10 there, 20 now)" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main([*base, "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "cannot create output directory" in capsys.readouterr().err


def test_argparse_rejects_non_positive_steps(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--task", "digits", "--steps", "0"])
    assert exc.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_tasks_listing(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("sparse_parities", "mnist", "digits"):
        assert name in out
    assert package_main(["tasks", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sparse_parities"]["config"]["default"]["lr"] == 0.1
    assert rows["digits"]["threshold"] == {"default": 0.95}
    # The listing shows each variant's own threshold (section 3.4 of the paper).
    assert rows["cifar100"]["threshold"] == {"default": 0.6, "destabilized": 0.4}


def test_parse_overrides():
    assert parse_overrides(["lr=0.5", "name=abc", "flag=true", "sizes=[1, 2]"]) == {
        "lr": 0.5, "name": "abc", "flag": True, "sizes": [1, 2]}
