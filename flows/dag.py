"""The DVC side of orchestration: the DAG's stages in topological order, which of them are stale, running
one stage, and moving data to and from the remote. Each call is a `dvc` subprocess or DVC's own API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flows.dvc_cli import DvcError, dvc, has_remote, pull, push, tail

__all__ = ["DvcError", "dvc", "has_remote", "pull", "push", "repro_stage", "stage_order", "stale_stages"]


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
        raise DvcError(f"stage {stage} failed:\n{tail(proc)}")
    return (proc.stdout or "") + (proc.stderr or "")
