"""Structural contracts of the project:

a) the import contract (`lint-imports`, pyproject.toml) holds, and it really catches a layer violation and a
   forbidden import (shown on a scratch copy of the packages with both planted);
b) dvc.yaml agrees with the stages and with mllmcl.paths: every path a stage command writes is a declared out,
   every path it reads is a declared dep, each is the path ProjectPaths gives for it, and every params key a
   stage declares exists in params.yaml;
c) every package of the library (all of mllmcl but its command line) is under the "no Prefect, no DVC" rule
   and has a place in the layers."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mllmcl.paths import ProjectPaths

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
CONTRACTS = PYPROJECT["tool"]["importlinter"]["contracts"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


# --- a) the import contract ----------------------------------------------------------------------------------
def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contract_holds():
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} missing: install the test extra (import-linter)"
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in proc.stdout


def _scratch_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for package in ("mllmcl", "stages", "flows", "monitoring"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_import_contract_catches_a_layer_violation_and_a_forbidden_import(tmp_path):
    root = _scratch_copy(tmp_path)
    clean = _lint_imports(root, pythonpath=root)
    assert clean.returncode == 0, "the scratch copy must pass before anything is planted:\n" + clean.stdout

    with (root / "mllmcl" / "continual" / "metrics.py").open("a", encoding="utf-8") as f:
        f.write("\nimport flows.dag  # noqa\n")  # the library reaching up into the Prefect flows
    with (root / "mllmcl" / "model" / "compute.py").open("a", encoding="utf-8") as f:
        f.write("\nimport prefect  # noqa\n")  # the library importing Prefect
    proc = _lint_imports(root, pythonpath=root)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"Contracts: 0 kept, {len(CONTRACTS)} broken." in out, out
    assert "mllmcl.continual.metrics -> flows.dag" in out, out
    assert "mllmcl.model.compute -> prefect" in out, out
    # the installed (editable) packages were not what was analysed: they hold neither import
    assert "import flows.dag" not in (REPO / "mllmcl" / "continual" / "metrics.py").read_text(encoding="utf-8")


# --- b) the DAG contract -------------------------------------------------------------------------------------
OUTPUT_FLAGS = {"--out", "--reports", "--predictions", "--metrics", "--experts-report"}
INPUT_FLAGS = {"--raw", "--data", "--base", "--tasks-dir", "--experts", "--router", "--suites"}
PATHS = ProjectPaths(Path("."))

# (stage module, flag) -> the ProjectPaths path(s) it must name; `task` is the foreach item
EXPECTED = {
    ("stages.ingest", "--raw"): lambda t: [PATHS.raw(t)],
    ("stages.ingest", "--out"): lambda t: [PATHS.task_data(t)],
    ("stages.validate", "--data"): lambda t: [PATHS.task_data(t)],
    ("stages.validate", "--reports"): lambda t: [PATHS.validation_reports],
    ("stages.base", "--suites"): lambda t: [PATHS.task_data("general"), PATHS.task_data("language")],
    ("stages.base", "--out"): lambda t: [PATHS.base],
    ("stages.train_expert", "--base"): lambda t: [PATHS.base],
    ("stages.train_expert", "--data"): lambda t: [PATHS.task_data(t)],
    ("stages.train_expert", "--out"): lambda t: [PATHS.expert(t)],
    ("stages.train_router", "--base"): lambda t: [PATHS.base],
    ("stages.train_router", "--tasks-dir"): lambda t: [PATHS.tasks_dir],
    ("stages.train_router", "--out"): lambda t: [PATHS.router],
    ("stages.evaluate", "--base"): lambda t: [PATHS.base],
    ("stages.evaluate", "--experts"): lambda t: [PATHS.experts],
    ("stages.evaluate", "--router"): lambda t: [PATHS.router],
    ("stages.evaluate", "--tasks-dir"): lambda t: [PATHS.tasks_dir],
    ("stages.evaluate", "--predictions"): lambda t: [PATHS.predictions],
    ("stages.evaluate", "--metrics"): lambda t: [PATHS.eval_json],
    ("stages.evaluate", "--experts-report"): lambda t: [PATHS.experts_report],
}


def _substitute(node, item: str | None):
    if isinstance(node, str):
        return node.replace("${item}", item) if item is not None else node
    if isinstance(node, list):
        return [_substitute(x, item) for x in node]
    if isinstance(node, dict):
        return {_substitute(k, item): _substitute(v, item) for k, v in node.items()}
    return node


def _expand() -> dict[str, tuple[str | None, dict]]:
    """Every concrete stage (`name` or `name@item`) -> (item, its definition with ${item} substituted)."""
    out: dict[str, tuple[str | None, dict]] = {}
    for name, definition in DVC["stages"].items():
        if "foreach" not in definition:
            out[name] = (None, definition)
            continue
        items = definition["foreach"]
        if items == "${tasks}":
            items = PARAMS["tasks"]
        assert isinstance(items, list), f"{name}: unexpected foreach {items!r}"
        for item in items:
            out[f"{name}@{item}"] = (item, _substitute(definition["do"], item))
    return out


STAGES = _expand()


def _paths(entries) -> list[str]:
    """Paths of a deps/outs/metrics/plots list (plain strings or {path: options})."""
    out = []
    for entry in entries or []:
        out.extend([entry] if isinstance(entry, str) else list(entry))
    return out


def _commands(cmd: str) -> list[tuple[str, dict[str, list[str]], list[str]]]:
    """(module, {flag: values}, argv after the module) of each `python -m stages.x ...` in a cmd."""
    commands = []
    for segment in cmd.split("&&"):
        argv = shlex.split(segment)
        assert argv[:2] == ["python", "-m"] and argv[2].startswith("stages."), segment
        flags: dict[str, list[str]] = {}
        current = None
        for token in argv[3:]:
            if token.startswith("--"):
                assert token not in flags, f"{token} given twice in {segment!r}"
                current, flags[token] = token, []
            else:
                assert current is not None, f"a bare argument {token!r} in {segment!r}"
                flags[current].append(token)
        commands.append((argv[2], flags, argv[3:]))
    return commands


def test_the_dag_has_the_expected_stages():
    names = set(STAGES)
    assert {"base", "train_router", "evaluate", "gate"} <= names
    for task in PARAMS["tasks"]:
        assert {f"ingest@{task}", f"validate@{task}", f"train_expert@{task}"} <= names
    assert {"suite@general", "suite@language"} <= names


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_paths_are_declared_and_come_from_project_paths(stage):
    item, d = STAGES[stage]
    deps, outs = set(_paths(d.get("deps"))), set(_paths(d.get("outs")))
    outs |= set(_paths(d.get("metrics"))) | set(_paths(d.get("plots")))
    produced: set[str] = set()  # written by an earlier command of the same stage (`a && b`)
    for module, flags, argv in _commands(d["cmd"]):
        assert f"{module.replace('.', '/')}.py" in deps, f"{stage}: {module}'s code is not a dep"
        for flag, values in flags.items():
            if flag == "--task":
                assert values == [item], f"{stage}: --task {values} is not the foreach item {item!r}"
                continue
            assert flag in OUTPUT_FLAGS | INPUT_FLAGS, f"{stage}: unknown path flag {flag} (classify it in this test)"
            assert values, f"{stage}: {flag} without a path"
            expected = EXPECTED.get((module, flag))
            assert expected is not None, f"{stage}: no ProjectPaths rule for {module} {flag} (add it to EXPECTED)"
            assert values == [str(p) for p in expected(item)], f"{stage}: {module} {flag} {values}"
            for value in values:
                if flag in OUTPUT_FLAGS:
                    in_outs = value in outs or any(Path(o).parent == Path(value) for o in outs)
                    assert in_outs, f"{stage}: {module} writes {value} ({flag}) but it is not a declared out"
                    if flag == "--reports":
                        assert f"{value}/{item}.json" in outs and f"{value}/{item}.md" in outs, stage
                    produced.add(value)
                else:
                    from_here = value in produced and value in outs
                    assert value in deps or from_here, f"{stage}: {module} reads {value} ({flag}) but it is no dep"
        _check_stage_parser(stage, module, flags, argv)


def _check_stage_parser(stage: str, module: str, flags: dict[str, list[str]], argv: list[str]) -> None:
    """The stage's own parser accepts the command and reads each path as given."""
    mod = importlib.import_module(module)
    build = getattr(mod, "build_parser", None)
    if build is None:
        from stages._common import parser

        p = parser(mod.__doc__ or "")
    else:
        p = build()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse refuses an unknown flag
        raise AssertionError(f"{stage}: {module} does not accept {argv}") from e
    for flag, values in flags.items():
        got = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if flag == "--task":
            assert got == values[0]
        elif isinstance(got, list):
            assert [str(x) for x in got] == values, (stage, flag)
        else:
            assert str(got) == values[0], (stage, flag)


