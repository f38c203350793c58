"""Promotion refuses a stale gate decision and records (or, on request, refuses) a candidate whose recipe would not
reproduce it; the manifest, the alias and the audit log say the same thing."""

from __future__ import annotations

import json
import subprocess

import pytest

from mllmcl.config import parse_params
from mllmcl.paths import ProjectPaths
from mllmcl.release.candidate import candidate_files, load_evaluation, workspace_fingerprint
from mllmcl.release.evidence import as_record
from mllmcl.release.promotion import PromotionRefused, promote_candidate
from mllmcl.release.registry import Registry, candidate_id


def _workspace(root, tag: str):
    paths = ProjectPaths(root)
    for folder in (paths.base, paths.expert("rs"), paths.router):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.bin").write_text(f"{folder.name}-{tag}")
    params = parse_params({"tasks": ["rs"], "registry": {"uri": "reg", "model": "m"}})
    return params, paths


def _gate(paths, params, baseline):
    """What `evaluate` and `gate` leave behind: an evaluation naming the files it judged, and a passing decision on
    exactly that evaluation."""
    judged = workspace_fingerprint(params, paths)
    paths.eval_json.parent.mkdir(parents=True, exist_ok=True)
    paths.eval_json.write_text(json.dumps({"tasks": {"rs": {"accuracy": 0.9, "n": 10}}, "judged": as_record(judged)}))
    version = candidate_id(candidate_files(params, paths))
    assert version == judged["candidate"]
    gate = {"decision": "pass", "candidate": version, "baseline": baseline, "checks": []}
    paths.gate_json.write_text(json.dumps({**gate, "evaluation_sha256": load_evaluation(paths.eval_json)[1]}))
    return version


def test_a_gate_decision_judged_against_another_production_is_refused(tmp_path):
    params, paths = _workspace(tmp_path, "one")
    v1 = _gate(paths, params, None)
    assert promote_candidate(params, paths).version == v1
    params, paths = _workspace(tmp_path, "two")
    v2 = _gate(paths, params, v1)
    assert promote_candidate(params, paths).version == v2
    registry = Registry.from_params(params, tmp_path)
    registry.rollback(reason="v2 misbehaves")  # production is v1 again, but the gate compared v3 with v2
    params, paths = _workspace(tmp_path, "three")
    _gate(paths, params, v2)
    with pytest.raises(PromotionRefused, match=rf"the gate compared v-\w+ with {v2}, but production is now {v1}"):
        promote_candidate(params, paths)
    assert registry.resolve("production") == v1
    assert [e["action"] for e in registry.audit.entries()] == ["promote", "promote", "rollback"]


def test_an_unreproducible_candidate_is_recorded_loudly_or_refused_on_request(tmp_path):
    params, paths = _workspace(tmp_path, "one")
    _gate(paths, params, None)
    with pytest.raises(PromotionRefused, match="would not reproduce from its recipe: not a git checkout"):
        promote_candidate(params, paths, require_reproducible=True)
    assert not (tmp_path / "reg").exists()  # nothing published, no alias
    result = promote_candidate(params, paths)
    assert not result.reproducible and "not a git checkout" in result.problems[0]
    manifest = Registry.from_params(params, tmp_path).manifest(result.version)
    assert manifest["reproducible"] == {"ok": False, "problems": result.problems}


def test_a_committed_and_pushed_candidate_is_reproducible(tmp_path):
    params, paths = _workspace(tmp_path, "one")
    _gate(paths, params, None)
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        (tmp_path / name).write_text("schema: '2.0'\n")
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "dvc.yaml", "dvc.lock", "params.yaml")
    run("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "recipe")
    assert promote_candidate(params, paths, pushed=True, require_reproducible=True).reproducible
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # the lock moved on after the commit
    _workspace(tmp_path, "two")
    _gate(paths, params, Registry.from_params(params, tmp_path).resolve("production"))
    with pytest.raises(PromotionRefused, match="not committed at [0-9a-f]{12}: dvc.lock"):
        promote_candidate(params, paths, pushed=True, require_reproducible=True)
