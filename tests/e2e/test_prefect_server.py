"""The drift loop end to end, on a real local Prefect server on 127.0.0.1.

Production knows two tasks and is served by `mllmcl serve`; a client keeps sending requests the whole time. Traffic of
a third kind arrives, and a labelled batch of it is dropped under data/incoming/. The drift monitor judges both
(novel unlabelled traffic -> a labelling request; the novel labelled batch -> a new task) and emits
`mllmcl.drift.detected`; the served `on-drift` deployment learns the batch as a task and runs the continual stage;
the gate passes; the new version is promoted; the running server reloads it and routes the third kind to its new
expert. No client request fails along the way."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mllmcl.data.images import read_image_bytes
from tests import pipeline_project as pp

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
KNOWN, NEW = ["rs", "med"], "fin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _post(url: str, body: dict, timeout: float = 10):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
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


def _records(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def _labelled_batch(project: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A third task's data, generated with the embedded benchmark, dropped as a labelled production batch; returns
    the batch folder and held-out requests of that kind (not in the batch) for the client."""
    from mllmcl.config import load_params
    from mllmcl.data.ingest import ingest_task

    generated = tmp_path / "generated" / NEW
    ingest_task(NEW, load_params(project / "params.yaml").data, raw_dir=REPO / "data/raw" / NEW, out_dir=generated)
    batch = project / "data/incoming" / f"{NEW}_batch"
    (batch / "images").mkdir(parents=True)
    lines = []
    for r in _records(generated, "train"):
        (batch / "images" / Path(r["image"]).name).write_bytes(read_image_bytes(generated / r["image"]))
        lines.append({"id": r["id"], "image": f"images/{Path(r['image']).name}", "question": r["question"],
                      "answer": r["answer"]})  # fmt: skip
    (batch / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    meta = json.loads((generated / "meta.json").read_text())
    (batch / "meta.json").write_text(json.dumps({"task": NEW, "description": meta["description"]}))
    held_out = [{**r, "image": generated / r["image"]} for r in _records(generated, "test")]
    return batch, held_out


class Client(threading.Thread):
    """A bounded client loop on 127.0.0.1: one request at a time from a cycling list; every failure is kept."""

    def __init__(self, url: str, requests: list[dict]):
        super().__init__(daemon=True)
        self.url, self.requests = url, requests
        self.sent, self.failures, self.stop = 0, [], threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            r = self.requests[i % len(self.requests)]
            body = {"id": str(i), "question": r["question"], "image_base64": base64.b64encode(r["bytes"]).decode()}
            try:
                out = _post(self.url, body, timeout=120)
                if not out.get("expert"):
                    self.failures.append(f"request {i}: no expert in {out}")
            except (OSError, urllib.error.HTTPError, ValueError) as e:
                self.failures.append(f"request {i}: {e}")
            self.sent += 1
            i += 1
            time.sleep(0.3)


def _with_bytes(records: list[dict], folder: Path | None = None) -> list[dict]:
    return [{**r, "bytes": read_image_bytes(Path(folder / r["image"] if folder else r["image"]))} for r in records]


def test_drifted_traffic_becomes_a_served_new_expert(tmp_path, server_env, shared_dvc_cache):
    import yaml

    api = server_env["PREFECT_API_URL"]
    project = pp.make(tmp_path / "proj", KNOWN, cache=shared_dvc_cache)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["schedule"].update(cron=None, monitor_minutes=0, drift_requires_approval=False)  # the test runs the monitor
    params["serve"].update(reload_seconds=1.0, max_wait_ms=20)
    params["drift"].update(min_batch=20)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = subprocess.run(
        [sys.executable, "-m", "flows.continual_stage", "--root", str(project)],
        cwd=project,
        env=server_env,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0 and '"promoted": "v-' in first.stdout, first.stdout[-2000:] + first.stderr[-2000:]

    serve_port = _free_port()
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("deployments", "mllmcl-serve")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--root", str(project)],
            cwd=REPO,
            env=server_env,
            stdout=logs["deployments"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "mllmcl", "serve", "--root", str(project), "--port", str(serve_port)],
            cwd=REPO,
            env=server_env,
            stdout=logs["mllmcl-serve"],
            stderr=subprocess.STDOUT,
        ),
    ]
    url = f"http://127.0.0.1:{serve_port}"
    client = None
    try:
        before = _wait("mllmcl serve", lambda: _get(f"{url}/version"), timeout=180)
        assert before["tasks"] == KNOWN
        deployment = _wait(
            "the on-drift deployment", lambda: _get(f"{api}/deployments/name/drift_stage/on-drift"), timeout=120
        )
        _wait("the drift automation", lambda: _post(f"{api}/automations/filter", {}), timeout=60)

        batch, held_out = _labelled_batch(project, tmp_path)
        known = _with_bytes(
            [{**r, "image": project / "data/tasks" / t / r["image"]} for t in KNOWN
             for r in _records(project / "data/tasks" / t, "test")[:10]]
        )  # fmt: skip
        new_kind = _with_bytes(held_out[:30])
        client = Client(f"{url}/v1/predict", known + new_kind)
        client.start()
        _wait("30 answered requests", lambda: client.sent >= 30, timeout=600, every=2)

        monitor = subprocess.run(
            [sys.executable, "-m", "flows.drift_monitor", "--root", str(project)],
            cwd=REPO,
            env=server_env,
            capture_output=True,
            text=True,
        )
        assert monitor.returncode == 1, monitor.stdout[-3000:] + monitor.stderr[-3000:]
        assert f"{NEW}_batch: novel -> new_task" in monitor.stdout, monitor.stdout

        def finished_run():
            runs = _post(f"{api}/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
            done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
            return done[0] if done else None

        run = _wait("the drift-triggered stage", finished_run, timeout=1500, every=5)
        assert run["state_type"] == "COMPLETED", (run["state"], (tmp_path / "deployments.log").read_text()[-4000:])
        assert run["parameters"]["action"] == "new_task"

        from mllmcl.config import load_params
        from mllmcl.release.registry import Registry

        registry = Registry.from_params(load_params(project / "params.yaml"), project)
        promoted = registry.alias("production")["version"]
        assert promoted != before["version"]
        after = _wait("the server to reload", lambda: (v := _get(f"{url}/version"))["version"] == promoted and v, 120)
        assert after["tasks"] == [*KNOWN, NEW]

        answers = [
            _post(f"{url}/v1/predict", {"question": r["question"], "image_base64": base64.b64encode(r["bytes"]).decode()},
                  timeout=120)
            for r in _with_bytes(held_out[30:50])
        ]  # fmt: skip
        routed = sum(a["expert"] == NEW for a in answers)
        assert routed >= 16, [(a["expert"], a["confidence"]) for a in answers]
    finally:
        if client is not None:
            client.stop.set()
            client.join(timeout=180)
        for proc in procs:
            _stop(proc)
        for log in logs.values():
            log.close()
    assert client.sent >= 30 and not client.failures, client.failures[:5]
