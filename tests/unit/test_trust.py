"""What a promotion rests on cannot be swapped underneath it: an evaluation names the files it judged and a stale one
is refused; a promotion is one compare-and-swap against the production the gate judged; the audit log is anchored
in the aliases; a published version is verified before it is promoted or downloaded, and its download stays in its
folder; the gate fails closed on a malformed validation report; a version is loaded only on the base it was gated on."""

from __future__ import annotations

import json
import multiprocessing
import shutil

import pytest

from mllmcl.config import parse_params
from mllmcl.errors import DataError
from mllmcl.paths import ProjectPaths
from mllmcl.release.audit import AuditError
from mllmcl.release.candidate import load_evaluation, run_gate, workspace_fingerprint
from mllmcl.release.evidence import StaleEvaluation, as_record, require_same_base
from mllmcl.release.promotion import promote_candidate, promote_version
from mllmcl.release.registry import PromotionConflict, Registry, RegistryError, candidate_id
from mllmcl.release.storage import LocalStore
from tests.unit.test_registry import _files, _publish


def _workspace(root, tag: str = "one", tasks=("rs", "fin")):
    paths = ProjectPaths(root)
    for folder in (paths.base, *(paths.expert(t) for t in tasks), paths.router):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_text(f"{folder.name}-{tag}")
    params = parse_params({"tasks": list(tasks), "registry": {"uri": "reg", "model": "m"}})
    return params, paths


def _evaluated(params, paths, baseline=None, decision="pass") -> str:
    """eval.json as `evaluate` writes it (naming the files it judged) and a gate decision on exactly it."""
    judged = workspace_fingerprint(params, paths)
    paths.eval_json.parent.mkdir(parents=True, exist_ok=True)
    tasks = {t: {"accuracy": 0.99, "n": 40, "router_accuracy": 1.0} for t in params.tasks}
    paths.eval_json.write_text(json.dumps({"tasks": tasks, "judged": as_record(judged)}))
    gate = {"decision": decision, "candidate": judged["candidate"], "baseline": baseline, "checks": []}
    paths.gate_json.write_text(json.dumps({**gate, "evaluation_sha256": load_evaluation(paths.eval_json)[1]}))
    return judged["candidate"]


def _swap_fin_for_rs(paths):
    shutil.copy(paths.expert("rs") / "adapter_model.safetensors", paths.expert("fin") / "adapter_model.safetensors")


# --- 1. a stale evaluation -----------------------------------------------------------------------------------------
def test_the_gate_refuses_an_evaluation_of_other_files_and_names_them(tmp_path):
    params, paths = _workspace(tmp_path)
    _evaluated(params, paths)
    _swap_fin_for_rs(paths)  # another expert's weights under fin, no re-evaluation
    with pytest.raises(StaleEvaluation, match=r"changed: experts/fin/adapter_model.safetensors\);.*dvc repro evaluate"):
        run_gate(params, paths)