def test_the_gate_stage_declares_what_run_gate_writes():
    d = DVC["stages"]["gate"]
    assert _commands(d["cmd"]) == [("stages.gate", {}, [])]
    deps = set(_paths(d["deps"]))
    assert {str(PATHS.eval_json), str(PATHS.validation_reports), str(PATHS.base)} <= deps
    assert {str(PATHS.experts), str(PATHS.router)} <= deps
    assert _paths(d["metrics"]) == [str(PATHS.gate_json)]
    outs = set(_paths(d["outs"])) | set(_paths(d.get("plots")))
    assert str(PATHS.gate_lineage) in outs
    assert {str(PATHS.reports / "gate.md"), str(PATHS.reports / "gate.html")} <= outs
    assert str(PATHS.plots / "accuracy.json") in outs


def test_every_declared_out_is_written_by_one_stage_only():
    owner: dict[str, str] = {}
    for stage, (_, d) in STAGES.items():
        for out in _paths(d.get("outs")) + _paths(d.get("metrics")) + _paths(d.get("plots")):
            assert out not in owner, f"{out} is an out of both {owner[out]} and {stage}"
            owner[out] = stage


def test_every_dep_exists_or_is_produced_by_a_stage():
    produced = set()
    for _, d in STAGES.values():
        produced |= set(_paths(d.get("outs"))) | set(_paths(d.get("metrics")))
    for stage, (_, d) in STAGES.items():
        for dep in _paths(d.get("deps")):
            made = dep in produced or any(p.startswith(dep.rstrip("/") + "/") for p in produced)
            assert (REPO / dep).exists() or made, f"{stage}: dep {dep} neither exists nor is any stage's out"


