"""A real local Prefect server on 127.0.0.1: `flows.serve` registers the drift-triggered deployment, the
`mllmcl.drift.detected` event is emitted from another process, and the triggered flow run completes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import pipeline_project as pp

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read() or b"null")


def _post(url: str, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _wait(what: str, fn, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def server_env(tmp_path):
    port = _free_port()
    env = {
        **pp.env(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PYTHONPATH": str(REPO),
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait("the Prefect server", lambda: _get(f"{env['PREFECT_API_URL']}/health"), timeout=120)
        yield env
    finally:
        _stop(server)
        log.close()
    assert server.poll() is not None


def test_a_drift_event_triggers_a_served_continual_stage(tmp_path, server_env):
    api = server_env["PREFECT_API_URL"]
    import yaml

    project = pp.make(tmp_path / "proj", ["rs"])
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["schedule"]["drift_requires_approval"] = False  # no reviewer in this test
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pp.dvc(project, "repro")  # cached pipeline: the triggered run only reads the gate and promotes
    serve_log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.serve", "--root", str(project)],
        cwd=REPO,
        env=server_env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deployment = _wait(
            "the on-drift deployment", lambda: _get(f"{api}/deployments/name/continual_stage/on-drift"), timeout=120
        )
        _wait("the drift automation", lambda: _post(f"{api}/automations/filter", {}), timeout=60)
        time.sleep(2)  # the trigger service loads new automations periodically
        emitted = subprocess.run(
            [sys.executable, "-m", "flows.events", "--project", "demo", "--batch", "batch-7", "--drift-share", "0.6"],
            cwd=REPO,
            env=server_env,
            capture_output=True,
            text=True,
        )
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr

        def finished_run():
            runs = _post(f"{api}/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
            done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
            return done[0] if done else None

        run = _wait("the triggered flow run", finished_run, timeout=240, every=2)
        assert run["state_type"] == "COMPLETED", (run["state"], (tmp_path / "serve.log").read_text()[-3000:])
        assert run["parameters"]["reason"] == "drift: batch-7"
        from mllmcl.config import load_params
        from mllmcl.release.registry import Registry

        production = Registry.from_params(load_params(project / "params.yaml"), project).alias("production")
        assert production, "the triggered stage promoted nothing"
    finally:
        _stop(serve)
        serve_log.close()
