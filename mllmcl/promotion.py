"""From workspace to registry: collect the candidate's files, record its lineage (git commit, dvc.lock
stage hashes, params, eval, gate) and publish + promote it. Used by `mllmcl registry promote`,
`mllmcl run` and the Prefect flow, so every promotion records the same facts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from mllmcl.config import tasks as task_list
from mllmcl.errors import UserError
from mllmcl.registry import Registry, candidate_id


def candidate_files(params: dict, root: Path) -> dict[str, Path]:
    """Model files of the candidate, keyed by their path inside a registry version."""
    files: dict[str, Path] = {}

    def add_dir(src: Path, prefix: str) -> None:
        if not src.is_dir():
            raise UserError(f"{src}: missing (run `dvc repro` first)")
        for p in sorted(src.rglob("*")):
            if p.is_file():
                files[f"{prefix}/{p.relative_to(src).as_posix()}"] = p

    if params["base"].get("build", "tiny") == "tiny":
        add_dir(root / "models/base", "base")
    for task in task_list(params):
        add_dir(root / "models/experts" / task, f"experts/{task}")
    add_dir(root / "models/router", "router")
    return files


def report_files(root: Path) -> dict[str, Path]:
    names = ["metrics/eval.json", "metrics/gate.json", "reports/gate.md", "reports/gate.html", "reports/experts.json"]
    return {n: root / n for n in names if (root / n).exists()}


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(root: Path) -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def dvc_lock_hashes(root: Path) -> dict[str, dict]:
    """Per stage: the md5 of every dep and out that dvc.lock records (the candidate's data state)."""
    path = root / "dvc.lock"
    if not path.exists():
        return {}
    lock = yaml.safe_load(path.read_text()) or {}
    out = {}
    for stage, entry in (lock.get("stages") or {}).items():
        out[stage] = {d["path"]: d.get("md5") for kind in ("deps", "outs") for d in entry.get(kind, []) or []}
    return out


def build_manifest(params: dict, root: Path, *, forced: bool = False, reason: str = "",
                   approved_by: str | None = None) -> dict:
    def load(rel):
        p = root / rel
        return json.loads(p.read_text()) if p.exists() else None

    base = params["base"]
    return {
        "tasks": task_list(params),
        "base": {"build": base.get("build", "tiny"), "name_or_path": base.get("name_or_path")},
        "params": params,
        "git_commit": git_commit(root),
        "git_dirty": git_dirty(root),
        "dvc_lock": dvc_lock_hashes(root),
        "eval": load("metrics/eval.json"),
        "gate": load("metrics/gate.json"),
        "forced": forced,
        "reason": reason,
        "approved_by": approved_by,
    }


def promote_candidate(params: dict, root: Path, *, force: bool = False, reason: str = "",
                      approved_by: str | None = None, alias: str = "production") -> str:
    """Publish the workspace's candidate (if not yet published) and flip `alias` to it."""
    gate_path = root / "metrics/gate.json"
    if not gate_path.exists():
        raise UserError(f"{gate_path}: no gate result (run the pipeline first)")
    gate = json.loads(gate_path.read_text())
    if gate["decision"] != "pass" and not force:
        failed = ", ".join(c["name"] for c in gate["checks"] if not c["passed"])
        raise UserError(f"candidate {gate.get('candidate')} failed the gate ({failed}); refusing to promote "
                        "(use --force --reason \"...\" to override, recorded in the manifest)")
    if force and not reason.strip():
        raise UserError("--force needs --reason \"...\" (it is recorded in the manifest)")
    files = candidate_files(params, root)
    version = candidate_id(files)
    if gate.get("candidate") != version:
        raise UserError(f"the gate judged {gate.get('candidate')} but the workspace holds {version}: "
                        "re-run the gate (`dvc repro` or `mllmcl gate`) before promoting")
    registry = Registry.from_params(params, root)
    known = {m["version"] for m in registry.list_versions()}
    if version not in known:
        manifest = build_manifest(params, root, forced=force and gate["decision"] != "pass", reason=reason,
                                  approved_by=approved_by)
        registry.publish(version, {**files, **report_files(root)}, manifest)
    current = registry.alias(alias)
    if current and current["version"] == version:
        return version
    registry.promote(version, alias, reason=reason or f"gate {gate['decision']}", by=approved_by)
    return version
