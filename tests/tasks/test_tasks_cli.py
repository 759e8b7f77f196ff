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


def test_tasks_listing_imports_no_training_or_fitting_code():
    """Issue 15: `tasks` prints from the catalog alone (no torch, pandas, numba or task module)."""
    import subprocess
    import sys

    heavy = ["torch", "pandas", "numba", "pyro", "bayes_trainmap.tasks.base", "bayes_trainmap.tasks.sparse_parities"]
    probe = (
        "import sys, io, contextlib; from bayes_trainmap.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out: status = main(['tasks'])\n"
        f"print(status, 'modular_addition' in out.getvalue(), *[m in sys.modules for m in {heavy!r}])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0", "True"] + ["False"] * len(heavy), done.stderr


@pytest.mark.parametrize("name", ["sparse_parities", "digits", "modular_addition"])
def test_catalog_listing_matches_the_task_classes(name):
    """The listing's configs and thresholds (from the spec) are what the task classes resolve."""
    from bayes_trainmap.tasks.catalog import BUILTIN_SPECS
    from bayes_trainmap.tasks.registry import get_task, get_task_class

    row = BUILTIN_SPECS[name].describe()
    cls = get_task_class(name)
    assert cls.task_spec() is BUILTIN_SPECS[name] and cls.name == name
    for variant in cls.variant_names():
        for size in ("default", "smoke"):
            task = get_task(name, variant=variant, size=size)
            assert task.config == BUILTIN_SPECS[name].resolve_config(variant, size)
        assert get_task(name, variant=variant).config == row["config"][variant]
        assert get_task(name, variant=variant).threshold == row["threshold"][variant]


def test_cifar100_threshold_follows_the_configuration():
    from bayes_trainmap.tasks.catalog import BUILTIN_SPECS

    spec = BUILTIN_SPECS["cifar100"]
    assert spec.describe()["threshold"] == {"default": 0.6, "destabilized": 0.4}
    assert spec.threshold_for(spec.resolve_config(overrides={"residual": False})) == 0.4


def test_user_task_without_a_spec_resolves_from_its_class_attributes():
    from bayes_trainmap.tasks.base import Task
    from bayes_trainmap.core.errors import TaskError

    class Tiny(Task):
        name = "tiny"
        default_config = {"steps": 3, "eval_every": 1, "batch_size": 2, "optimizer": "sgd", "lr": 0.1,
                          "weight_decay": 0.0, "width": 4}
        variants = {"wide": {"width": 8}}
        threshold = 0.5

    task = Tiny(variant="wide", overrides={"steps": 5})
    assert (task.config["width"], task.config["steps"], task.threshold) == (8, 5, 0.5)
    with pytest.raises(TaskError, match="unknown config keys"):
        Tiny(overrides={"depth": 2})
