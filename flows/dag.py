"""The DVC side of orchestration: the DAG's stages in topological order, which of them are stale, running
one stage, and moving data to and from the remote. Each call is a `dvc` subprocess or DVC's own API."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from flows.dvc_cli import DvcError, dvc, has_remote, pull, push, tail

__all__ = [
    "DvcError",
    "StageInputs",
    "dvc",
    "fetch_run_cache",
    "has_remote",
    "pull",
    "push",
    "repro_stage",
    "stage_inputs",
    "stage_order",
    "stale_stages",
    "upstream_stages",
]


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


def repro_stage(root: Path, stage: str, pull: bool = False) -> str:
    """Reproduce one stage (only if stale; its upstream is assumed done). Returns its output for the logs. `pull`:
    outputs DVC finds in its run-cache (a worker trained them) are pulled from the remote instead of recomputed."""
    proc = dvc(root, "repro", "--single-item", *(["--pull"] if pull else []), stage)
    if proc.returncode != 0:
        raise DvcError(f"stage {stage} failed:\n{tail(proc)}")
    return (proc.stdout or "") + (proc.stderr or "")


RESTORED = "is cached - skipping run"  # what `dvc repro` prints when it restores a stage from the run-cache


def ran_stages(output: str) -> list[str]:
    """Stages `dvc repro` actually executed, from its own output."""
    return [line.split("'")[1] for line in output.splitlines() if line.strip().startswith("Running stage '")]


def restored_from_run_cache(output: str) -> bool:
    """Whether `dvc repro` output says the stage was restored from the run-cache rather than run."""
    return RESTORED in output


def restored_stages(output: str) -> list[str]:
    """Stages `dvc repro` restored from the run-cache instead of running them ("Stage 'x' is cached - skipping run")."""
    return [line.split("'")[1] for line in output.splitlines() if RESTORED in line and "'" in line]


def fetch_run_cache(root: Path) -> str:
    """The remote's run-cache entries (which stage runs exist, keyed by their inputs): `repro --pull` then restores
    a stage a worker already ran."""
    return dvc(root, "fetch", "--run-cache", check=True).stdout


def _stages_by_address(root: Path, repo):
    from dvc.stage import PipelineStage

    return {_address(root, s): s for s in repo.index.graph if isinstance(s, PipelineStage)}


def upstream_stages(root: Path, stages: list[str]) -> set[str]:
    """Pipeline stages that `stages` depend on, directly or not (the stages themselves excluded)."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:
        by_address = _stages_by_address(root, repo)
        out: set[str] = set()
        for name in stages:
            out |= {
                _address(root, s)
                for s in nx.descendants(repo.index.graph, by_address[name])
                if isinstance(s, PipelineStage)
            }
        return out - set(stages)


@dataclass(frozen=True)
class StageInputs:
    """What a checkout without this workspace's files needs before it can run one stage."""

    pull: list[str]  # deps DVC caches (outputs of other stages, `dvc add`ed data): `dvc pull` them
    copy: list[str]  # deps that are uncached outputs (validation reports): they travel with the checkout


def stage_inputs(root: Path, stages: list[str]) -> dict[str, StageInputs]:
    """For each stage, its deps split into what a worker pulls from the remote and what must be copied to it; code
    and params are neither (git carries them)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        by_address = _stages_by_address(root, repo)
        outs = {os.path.relpath(out.fs_path, root): out.use_cache for s in repo.index.stages for out in s.outs}
        result = {}
        for stage in stages:
            pull, copy = set(), set()
            for dep in by_address[stage].deps:
                rel = os.path.relpath(dep.fs_path, root)
                for path, cached in outs.items():
                    if path == rel or path.startswith(rel + os.sep):
                        (pull if cached else copy).add(path)
            result[stage] = StageInputs(pull=sorted(pull), copy=sorted(copy))
        return result
