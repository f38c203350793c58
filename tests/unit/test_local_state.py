"""Where entry points keep local state: Prefect's home and matplotlib's cache inside the project named by --root
(a value the user set wins), read from the command line before prefect is imported. That a flow run then writes
nothing under HOME is tests/unit/test_drift_loop.py's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mllmcl.entry import local_state_environment, root_from_argv


@pytest.mark.parametrize(
    ("argv", "root"),
    [([], "."), (["--root", "/p/q", "--no-emit"], "/p/q"), (["--root=/p"], "/p"), (["--root"], "."), (["x"], ".")],
)
def test_the_root_is_read_from_the_command_line_before_the_parser_runs(argv, root):
    assert root_from_argv(argv) == Path(root)


def test_prefect_and_matplotlib_state_live_in_the_project_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", "/somewhere/chosen")
    local_state_environment(tmp_path)

    assert os.environ["PREFECT_HOME"] == str(tmp_path.resolve() / ".prefect")
    assert os.environ["MPLCONFIGDIR"] == "/somewhere/chosen"  # the user's choice wins
