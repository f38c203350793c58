"""The DVC side of orchestration: the DAG's stages in topological order, which of them are stale, running
one stage, and moving data to and from the remote. Each call is a `dvc` subprocess or DVC's own API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DVC_ENV = {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _env() -> dict[str, str]:
    env = {**os.environ, **DVC_ENV}
    bin_dir = str(Path(sys.executable).parent)  # stage commands call `python`: the same environment's
    if not env.get("PATH", "").startswith(bin_dir):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def dvc(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{_tail(proc)}")
    return proc


class DvcError(RuntimeError):
    pass


def _tail(proc: subprocess.CompletedProcess, lines: int = 40) -> str:
    text = (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def stage_order(root: Path) -> list[str]:
    """Pipeline stages of dvc.yaml (foreach items as `name@item`) in an order that respects every edge."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        order = [s for s in nx.topological_sort(graph) if isinstance(s, PipelineStage)]
        # DVC's graph points from a stage to what it depends on: reverse it so producers run first
        return [_address(root, s) for s in reversed(order)]


def _address(root: Path, stage) -> str:
    """`name` for stages of the root dvc.yaml, `sub/dvc.yaml:name` otherwise: the form `dvc status` and
    `dvc repro` use when run from the project root (DVC's own `addressing` is relative to the CWD)."""
    rel = os.path.relpath(stage.path, root)
    return stage.name if rel == "dvc.yaml" else f"{rel}:{stage.name}"


def stale_stages(root: Path) -> set[str]:
    """Stages `dvc status` reports as changed (and their downstream, which DVC lists too)."""
    proc = dvc(root, "status", "--json", check=True)
    out = proc.stdout.strip()
    return set(json.loads(out)) if out else set()


def repro_stage(root: Path, stage: str) -> str:
    """Reproduce one stage (only if stale; its upstream is assumed done). Returns its output for the logs."""
    proc = dvc(root, "repro", "--single-item", stage)
    if proc.returncode != 0:
        raise DvcError(f"stage {stage} failed:\n{_tail(proc)}")
    return (proc.stdout or "") + (proc.stderr or "")


def has_remote(root: Path) -> bool:
    proc = dvc(root, "remote", "list")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def push(root: Path) -> str:
    return dvc(root, "push", "--run-cache", check=True).stdout


def pull(root: Path) -> str:
    proc = dvc(root, "pull", "--run-cache", "--allow-missing")
    if proc.returncode != 0:
        raise DvcError(f"dvc pull failed:\n{_tail(proc)}")
    return proc.stdout
