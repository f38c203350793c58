"""The continual-stage flow on a real Dask cluster (2 local worker processes) with a real S3 remote (moto on
loopback): both new experts train on the workers in their own checkouts, the coordinator restores them from DVC's
run-cache instead of training them again, the gate passes; a worker killed mid-stage has its stage run elsewhere."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import pytest
import yaml

from tests import pipeline_project as pp

pytestmark = pytest.mark.slow


def _kill_first_running_stage(scratch, killed: dict, stop: threading.Event) -> None:
    """Wait until a worker is training a stage, then kill that worker and the stage's processes (the machine is gone)."""
    while not stop.is_set():
        for marker in scratch.glob("checkouts/*/.mllmcl-worker.json"):
            try:
                info = json.loads(marker.read_text())
                log = (marker.parent / "worker.log").read_text()
            except (OSError, json.JSONDecodeError):
                continue
            if "pgid" in info and "Running stage" in log:
                time.sleep(1.0)  # mid-training
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(info["pgid"], signal.SIGKILL)  # the stage's processes
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info["pid"], signal.SIGKILL)  # the worker itself
                killed.update(info)
                return
        time.sleep(0.2)


def test_new_experts_train_on_dask_workers_and_are_restored_from_the_run_cache(
    tmp_path, harness, moto_server, shared_dvc_cache
):
    from flows.continual_stage import continual_stage

    root = pp.make(tmp_path / "proj", ["rs", "fin"], cache=shared_dvc_cache)  # workers: caches of their own
    scratch = tmp_path / "workers"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["storage"] = {
        "dvc_remote": f"s3://{moto_server['bucket']}/distributed",
        "s3": {"endpoint_url": moto_server["url"], "region": "us-east-1"},
    }
    params["cluster"] = {"enabled": True, "workers": 2, "cpus_per_stage": 1, "scratch": str(scratch), "retries": 0}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pp.run(["git", "commit", "-qam", "a distributed S3 project"], root)

    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_running_stage, args=(scratch, killed, stop), daemon=True)
    killer.start()
    try:
        summary = continual_stage(root=str(root), promote=False, push=True)
    finally:
        stop.set()
        killer.join(timeout=10)

    assert summary["decision"] == "pass"
    workers = {r["stage"]: r for r in summary["distributed"]}
    assert set(workers) == {"train_expert@rs", "train_expert@fin"}
    assert all(r["ran"] and r["worker"].startswith("tcp://127.0.0.1:") for r in workers.values())
    # the coordinator restored both experts from the run-cache: DVC ran neither here
    here = {s["stage"]: s for s in summary["stages"]}
    for stage in workers:
        assert here[stage]["restored"], f"{stage} was trained again on the coordinator"
    assert (root / "models/experts/rs/adapter_model.safetensors").exists() or any(
        (root / "models/experts/rs").rglob("*.safetensors")
    )
    assert "train_expert@rs" in yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    # the stage of the killed worker ran to the end elsewhere (Dask rescheduled it: cluster.retries is 0 here)
    assert killed, "no stage was seen running on a worker"
    finished = workers[killed["stage"]]
    assert finished["pid"] != killed["pid"]
    assert pp.dvc(root, "status").stdout.strip() in ("", "Data and pipelines are up to date.")
