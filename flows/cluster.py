"""Independent DVC stages (every stale expert) on Dask workers through Prefect's Dask task runner.

Why Dask (prefect-dask) and not Ray: pure-Python wheels that resolve against our lock, a `LocalCluster` of real
worker processes for one machine and tests, the same API against a scheduler on many machines, and Dask reschedules
a task whose worker died. Ray brings its own object store and a large binary wheel for no gain on stages that talk
only through files.

Each stage runs in its own checkout on the worker: the workspace's git files travel as a snapshot (flows.snapshot),
the stage's cached inputs come from the DVC remote, DVC runs exactly that stage, and the worker pushes the outputs
plus the run-cache entry. The coordinator then restores the stage from the run-cache (`dvc repro --pull`): nothing is
trained twice, and dvc.lock records the stage as if it had run here. The remote is all that workers share."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import dag, dvc_cli, snapshot
from mllmcl.config import ClusterConfig
from mllmcl.data.tasks import edit_params

MARKER = ".mllmcl-worker.json"  # in each checkout: which worker runs which stage (operators and tests read it)


def scratch_root(scratch: str | None) -> Path:
    """Where workers keep checkouts and their shared DVC cache."""
    return Path(scratch) if scratch else Path(os.environ.get("TMPDIR", "/tmp")) / "mllmcl-workers"


def stage_resources(cfg: ClusterConfig) -> dict[str, int]:
    """Dask resources one stage takes: CPU always, GPU when it needs any."""
    return {"CPU": cfg.cpus_per_stage, **({"GPU": cfg.gpus_per_stage} if cfg.gpus_per_stage else {})}


def task_runner(cfg: ClusterConfig, api_url: str | None = None):
    """Prefect's Dask task runner on `cfg.address`, or on a local cluster of `cfg.workers` processes (loopback only)
    whose workers report to the same Prefect API as this flow."""
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    env = {"PREFECT_API_URL": api_url} if api_url else {}
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cfg.workers,
            "threads_per_worker": 1,  # one stage per worker at a time; the stage itself uses cpus_per_stage threads
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            "resources": stage_resources(cfg),  # each worker: room for exactly one stage
            "env": env,
        },
    )


def _give_threads(params: dict, threads: int) -> None:
    """The checkout's `compute.threads` = what the worker gives one stage (`compute` is no DVC param: run-cache keys
    do not change)."""
    params.setdefault("compute", {})["threads"] = threads


def _run_logged(cmd: list[str], cwd: Path, log: Path, marker: dict) -> int:
    """Run `cmd` in its own process group (recorded in the checkout's marker, so the whole stage can be stopped),
    its output appended to `log`."""
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=dvc_cli.env(), stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        marker["pgid"] = proc.pid
        (cwd / MARKER).write_text(json.dumps(marker))
        try:
            return proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise


@task(name="worker-stage", cache_policy=NO_CACHE)
def run_on_worker(
    workspace: bytes,
    stage: str,
    inputs: dag.StageInputs,
    scratch: str | None,
    threads: int,
    remote_folder: str | None = None,
) -> dict:
    """Run one DVC stage in a fresh checkout on this worker and push its outputs and run-cache entry to the remote."""
    logger = get_run_logger()
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = "local"
    root = scratch_root(scratch)
    checkout = root / "checkouts" / f"{stage.replace('@', '-').replace('/', '_')}-{uuid.uuid4().hex[:8]}"
    snapshot.unpack(workspace, checkout)
    # no git in a checkout; one DVC cache per worker machine, shared by its checkouts
    local = f"[core]\n    no_scm = true\n[cache]\n    dir = {root / 'cache'}\n"
    if remote_folder:  # a folder remote is relative to the workspace's .dvc/config: name it absolutely here
        local += f"['remote \"{dvc_cli.REMOTE}\"']\n    url = {remote_folder}\n"
    (checkout / ".dvc" / "config.local").write_text(local)
    edit_params(checkout / "params.yaml", lambda data: _give_threads(data, threads))
    marker = {"stage": stage, "worker": address, "host": socket.gethostname(), "pid": os.getpid()}
    (checkout / MARKER).write_text(json.dumps(marker))
    logger.info(
        "%s: running on worker %s (host %s, pid %d) in %s", stage, address, marker["host"], os.getpid(), checkout
    )
    log = checkout / "worker.log"
    t0 = time.perf_counter()
    steps = [
        ("pull inputs", dvc_cli.argv("pull", *inputs.pull) if inputs.pull else None),
        ("run", dvc_cli.argv("repro", "--single-item", stage)),
        ("push outputs and run-cache", dvc_cli.argv("push", "--run-cache")),
    ]
    for what, cmd in steps:
        if cmd is None:
            continue
        rc = _run_logged(cmd, checkout, log, marker)
        if rc != 0:
            tail = "\n".join(log.read_text().splitlines()[-30:])
            raise dag.DvcError(
                f"{stage} on worker {address}: {what} failed ({rc}); checkout kept at {checkout}\n{tail}"
            )
    seconds = round(time.perf_counter() - t0, 2)
    output = log.read_text()
    for line in output.strip().splitlines()[-15:]:
        logger.info("%s | %s", stage, line)
    logger.info("%s: trained on worker %s in %.1f s; outputs and run-cache pushed", stage, address, seconds)
    shutil.rmtree(checkout, ignore_errors=True)
    return {**marker, "seconds": seconds, "ran": stage in dag.ran_stages(output)}


@flow(name="distributed_stages")
def distributed_stages(root: str, stages: list[str], cfg: dict, remote_folder: str | None = None) -> list[dict]:
    """Fan `stages` (independent of each other, their upstream already done and pushed) out to the task runner's
    workers and wait for all; a stage whose worker dies is rescheduled by Dask, one that fails is retried."""
    project = Path(root)
    cluster = ClusterConfig(**cfg)
    inputs = dag.stage_inputs(project, stages)
    copy = sorted({p for i in inputs.values() for p in i.copy})
    workspace = snapshot.pack(project, copy)
    get_run_logger().info(
        "%d stages to %s; workspace snapshot %.1f MB", len(stages), _where(cluster), len(workspace) / 1e6
    )
    job = run_on_worker.with_options(retries=cluster.retries, retry_delay_seconds=2)
    # a remote cluster's workers declare no CPU resource unless started with --resources: ask only for GPUs there
    resources = stage_resources(cluster)
    if cluster.address:
        resources.pop("CPU")
    import dask

    with dask.annotate(**({"resources": resources} if resources else {})):
        futures = [
            job.with_options(task_run_name=f"worker:{s}").submit(
                workspace, s, inputs[s], cluster.scratch, cluster.cpus_per_stage, remote_folder
            )
            for s in stages
        ]
    return [f.result() for f in futures]


def _where(cluster: ClusterConfig) -> str:
    return cluster.address or f"a local cluster of {cluster.workers} workers"


def run_distributed(project: Path, stages: list[str], cluster: ClusterConfig, remote: str | None) -> list[dict]:
    """Run `distributed_stages` as a subflow on the configured Dask cluster (a local one is started and stopped).
    `remote`: storage.dvc_remote; a folder there is only reachable by workers that share this machine's disk."""
    from prefect.context import get_run_context

    try:
        api_url = str(get_run_context().client.api_url)
    except Exception:
        api_url = None
    runner = task_runner(cluster, api_url=api_url.rstrip("/") if api_url else None)
    folder = str((project / remote).resolve()) if remote and "://" not in remote else None
    return distributed_stages.with_options(task_runner=runner)(
        root=str(project), stages=stages, cfg=cluster.model_dump(), remote_folder=folder
    )
