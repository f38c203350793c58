"""From workspace to registry: publish the gated candidate with its lineage (git commit, dvc.lock stage hashes,
params, eval, gate) and move an alias to it. Used by `mllmcl registry promote`, `mllmcl run` and the Prefect
flow, so every promotion records the same facts and obeys the same rule (`require_promotable`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import UserError
from mllmcl.paths import ProjectPaths
from mllmcl.release.candidate import candidate_files, load_evaluation, workspace_fingerprint
from mllmcl.release.evidence import StaleEvaluation, recorded, require_current
from mllmcl.release.lineage import dvc_lock_hashes, git_commit, git_dirty, reproducibility_problems
from mllmcl.release.registry import PromotionConflict, Registry


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
    found = {name: p for name, p in candidates.items() if p.exists()}
    if paths.predictions.is_dir():  # every answer, so that the next gate can pair its answers with these
        for p in sorted(paths.predictions.glob("*.jsonl")):
            found[f"reports/predictions/{p.name}"] = p
    return found


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def build_manifest(
    params: Params,
    paths: ProjectPaths,
    *,
    forced: bool = False,
    reason: str = "",
    approved_by: str | None = None,
    problems: list[str] | None = None,
    evaluation: dict | None = None,
) -> dict:
    """A version's manifest: tasks, base, params, git and dvc.lock lineage, eval and gate results, and whether (and why)
    the promotion was forced or approved."""
    evaluation = evaluation if evaluation is not None else (_load(paths.eval_json) or {})
    judged_base = (recorded(evaluation) or {}).get("base") or {}
    return {
        "tasks": list(params.tasks),
        "base": {"build": params.base.build, "name_or_path": params.base.name_or_path, **judged_base},
        "params": params.dump(),
        "git_commit": git_commit(paths.root),
        "git_dirty": git_dirty(paths.root),
        "dvc_lock": dvc_lock_hashes(paths.dvc_lock),
        "eval": evaluation or None,
        "gate": _load(paths.gate_json),
        "forced": forced,
        "reason": reason,
        "approved_by": approved_by,
        "reproducible": {"ok": not problems, "problems": list(problems or [])},
    }


@dataclass
class Promotion:
    """What a promotion did: the version now behind the alias, and whether its recipe reproduces it."""

    version: str
    alias: str
    published: bool
    moved: bool
    problems: list[str]

    @property
    def reproducible(self) -> bool:
        return not self.problems


def promote_candidate(
    params: Params,
    paths: ProjectPaths,
    *,
    force: bool = False,
    reason: str = "",
    approved_by: str | None = None,
    alias: str = "production",
    pushed: bool | None = None,
    require_reproducible: bool = False,
) -> Promotion:
    """Publish the workspace's candidate (if not yet published) and flip `alias` to it. Refused when the gate failed
    (unless forced with a reason), when the gate judged another candidate or another production than the one in force
    now, and, with `require_reproducible`, when the recipe would not rebuild it; otherwise non-reproducibility is
    recorded in the manifest."""
    gate = _load(paths.gate_json)
    if gate is None:
        raise PromotionRefused(f"{paths.gate_json}: no gate result (run the pipeline first)")
    require_promotable(gate, force=force, reason=reason, what=f"candidate {gate.get('candidate')}")
    files = candidate_files(params, paths)
    evaluation, eval_sha256 = load_evaluation(paths.eval_json)  # one read: checked, digested and published
    judged = workspace_fingerprint(params, paths)
    require_current(evaluation, judged, where=paths.eval_json)
    version = judged["candidate"]
    if gate.get("candidate") != version:
        raise PromotionRefused(
            f"the gate judged {gate.get('candidate')} but the workspace holds {version}: "
            "re-run the gate (`dvc repro` or `mllmcl gate`) before promoting"
        )
    if gate.get("evaluation_sha256") != eval_sha256:
        raise StaleEvaluation(
            f"{paths.gate_json}: the gate judged another {paths.eval_json} than the one here: re-run the gate "
            "(`dvc repro gate` or `mllmcl gate`) before promoting"
        )
    registry = Registry.from_params(params, paths.root)
    current = registry.alias(alias)
    in_force = current["version"] if current else None
    if current and current["version"] == version:
        return Promotion(version, alias, published=False, moved=False, problems=[])
    if gate.get("baseline") != in_force:
        raise PromotionRefused(
            f"the gate compared {version} with {gate.get('baseline') or 'no production'}, but {alias} is now "
            f"{in_force or 'unset'}: re-run the gate (`mllmcl gate`) before promoting"
        )
    problems = reproducibility_problems(paths.root, pushed=pushed)
    if problems and require_reproducible:
        raise PromotionRefused(f"candidate {version} would not reproduce from its recipe: {'; '.join(problems)}")
    forced = force and gate["decision"] != "pass"
    published = version not in {m["version"] for m in registry.list_versions()}
    if published:
        manifest = build_manifest(
            params,
            paths,
            forced=forced,
            reason=reason,
            approved_by=approved_by,
            problems=problems,
            evaluation=evaluation,
        )
        # what is uploaded must be what was judged: a training run writing models/ meanwhile is refused, not published
        registry.publish(version, {**files, **report_files(paths)}, manifest, expected=judged["files"])
    if not published:  # publish verified its uploads; an older version is read back: never promote a corrupt one
        registry.verify(version)
    registry.promote(  # one compare-and-swap against exactly the production the gate judged
        version,
        alias,
        reason=reason or f"gate {gate['decision']}",
        by=approved_by,
        forced=forced,
        expected=gate.get("baseline"),
    )
    return Promotion(version, alias, published=published, moved=True, problems=problems)


def version_evidence_problem(manifest: dict) -> str | None:
    """Why a published version's evaluation does not describe its own files (None when it does): the evaluation
    names no files, another candidate, or files whose sha256 differ from the version's."""
    judged = recorded(manifest.get("eval"))
    version = manifest.get("version")
    if judged is None:
        return f"version {version}: its evaluation records no files it judged (published by an older mllmcl)"
    stored = {rel: (meta or {}).get("sha256") for rel, meta in (manifest.get("files") or {}).items()}
    differ = sorted(rel for rel, sha in judged["files"].items() if stored.get(rel) != sha)
    if judged.get("candidate") != version or differ:
        return f"version {version}: its evaluation judged {judged.get('candidate')} ({', '.join(differ[:4]) or 'ids'} differ)"
    return None


