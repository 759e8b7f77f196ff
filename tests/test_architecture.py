"""The package's shape rules (issue 14): import contracts, function size, lazy imports,
single definitions of shared helpers, and top-level names that cannot clash.

Each test reads the source tree (AST or text) or runs a subprocess; none imports torch
in this process.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bayes_trainmap"
#: The real folders of the package's source: bayes_trainmap/inference and
#: bayes_trainmap/tasks are symlinks to the repository folders inference/ and tasks/.
SOURCE_DIRS = (PACKAGE, ROOT / "inference", ROOT / "tasks")
OWN_TOP_LEVEL = ("bayes_trainmap", "inference", "tasks")
MAX_FUNCTION_LINES = 100


def _source_files() -> list[Path]:
    files = []
    for base in SOURCE_DIRS:
        for folder, dirs, names in os.walk(base):  # does not follow the symlinks
            dirs[:] = [d for d in dirs if d not in ("demo_data", "__pycache__")]
            files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(files)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _own_module(node: ast.AST) -> str | None:
    """The imported module's name when ``node`` imports one of the project's modules."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "." * node.level + (node.module or "")
        name = node.module or ""
    elif isinstance(node, ast.Import):
        name = node.names[0].name
    else:
        return None
    return name if name.split(".")[0] in OWN_TOP_LEVEL else None


