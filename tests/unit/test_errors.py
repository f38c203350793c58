"""The exit-code policy every entry point shares (mllmcl.entry.run): 0 ok, 1 a negative decision, 2 a user error
shown as one line without a traceback, 3 an internal error shown with its traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mllmcl.entry import run
from mllmcl.errors import (
    EXIT_DECISION,
    EXIT_INTERNAL_ERROR,
    EXIT_OK,
    EXIT_USER_ERROR,
    ConfigError,
    DataError,
    ModelLoadError,
    StorageError,
    UserError,
)

REPO = Path(__file__).resolve().parents[2]
ARGS = argparse.Namespace(root=Path("."), params=Path("params.yaml"))


def raising(error: BaseException):
    def main(args):
        raise error

    return main


def test_the_exit_codes_are_the_documented_ones():
    assert (EXIT_OK, EXIT_DECISION, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR) == (0, 1, 2, 3)


@pytest.mark.parametrize("kind", [ConfigError, DataError, StorageError, ModelLoadError, UserError])
def test_a_user_error_exits_2_with_one_line_and_no_traceback(capsys, kind):
    assert issubclass(kind, UserError)
    code = run(raising(kind("params.yaml: gate.max_prior_drop: 2.0 is not a number between 0 and 1")), ARGS)
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err == "error: params.yaml: gate.max_prior_drop: 2.0 is not a number between 0 and 1\n"
    assert "Traceback" not in captured.err and captured.out == ""


def test_a_user_error_raised_from_another_exception_still_shows_one_line(capsys):
    def main(args):
        try:
            {}["missing"]
        except KeyError as e:
            raise DataError("data/tasks/rs/train.jsonl: row 3: no 'question'") from e

    assert run(main, ARGS) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: data/tasks/rs/train.jsonl: row 3: no 'question'"]


@pytest.mark.parametrize(
    "error, name", [(KeyError("accuracy"), "KeyError"), (ZeroDivisionError("division by zero"), "ZeroDivisionError")]
)
def test_a_bug_exits_3_with_its_traceback(capsys, error, name):
    assert run(raising(error), ARGS) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert f"{name}:" in err
    assert "in main" in err  # the frame where it happened
    assert "internal error" in err and "bug" in err


def test_a_missing_third_party_module_is_a_user_error(capsys):
    assert run(raising(ModuleNotFoundError("No module named 'prefect'", name="prefect")), ARGS) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'prefect'" in err and "Traceback" not in err


def test_a_missing_module_of_the_project_itself_is_a_bug(capsys):
    assert run(raising(ModuleNotFoundError("No module named 'mllmcl.nope'", name="mllmcl.nope")), ARGS) == 3
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("returned, code", [(None, 0), (0, 0), (1, 1), (2, 2)])
def test_a_returned_status_is_passed_through(capsys, returned, code):
    assert run(lambda args: returned, ARGS) == code
    assert capsys.readouterr().err == ""


def test_an_interrupt_exits_130(capsys):
    assert run(raising(KeyboardInterrupt()), ARGS) == 130
    assert "interrupted" in capsys.readouterr().err


def test_the_cli_main_returns_the_status(tmp_path, capsys):
    from mllmcl.cli.main import main

    (tmp_path / "params.yaml").write_text("tasks: [rs]\ngate: {max_prior_drop: '3%'}\n", encoding="utf-8")
    assert main(["params", "check", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {tmp_path / 'params.yaml'}: gate.max_prior_drop: '3%' is not a number between 0 and 1"
    ]


def _mllmcl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mllmcl", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "text, needle",
    [
        ("tasks: [rs]\nregistry: {modle: mllmcl}\n", "registry.modle"),
        ("tasks: [rs\n", "not valid YAML"),
        (None, "not found"),
    ],
    ids=["unknown-key", "invalid-yaml", "no-params"],
)
def test_registry_list_on_a_broken_project_exits_2(tmp_path, text, needle):
    if text is not None:
        (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    proc = _mllmcl("registry", "list", "--root", str(tmp_path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "registry").exists(), "nothing is created for a project whose params are broken"
