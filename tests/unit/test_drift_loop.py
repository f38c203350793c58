"""The drift flows run under Prefect's test harness, with the production model stood in (the judging itself is
tests/monitoring's): a malformed traffic line is skipped and named, never a stalled loop; a batch named from outside
data/incoming/, or learned under an illegal or an existing task name, is refused in one line with nothing written;
and a flow run writes nothing under the user's home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mllmcl.paths import ProjectPaths
from monitoring.policy import Decision

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Prefect's test harness (a temporary server and database) for this module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def project(tmp_path):
    """A project (the shipped params, drift.min_batch=3) inside tmp_path/project, so that anything written beside
    it (tmp_path) shows."""
    root = tmp_path / "project"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["drift"]["min_batch"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture()
def judged(monkeypatch):
    """The production model stood in: every source handed to the monitor is recorded; a batch folder's decision is
    `decisions[name]` (default: no drift), traffic's is no drift."""
    seen, decisions = [], {}

    class FakeMonitor:
        def __init__(self, root, params):
            self.root = root

    def fake_monitor_batch(root, params, source, name, *, monitor):
        seen.append((name, source if isinstance(source, list) else Path(source)))
        decision = decisions.get(name, Decision("none", "none", "no drift"))
        return SimpleNamespace(drift_share=0.1), decision

    monkeypatch.setattr("monitoring.monitor.Monitor", FakeMonitor)
    monkeypatch.setattr("monitoring.monitor.monitor_batch", fake_monitor_batch)
    return SimpleNamespace(seen=seen, decisions=decisions)


@pytest.fixture()
def flow_log(monkeypatch):
    """What the drift flows log, by level (Prefect's own handlers keep its records from pytest's caplog)."""
    from prefect import get_run_logger

    import flows.drift_monitor

    lines: dict[str, list[str]] = {}

    class Recorder:
        def __init__(self, logger):
            self.logger = logger

        def __getattr__(self, level):
            def log(msg, *args):
                lines.setdefault(level, []).append(msg % args)
                getattr(self.logger, level)(msg, *args)

            return log

    monkeypatch.setattr(flows.drift_monitor, "get_run_logger", lambda: Recorder(get_run_logger()))
    return lines


def _traffic(t: str) -> str:
    line = {"time": t, "id": t, "question": "is there water?", "expert": "rs", "confidence": 0.9, "known": True}
    return json.dumps(line) + "\n"


def _labelled(folder: Path, task: str | None = None) -> Path:
    folder.mkdir(parents=True)
    lines = [{"id": f"r{i}", "question": f"what is {i}?", "answer": str(i)} for i in range(4)]
    (folder / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if task is not None:
        (folder / "meta.json").write_text(json.dumps({"task": task}))
    return folder


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if ".prefect" not in p.parts}


def test_a_malformed_traffic_line_is_named_and_skipped_and_the_batches_after_it_are_judged(
    harness, project, judged, flow_log
):
    from flows.drift_monitor import STATE_FILE, drift_monitor

    paths = ProjectPaths(project)
    day = paths.incoming / "traffic" / f"{datetime.now(UTC):%Y-%m-%d}.jsonl"
    day.parent.mkdir(parents=True)
    day.write_text(_traffic("T09") + "{not json\n" + _traffic("T08") + _traffic("T10"))
    _labelled(paths.incoming / "b1")
    result = drift_monitor(root=str(project), emit=False)
    assert {name.split("-")[0] for name in result} == {"traffic", "b1"}
    traffic = [source for name, source in judged.seen if name.startswith("traffic")]
    assert [r["time"] for r in traffic[0]] == ["T08", "T09", "T10"]
    assert any(f"skipped: {day}, line 2: malformed JSON" in line for line in flow_log["warning"]), flow_log
    state = json.loads((paths.incoming / STATE_FILE).read_text())
    assert state["traffic"][day.name]["offset"] == day.stat().st_size  # the bad line is never read again
    # a second server appends an older request, then the first a newer one: each is read once, none skipped
    judged.seen.clear()
    with day.open("a") as f:
        f.write(_traffic("T07") + _traffic("T11") + _traffic("T12"))
    drift_monitor(root=str(project), emit=False)
    assert [[r["time"] for r in s] for _, s in judged.seen] == [["T07", "T11", "T12"]]
    judged.seen.clear()
    assert drift_monitor(root=str(project), emit=False) == {} and judged.seen == []