def _importlinter_section(pyproject: str) -> str:
    """The ``[tool.importlinter]`` tables of a pyproject.toml, as text."""
    out, keep = [], False
    for line in pyproject.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            keep = stripped.strip("[]").startswith("tool.importlinter")
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.is_file() else [shutil.which("lint-imports") or "lint-imports"]
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(command + ["--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _contract_names() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [contract["name"] for contract in config["contracts"]]


def test_import_contracts_are_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    names = _contract_names()
    assert len(names) == 3
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout


def test_a_planted_engine_import_of_core_breaks_its_contract(tmp_path):
    copy = tmp_path / "bayes_trainmap"
    # symlinks=False copies the inference/ and tasks/ folders the package links to
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("demo_data", "__pycache__"))
    assert not (copy / "inference").is_symlink() and (copy / "inference" / "params.py").is_file()
    params = copy / "inference" / "params.py"
    params.write_text(params.read_text() + "\nimport bayes_trainmap.core.errors  # planted\n")
    (tmp_path / "pyproject.toml").write_text(_importlinter_section((ROOT / "pyproject.toml").read_text()))

    result = _lint_imports(tmp_path, pythonpath=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "The HMM engines import nothing else of the project BROKEN" in output
    assert "bayes_trainmap.inference.params -> bayes_trainmap.core.errors" in output
    # the planted copy, not this checkout, was analysed: the other contracts still hold
    assert "Contracts: 2 kept, 1 broken." in output


def test_no_function_is_longer_than_the_limit():
    too_long = []
    for path in _source_files():
        for fn in _functions(ast.parse(path.read_text(), filename=str(path))):
            n_lines = fn.end_lineno - fn.lineno + 1
            if n_lines > MAX_FUNCTION_LINES:
                too_long.append(f"{_rel(path)}:{fn.lineno} {fn.name} ({n_lines} lines)")
    assert not too_long, "functions over 100 lines:\n" + "\n".join(too_long)


def test_every_function_level_own_import_says_why_it_is_lazy():
    """A function-level import of the project needs ``# lazily: <reason>`` on the line
    above it; consecutive imports share the comment above the first one."""
    undocumented, n_lazy = [], 0
    for path in _source_files():
        lines = path.read_text().splitlines()
        for fn in _functions(ast.parse("\n".join(lines), filename=str(path))):
            imports = [node for node in ast.walk(fn) if _own_module(node)]
            covered = {line for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for line in range(node.lineno, node.end_lineno + 1)}
            for node in imports:
                n_lazy += 1
                above = node.lineno - 1  # 1-based number of the line above
                while above in covered:
                    above -= 1
                if not lines[above - 1].strip().startswith("# lazily:"):
                    undocumented.append(f"{_rel(path)}:{node.lineno} {fn.name}: {_own_module(node)}")
    assert not undocumented, "function-level imports without a '# lazily:' reason:\n" + "\n".join(undocumented)
    assert n_lazy > 0  # the walk found the documented ones (the CLI's, at least)


#: Shared helpers and where their one definition lives (module-level functions).
HELPERS = {
    "to_jsonable": "bayes_trainmap/core/storage.py",
    "write_bytes_atomic": "bayes_trainmap/core/storage.py",
    "resolve_device": "bayes_trainmap/core/device.py",
    "gaussian_log_likelihood": "inference/emissions.py",
    "bic": "inference/params.py",
    "n_free_parameters": "inference/params.py",
}

#: Literals that must appear in one file only: the file holding the definition.
LITERALS = {
    "mkstemp(": "bayes_trainmap/core/storage.py",
    '("full", "diag")': "inference/params.py",
    "range(1, 9)": "bayes_trainmap/core/defaults.py",
    "0.977": "bayes_trainmap/analysis/paper_reference.py",  # the paper's Table-1 R^2, modular addition
}


def test_each_shared_helper_is_defined_once():
    definitions = {name: [] for name in HELPERS}
    methods = []
    for path in _source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in HELPERS:
                definitions[node.name].append(_rel(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            methods += [(path, m) for m in cls.body if isinstance(m, ast.FunctionDef) and m.name in HELPERS]
    assert definitions == {name: [where] for name, where in HELPERS.items()}
    # a method of the same name (GaussianHMM.bic, HMMParams.n_free_parameters) delegates
    for path, method in methods:
        calls = {c.func.id for c in ast.walk(method) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        assert method.name in calls, f"{_rel(path)}:{method.lineno} {method.name} re-implements the helper"


@pytest.mark.parametrize("literal", sorted(LITERALS))
def test_shared_constants_are_written_once(literal):
    holders = sorted(_rel(path) for path in _source_files() if literal in path.read_text())
    assert holders == [LITERALS[literal]]


def test_repository_folders_do_not_clash_with_a_users_own_top_level_packages(tmp_path):
    project = tmp_path / "project"
    (project / "tasks").mkdir(parents=True)
    (project / "tasks" / "__init__.py").write_text("OWN = 1\n")
    (project / "inference").mkdir()
    (project / "inference" / "__init__.py").write_text("ENGINE = 'mine'\n")
    out = tmp_path / "runs"
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import torch
        import tasks, inference
        from bayes_trainmap.tasks.recorder import TrajectoryRecorder
        from bayes_trainmap.inference.baum_welch import GaussianHMM
        from bayes_trainmap.data import load_trajectories

        assert tasks.OWN == 1 and inference.ENGINE == "mine"
        rng = np.random.default_rng(0)
        X = np.concatenate([rng.normal(-5.0, 1.0, (60, 2)), rng.normal(5.0, 1.0, (60, 2))])
        hmm = GaussianHMM(2, covariance_type="diag", n_iter=20, random_state=0).fit(X, [120])
        print("means", sorted(round(float(m), 1) for m in hmm.params_.means[:, 0]))
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        with TrajectoryRecorder(model, sys.argv[1], run="r", every=1) as rec:
            for step in range(2):
                rec.log(step, train_loss=1.0 / (step + 1))
                model.weight.data.mul_(0.5)
        print("steps", load_trajectories(sys.argv[1]).frame["step"].tolist())
        print("tasks", tasks.__file__)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    low, high = (float(v) for v in lines["means"].strip("[]").split(","))
    assert abs(low + 5.0) < 0.6 and abs(high - 5.0) < 0.6  # the planted means are recovered
    assert lines["steps"] == "[0, 1]"
    assert Path(lines["tasks"]) == project / "tasks" / "__init__.py"
