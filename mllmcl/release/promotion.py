"""From workspace to registry: publish the gated candidate with its lineage (git commit, dvc.lock stage hashes,
params, eval, gate) and move an alias to it. Used by `mllmcl registry promote`, `mllmcl run` and the Prefect
flow, so every promotion records the same facts and obeys the same rule (`require_promotable`)."""

from __future__ import annotations

import json
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import UserError
from mllmcl.paths import ProjectPaths
from mllmcl.release.candidate import candidate_files
from mllmcl.release.lineage import dvc_lock_hashes, git_commit, git_dirty
from mllmcl.release.registry import Registry, candidate_id


class PromotionRefused(UserError):
    """The gate said no (or a forced promotion gave no reason)."""


def require_promotable(gate: dict | None, *, force: bool, reason: str, what: str) -> None:
    """The one promotion rule: a passing gate, or `force` with a recorded reason."""
    if force and not reason.strip():
        raise PromotionRefused('--force needs --reason "..." (it is recorded in the manifest and the alias)')
    decision = (gate or {}).get("decision")
    if decision != "pass" and not force:
        failed = ", ".join(c["name"] for c in (gate or {}).get("checks", []) if not c["passed"]) or "no gate result"
        raise PromotionRefused(
            f"{what} did not pass its gate ({failed}); refusing to promote "
            '(use --force --reason "..." to override, recorded in the manifest)'
        )


def report_files(paths: ProjectPaths) -> dict[str, Path]:
    """The gate's metrics and reports that exist, keyed by their path inside a registry version (they are published with
    the model)."""
    candidates = {
        "metrics/eval.json": paths.eval_json,
        "metrics/gate.json": paths.gate_json,
        "reports/gate.md": paths.reports / "gate.md",
        "reports/gate.html": paths.reports / "gate.html",
        "reports/experts.json": paths.experts_report,
        "reports/gate_lineage.json": paths.gate_lineage,
    }
    return {name: p for name, p in candidates.items() if p.exists()}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def build_manifest(
    params: Params, paths: ProjectPaths, *, forced: bool = False, reason: str = "", approved_by: str | None = None
) -> dict:
    """A version's manifest: tasks, base, params, git and dvc.lock lineage, eval and gate results, and whether (and why)
    the promotion was forced or approved."""
    return {
        "tasks": list(params.tasks),
        "base": {"build": params.base.build, "name_or_path": params.base.name_or_path},
        "params": params.dump(),
        "git_commit": git_commit(paths.root),
        "git_dirty": git_dirty(paths.root),
        "dvc_lock": dvc_lock_hashes(paths.dvc_lock),
        "eval": _load(paths.eval_json),
        "gate": _load(paths.gate_json),
        "forced": forced,
        "reason": reason,
        "approved_by": approved_by,
    }


def promote_candidate(
    params: Params,
    paths: ProjectPaths,
    *,
    force: bool = False,
    reason: str = "",
    approved_by: str | None = None,
    alias: str = "production",
) -> str:
    """Publish the workspace's candidate (if not yet published) and flip `alias` to it."""
    gate = _load(paths.gate_json)
    if gate is None:
        raise PromotionRefused(f"{paths.gate_json}: no gate result (run the pipeline first)")
    require_promotable(gate, force=force, reason=reason, what=f"candidate {gate.get('candidate')}")
    files = candidate_files(params, paths)
    version = candidate_id(files)
    if gate.get("candidate") != version:
        raise PromotionRefused(
            f"the gate judged {gate.get('candidate')} but the workspace holds {version}: "
            "re-run the gate (`dvc repro` or `mllmcl gate`) before promoting"
        )
    registry = Registry.from_params(params, paths.root)
    known = {m["version"] for m in registry.list_versions()}
    if version not in known:
        manifest = build_manifest(
            params, paths, forced=force and gate["decision"] != "pass", reason=reason, approved_by=approved_by
        )
        registry.publish(version, {**files, **report_files(paths)}, manifest)
    current = registry.alias(alias)
    if current and current["version"] == version:
        return version
    registry.promote(version, alias, reason=reason or f"gate {gate['decision']}", by=approved_by)
    return version


def promote_version(
    registry: Registry, version: str, *, alias: str = "production", force: bool = False, reason: str = ""
) -> str:
    """Move `alias` to an already published version, under the same rule as a workspace candidate."""
    manifest = registry.manifest(version)
    require_promotable(manifest.get("gate"), force=force, reason=reason, what=f"version {version}")
    registry.promote(version, alias, reason=reason)
    return version