def test_traffic_days_older_than_the_retention_are_read_then_deleted(harness, project, judged):
    from flows.drift_monitor import STATE_FILE, drift_monitor

    folder = ProjectPaths(project).incoming / "traffic"
    (folder / "images" / "2020-01-01").mkdir(parents=True)
    (folder / "2020-01-01.jsonl").write_text("".join(_traffic(f"2020-01-01T0{i}") for i in range(3)))
    today = folder / f"{datetime.now(UTC):%Y-%m-%d}.jsonl"
    today.write_text(_traffic("T1"))
    drift_monitor(root=str(project), emit=False)
    assert [len(s) for _, s in judged.seen] == [4]  # judged once more, then gone (drift.traffic_retention_days=30)
    assert sorted(p.name for p in folder.iterdir()) == [today.name, "images"]
    assert list((folder / "images").iterdir()) == []
    state = json.loads((ProjectPaths(project).incoming / STATE_FILE).read_text())
    assert list(state["traffic"]) == [today.name]


def test_the_monitor_refuses_to_emit_a_new_task_named_like_a_learned_one(harness, project, judged):
    from flows.drift_monitor import drift_monitor

    paths = ProjectPaths(project)
    _labelled(paths.incoming / "b1", task="rs")
    judged.decisions["b1"] = Decision("novel", "new_task", "unknown kind", labelled=True)
    result = drift_monitor(root=str(project), emit=True)
    assert "event" not in result["b1"] and "already learned" in result["b1"]["refused"]
    assert "not supported yet" in result["b1"]["refused"] and "\n" not in result["b1"]["refused"]
    assert not (paths.incoming / ".cooldowns.json").exists()  # nothing sent, no cooldown started


@pytest.fixture()
def stage_stubs(monkeypatch):
    """The continual stage and DVC stood in: a refusal must come before them; a regression calls them, not trains."""
    calls = []
    monkeypatch.setattr("flows.continual_stage.continual_stage", lambda **kw: calls.append(kw) or {"stage": "ran"})
    monkeypatch.setattr("flows.dvc_cli.add", lambda folder, root: calls.append(folder))
    return calls


@pytest.mark.parametrize(
    ("action", "batch", "task", "words"),
    [
        ("new_task", "OUTSIDE", None, "no absolute path"),
        ("new_task", "../../../outside", None, "no '..'"),
        ("alert", "/etc", None, "no absolute path"),
        ("new_task", "evil", "../evil", "not a task name"),
        ("new_task", "climb", "./../../x", "not a task name"),
        ("new_task", "again", "rs", "refreshing a learned task's expert from a batch is not supported yet"),
        ("new_task", "base", "base", "reserved"),
        ("new_task", "unlabelled", "shades", "line 1: a labelled request needs string 'question' and 'answer'"),
    ],
)
def test_the_drift_stage_refuses_a_batch_by_name_in_one_line_and_writes_nothing(
    harness, project, stage_stubs, action, batch, task, words
):
    from flows.drift_monitor import drift_stage

    outside = _labelled(project.parent / "outside")  # a real labelled batch, so only the name check stops it
    ProjectPaths(project).incoming.mkdir(parents=True, exist_ok=True)  # so that incoming/../../../outside is it
    if batch == "OUTSIDE":
        batch = str(outside)
    elif not batch.startswith(("/", "..")):
        folder = _labelled(ProjectPaths(project).incoming / batch, task=task)
        if batch == "unlabelled":
            (folder / "requests.jsonl").write_text(json.dumps({"id": "r0", "question": "what is 0?"}) + "\n")
    before = _tree(project.parent)
    state = drift_stage(root=str(project), action=action, batch=batch, return_state=True)
    assert state.is_failed() and words in state.message and "\n" not in state.message, state.message
    assert _tree(project.parent) == before and stage_stubs == []


def test_a_retried_drift_stage_goes_on_with_the_task_its_batch_was_learned_as(harness, project, stage_stubs):
    from flows.drift_monitor import LEARNED, drift_stage

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tasks"].append("shades")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    folder = _labelled(ProjectPaths(project).incoming / "b1", task="shades")
    (folder / LEARNED).write_text(json.dumps({"task": "shades"}))
    assert drift_stage(root=str(project), action="new_task", batch="b1") == {"stage": "ran"}
    assert len(stage_stubs) == 1 and "drift new_task: b1" in stage_stubs[0]["reason"]


def test_a_flow_run_and_a_figure_write_nothing_under_home(tmp_path):
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MPLCONFIGDIR", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    script = (
        "from flows.drift_monitor import drift_stage\n"
        "import sys\n"
        "assert drift_stage(root=sys.argv[-1], action='alert', batch='b1')['trained'] is False\n"
        "from mllmcl.plots import heatmap\n"
        "assert heatmap([[0.5]], ['rs'], 't', 'x', ['y']).startswith('data:image/png')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--root", str(project)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    assert (project / ".prefect").is_dir() and (project / ".cache" / "matplotlib").is_dir()