def promote_version(
    registry: Registry, version: str, *, alias: str = "production", force: bool = False, reason: str = ""
) -> str:
    """Move `alias` to an already published version, under the same rule as a workspace candidate: its gate passed
    (or `force` with a reason), its evaluation judged exactly its files, every file still matches its checksum, and
    the alias still holds the production its gate judged against (unless forced)."""
    manifest = registry.verify(version)
    gate = manifest.get("gate") or {}
    require_promotable(gate, force=force, reason=reason, what=f"version {version}")
    problem = version_evidence_problem(manifest)
    if problem and not force:
        raise StaleEvaluation(f"{problem}; refusing to promote (use --force --reason to override, recorded)")
    current = registry.alias(alias)
    in_force = current["version"] if current else None
    # anything --force overrode is recorded as a forced promotion: a failed gate, another evaluation, another baseline
    forced = force and (gate.get("decision") != "pass" or problem is not None or gate.get("baseline") != in_force)
    if not force and gate.get("baseline") != in_force:
        raise PromotionConflict(
            f"version {version}'s gate compared it with {gate.get('baseline') or 'no production'}, but {alias} is "
            f"{in_force or 'unset'}: use `registry rollback` to go back, or --force --reason"
        )
    registry.promote(version, alias, reason=reason, forced=forced, expected=in_force)
    return version