def test_gate_cli_refuses_a_stale_evaluation_in_one_line_and_promote_publishes_nothing(tmp_path, capsys):
    from mllmcl.cli.main import main

    params, paths = _workspace(tmp_path)
    (tmp_path / "params.yaml").write_text("tasks: [rs, fin]\nregistry: {uri: reg, model: m}\n")
    _evaluated(params, paths)  # the gate passed on this evaluation
    _swap_fin_for_rs(paths)
    assert main(["gate", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stale" in err[0] and "experts/fin/adapter_model.safetensors" in err[0]
    assert main(["registry", "promote", "--root", str(tmp_path)]) == 2
    assert "experts/fin" in capsys.readouterr().err
    assert not (tmp_path / "reg").exists()  # nothing published, no alias


def test_an_evaluation_without_its_judged_files_or_of_other_test_data_is_refused(tmp_path):
    params, paths = _workspace(tmp_path)
    _evaluated(params, paths)
    (paths.task_data("fin")).mkdir(parents=True)
    (paths.task_data("fin") / "test.jsonl").write_text('{"id": "1", "image": null}\n')  # the test set changed
    with pytest.raises(StaleEvaluation, match="test data: fin"):
        promote_candidate(params, paths)
    paths.eval_json.write_text(json.dumps({"tasks": {}}))
    with pytest.raises(StaleEvaluation, match="records no files it judged"):
        run_gate(params, paths)


def test_answer_files_edited_after_the_evaluation_are_refused(tmp_path):
    """The gate pairs reports/predictions with production's answers, and they are published as the next baseline:
    an edited answer file is a stale evaluation too."""
    params, paths = _workspace(tmp_path)
    paths.predictions.mkdir(parents=True)
    (paths.predictions / "fin.jsonl").write_text('{"id": "1", "correct": false}\n')
    _evaluated(params, paths)
    (paths.predictions / "fin.jsonl").write_text('{"id": "1", "correct": true}\n')
    with pytest.raises(StaleEvaluation, match=r"answer files \(reports/predictions\): fin"):
        run_gate(params, paths)


def test_files_that_change_between_the_checks_and_the_upload_are_not_published(tmp_path, monkeypatch):
    from mllmcl.release import promotion

    params, paths = _workspace(tmp_path)
    _evaluated(params, paths)
    real = promotion.report_files

    def a_training_run_writes_meanwhile(p):
        (paths.expert("fin") / "adapter_model.safetensors").write_text("retrained")
        return real(p)

    monkeypatch.setattr(promotion, "report_files", a_training_run_writes_meanwhile)
    with pytest.raises(RegistryError, match=r"adapter_model.safetensors: changed since it was evaluated"):
        promote_candidate(params, paths)
    registry = Registry.from_params(params, tmp_path)
    assert registry.list_versions() == [] and registry.alias("production") is None


def test_a_forced_promotion_over_another_baseline_is_recorded_as_forced(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    v1, v2 = _publish(registry, tmp_path, "one"), _publish(registry, tmp_path, "two")
    promote_version(registry, v1)
    v3 = _publish(registry, tmp_path, "three", gate={"decision": "pass", "baseline": v2})  # judged against v2
    with pytest.raises(PromotionConflict, match="gate compared it with"):
        promote_version(registry, v3)
    promote_version(registry, v3, force=True, reason="v2 was never promoted")
    assert registry.verify_audit().entries[-1]["action"] == "force-promote"


def test_routing_thresholds_changed_after_the_evaluation_are_refused(tmp_path):
    params, paths = _workspace(tmp_path)
    _evaluated(params, paths)
    looser = params.model_copy(update={"routing": params.routing.model_copy(update={"min_confidence": 0.1})})
    with pytest.raises(StaleEvaluation, match=r"\(routing: min_confidence\)"):
        promote_candidate(looser, paths)


def test_a_gate_decision_on_another_evaluation_of_the_same_files_is_refused(tmp_path):
    params, paths = _workspace(tmp_path)
    _evaluated(params, paths)
    evaluation = json.loads(paths.eval_json.read_text())
    evaluation["tasks"]["fin"]["accuracy"] = 0.10  # re-evaluated, not re-gated
    paths.eval_json.write_text(json.dumps(evaluation))
    with pytest.raises(StaleEvaluation, match="the gate judged another"):
        promote_candidate(params, paths)


# --- 2. promotion is one compare-and-swap ---------------------------------------------------------------------------
def test_a_promotion_that_lands_between_gate_and_flip_makes_the_late_one_fail(tmp_path, monkeypatch):
    """Deterministic interleaving: while the late candidate uploads, another promotion moves production. The late
    one was gated against v1; its flip compares against exactly v1 and refuses."""
    params, paths = _workspace(tmp_path, "one")
    v1 = _evaluated(params, paths)
    promote_candidate(params, paths)
    registry = Registry.from_params(params, tmp_path)
    other = _publish(registry, tmp_path, "other", gate={"decision": "pass", "baseline": v1})
    params, paths = _workspace(tmp_path, "two")
    late = _evaluated(params, paths, baseline=v1)
    real_publish = Registry.publish

    def publish_while_someone_promotes(self, version, files, manifest, **kw):
        out = real_publish(self, version, files, manifest, **kw)
        promote_version(Registry.from_params(params, tmp_path), other)  # lands after the late one's checks
        return out

    monkeypatch.setattr(Registry, "publish", publish_while_someone_promotes)
    with pytest.raises(PromotionConflict, match=rf"is {other}, not {v1} as judged"):
        promote_candidate(params, paths)
    assert registry.resolve("production") == other != late
    entries = registry.verify_audit().entries
    assert [(e["action"], e["to"]) for e in entries] == [("promote", v1), ("promote", other)]


def test_promoting_a_published_version_verifies_its_files_first(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    v1 = _publish(registry, tmp_path, "one")
    promote_version(registry, v1)
    v2 = _publish(registry, tmp_path, "two", gate={"decision": "pass", "baseline": v1})
    registry.store.put_bytes(f"m/versions/{v2}/experts/t1/adapter_model.safetensors", b"bit rot")
    with pytest.raises(RegistryError, match=r"experts/t1/adapter_model.safetensors: checksum mismatch"):
        promote_version(registry, v2)
    assert registry.resolve("production") == v1


def test_a_published_version_whose_evaluation_judged_other_files_is_refused(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    files = _files(tmp_path, "x")
    version = candidate_id(files)
    judged = {"candidate": "v-000000000000", "files": {rel: "0" * 64 for rel in files}}
    registry.publish(version, files, {"tasks": ["t0"], "eval": {"judged": judged}, "gate": {"decision": "pass"}})
    with pytest.raises(StaleEvaluation, match=f"version {version}: its evaluation judged v-000000000000"):
        promote_version(registry, version)
    assert registry.alias("production") is None


# --- 9. the audit log is anchored in the aliases --------------------------------------------------------------------
def _two_promotions(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    v1 = _publish(registry, tmp_path, "one")
    v2 = _publish(registry, tmp_path, "two")
    registry.promote(v1, reason="first")
    registry.promote(v2, reason="second")
    assert [e["seq"] for e in registry.verify_audit().entries] == [1, 2]
    assert registry.alias("production")["audit"]["seq"] == 2
    return registry, v1, v2


def test_deleting_the_newest_audit_entry_is_detected(tmp_path):
    registry, _, _ = _two_promotions(tmp_path)
    registry.store.delete("m/audit/00000002.json")
    assert len(registry.audit.entries()) == 1  # the chain alone still verifies: the anchor is what catches it
    with pytest.raises(AuditError, match="anchored at audit entry 2, which is missing"):
        registry.verify_audit()


def test_rewriting_the_whole_log_is_detected(tmp_path):
    registry, v1, v2 = _two_promotions(tmp_path)
    for key in registry.store.list("m/audit/"):
        registry.store.delete(key)
    registry.audit.append("promote", "production", from_version=None, to_version=v1, reason="rewritten")
    registry.audit.append("promote", "production", from_version=v1, to_version=v2, reason="rewritten")
    with pytest.raises(
        AuditError, match=r"audit entry 1 is not the one alias 'production' names: the log was rewritten"
    ):
        registry.verify_audit()


def test_a_crash_between_log_and_flip_is_named_and_later_moves_still_verify(tmp_path, monkeypatch, capsys):
    from mllmcl.cli.main import main

    (tmp_path / "params.yaml").write_text("tasks: [t0]\nregistry: {uri: registry, model: m}\n")
    registry, v1, v2 = _two_promotions(tmp_path)
    v3 = _publish(registry, tmp_path, "three")
    real_write_if = registry.store.write_if

    def crash(key, data, tag):
        if "/aliases/" in key:
            raise KeyboardInterrupt  # killed after the audit entry, before the alias write
        return real_write_if(key, data, tag)

    monkeypatch.setattr(registry.store, "write_if", crash)
    with pytest.raises(KeyboardInterrupt):
        registry.promote(v3)
    monkeypatch.undo()
    assert registry.resolve("production") == v2
    assert [e["seq"] for e in registry.verify_audit().unlanded] == [3]
    registry.promote(v3, reason="again")  # the next move lands and the log still verifies, naming entry 3
    report = registry.verify_audit()
    assert [e["seq"] for e in report.unlanded] == [3] and registry.alias("production")["audit"]["seq"] == 4
    assert main(["registry", "history", "--root", str(tmp_path)]) == 0
    assert f"NOTE: entry 3 logged a move of 'production' to {v3} that never landed" in capsys.readouterr().out


def test_a_failed_alias_write_voids_its_entry(tmp_path, monkeypatch):
    from mllmcl.release.storage import StoreError

    registry, v1, v2 = _two_promotions(tmp_path)
    v3 = _publish(registry, tmp_path, "three")
    real_write_if = registry.store.write_if

    def refuse(key, data, tag):
        if "/aliases/" in key:
            raise StoreError("connection reset")
        return real_write_if(key, data, tag)

    monkeypatch.setattr(registry.store, "write_if", refuse)
    with pytest.raises(StoreError):
        registry.promote(v3)
    monkeypatch.undo()
    report = registry.verify_audit()
    assert report.unlanded == [] and report.entries[-1]["voids"] == 3


def test_a_reason_with_a_newline_cannot_forge_a_history_line(tmp_path, capsys):
    from mllmcl.cli.main import main

    (tmp_path / "params.yaml").write_text("tasks: [t0]\nregistry: {uri: reg, model: m}\n")
    registry = Registry(LocalStore(tmp_path / "reg"), "m")
    v1 = _publish(registry, tmp_path, "one")
    registry.promote(v1, reason="ok\n   2  2026-01-01T00:00:00  promote       production - -> v-forged")
    assert main(["registry", "history", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "\\n   2  2026" in lines[0] and lines[1].startswith("1 entries")


# --- 3. materialize stays in its folder and shares a cache safely ---------------------------------------------------
def test_a_manifest_path_that_escapes_the_version_is_refused_before_anything_is_written(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    v = _publish(registry, tmp_path, "one")
    key = f"m/versions/{v}/manifest.json"
    manifest = json.loads(registry.store.get_bytes(key))
    manifest["files"]["../../../escaped.txt"] = next(iter(manifest["files"].values()))
    registry.store.put_bytes(key, json.dumps(manifest).encode())
    with pytest.raises(RegistryError, match=r"file '../../../escaped.txt' escapes the version"):
        registry.materialize(v, tmp_path / "cache" / "deep")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache").exists()


def _materialize(root: str, version: str, rounds: int) -> None:
    registry = Registry(LocalStore(root + "/registry"), "m")
    for i in range(rounds):
        registry.materialize(version, __import__("pathlib").Path(root) / "cache")
        if i % 2:  # another server's cache eviction: the next download rewrites the file
            for f in (__import__("pathlib").Path(root) / "cache" / version).rglob("*.safetensors"):
                f.write_bytes(b"stale")


def test_two_processes_sharing_one_cache_never_break_each_other(tmp_path):
    registry = Registry(LocalStore(tmp_path / "registry"), "m")
    v = _publish(registry, tmp_path, "one")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_materialize, args=(str(tmp_path), v, 30)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    out = registry.materialize(v, tmp_path / "cache")  # and what is left verifies
    assert (out / "experts/t1/adapter_model.safetensors").read_bytes() == b"one-1" * 100
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


# --- 7. the gate fails closed on a malformed validation report ------------------------------------------------------
@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"passed": "yes"}'])
def test_a_malformed_validation_report_fails_the_gate_instead_of_crashing_it(tmp_path, content):
    from tests.unit.test_gate_fail_closed import TASKS, gate, good_eval, project  # noqa: F401

    root = tmp_path
    (root / "validation").mkdir()
    for t in TASKS:
        (root / "validation" / f"{t}.json").write_text(json.dumps({"passed": True}))
    (root / "validation" / "rs.json").write_text(content)
    (root / "dvc.lock").write_text("{broken")
    result = gate(root, good_eval())
    assert {c.name for c in result.failed()} == {"validation_passed", "data_state_known"}


# --- 5. a version is loaded only on the base it was gated on --------------------------------------------------------
def test_a_version_is_refused_on_another_base_naming_both():
    gated = {"build": "none", "name_or_path": "models/qwen", "sha256": "a" * 64}
    require_same_base(gated, {"sha256": "a" * 64, "name_or_path": "models/qwen"}, what="version v-1")
    with pytest.raises(DataError, match=r"gated on base sha256 aaaaaaaaaaaa\.\.\., but the base here is sha256 bbbb"):
        require_same_base(gated, {"sha256": "b" * 64, "name_or_path": "models/qwen"}, what="version v-1")
    hub = {"build": "none", "name_or_path": "org/model"}
    require_same_base(hub, {"build": "none", "name_or_path": "org/model"}, what="v")
    with pytest.raises(DataError, match="'org/other'"):
        require_same_base(hub, {"build": "none", "name_or_path": "org/other"}, what="v")


def test_a_lost_race_voids_its_entry_and_the_log_still_verifies(tmp_path, monkeypatch):
    registry, v1, v2 = _two_promotions(tmp_path)
    v3 = _publish(registry, tmp_path, "three")
    real_write_if = registry.store.write_if

    def someone_rolls_back_first(key, data, tag):
        if "/aliases/" in key:  # between our read of the alias and our write, a rollback lands
            monkeypatch.setattr(registry.store, "write_if", real_write_if)
            registry.rollback(reason="meanwhile")
        return real_write_if(key, data, tag)

    monkeypatch.setattr(registry.store, "write_if", someone_rolls_back_first)
    with pytest.raises(PromotionConflict, match="changed while promoting"):
        registry.promote(v3)
    assert registry.resolve("production") == v1
    actions = [(e["action"], e.get("voids")) for e in registry.verify_audit().entries]
    assert actions == [("promote", None), ("promote", None), ("promote", None), ("rollback", None), ("void", 3)]


def test_evaluate_refuses_adapters_trained_on_another_base_naming_them(tmp_path):
    from mllmcl.release.evidence import inputs_to_evaluate

    params, paths = _workspace(tmp_path)
    (paths.base / "model.safetensors").write_bytes(b"the base the adapters were trained on")
    from mllmcl.model.loading import base_identity

    trained_on = base_identity(params.base, paths.base)
    for folder, name in [(paths.expert("rs"), "train_stats.json"), (paths.expert("fin"), "train_stats.json")]:
        (folder / name).write_text(json.dumps({"base": trained_on}))
    (paths.router / "router_stats.json").write_text(json.dumps({"base": trained_on}))
    kw = dict(base_dir=paths.base, experts_dir=paths.experts, router_dir=paths.router, tasks_dir=paths.tasks_dir)
    assert inputs_to_evaluate(params, **kw)["candidate"].startswith("v-")
    (paths.base / "model.safetensors").write_bytes(b"a rebuilt base")  # the adapters were not retrained
    with pytest.raises(
        StaleEvaluation, match=r"expert rs \(.*\) was trained on base sha256 \w{12}\.\.\., but the base"
    ):
        inputs_to_evaluate(params, **kw)