def _has_key(data: dict, dotted: str) -> bool:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_every_declared_params_key_exists_in_params_yaml(stage):
    d = DVC["stages"][stage]
    d = d.get("do", d)
    keys = []
    for entry in d.get("params", []):
        assert isinstance(entry, str), f"{stage}: params from another file: {entry!r}"
        keys.append(entry)
    assert keys, f"{stage}: declares no params"
    missing = [k for k in keys if not _has_key(PARAMS, k)]
    assert not missing, f"{stage}: params {missing} are not in params.yaml"


def test_no_stage_declares_compute():
    """Changing `compute.threads` must re-run nothing."""
    for stage, d in DVC["stages"].items():
        d = d.get("do", d)
        assert not [k for k in d.get("params", []) if k.split(".")[0] == "compute"], stage


# --- c) every library package is under the rules -------------------------------------------------------------
def _library_modules() -> list[str]:
    names = []
    for entry in sorted((REPO / "mllmcl").iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.append(f"mllmcl.{entry.name}")
        elif entry.suffix == ".py" and entry.stem not in {"__init__", "__main__"}:
            names.append(f"mllmcl.{entry.stem}")
    return [n for n in names if n != "mllmcl.cli"]


def _contract(kind: str) -> dict:
    found = [c for c in CONTRACTS if c["type"] == kind]
    assert len(found) == 1, f"expected one {kind} contract"
    return found[0]


def test_the_library_list_is_not_empty():
    modules = _library_modules()
    assert {"mllmcl.config", "mllmcl.data", "mllmcl.model", "mllmcl.continual", "mllmcl.release"} <= set(modules)


@pytest.mark.parametrize("module", _library_modules())
def test_every_library_module_is_forbidden_prefect_and_dvc(module):
    contract = _contract("forbidden")
    assert {"prefect", "dvc"} <= set(contract["forbidden_modules"])
    assert module in contract["source_modules"], f"{module} escapes '{contract['name']}': add it to source_modules"


@pytest.mark.parametrize("module", [*_library_modules(), "mllmcl.cli"])
def test_every_library_module_has_a_layer(module):
    layers = [re.split(r"\s*\|\s*", layer.strip()) for layer in _contract("layers")["layers"]]
    assert any(module in layer for layer in layers), f"{module} is in no layer of the layers contract"


def test_the_cli_is_the_top_layer_and_errors_the_bottom():
    layers = _contract("layers")["layers"]
    assert layers[0] == "mllmcl.cli"
    assert layers[-1] == "mllmcl.errors"
