"""The registry against a real S3 endpoint (moto server over HTTP on 127.0.0.1) and on a local folder:
publish/promote/list/show/rollback, checksum-verified loading, crash safety and concurrent promotes."""

from __future__ import annotations

import json
import threading

import pytest

from mllmcl.release.audit import AuditError
from mllmcl.release.registry import PromotionConflict, Registry, RegistryError, candidate_id, sha256_file
from mllmcl.release.storage import LocalStore, S3Store, StoreError
from tests.conftest import BUCKET


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path):
    if request.param == "local":
        return Registry(LocalStore(tmp_path / "registry"), "m")
    server = request.getfixturevalue("moto_server")
    return Registry(S3Store(BUCKET, f"run-{tmp_path.name}", endpoint_url=server["url"]), "m")


def _files(tmp_path, tag: str, n: int = 3) -> dict:
    out = {}
    for i in range(n):
        p = tmp_path / tag / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"{tag}-{i}".encode() * 100)
        out[f"experts/t{i}/adapter_model.safetensors"] = p
    return out


def _judged(files: dict) -> dict:
    """An evaluation's record of the files it judged (what `evaluate` writes into eval.json)."""
    return {"candidate": candidate_id(files), "files": {rel: sha256_file(p) for rel, p in files.items()}}


def _publish(reg, tmp_path, tag, gate=None):
    files = _files(tmp_path, tag)
    version = candidate_id(files)
    evaluation = {"tasks": {"t0": {"accuracy": 0.9}}, "judged": _judged(files)}
    reg.publish(version, files, {"tasks": ["t0"], "eval": evaluation, "gate": gate or {"decision": "pass"}})
    return version


def test_publish_promote_list_show_rollback(registry, tmp_path):
    v1 = _publish(registry, tmp_path, "one")
    v2 = _publish(registry, tmp_path, "two")
    assert [m["version"] for m in registry.list_versions()] == [v1, v2]
    registry.promote(v1)
    registry.promote(v2, reason="better")
    assert registry.resolve("production") == v2
    assert registry.alias("production")["history"] == [v1]
    assert registry.manifest(v2)["files"]["experts/t0/adapter_model.safetensors"]["sha256"]
    registry.rollback(reason="bad day")
    assert registry.resolve("production") == v1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback()


def test_versions_are_immutable(registry, tmp_path):
    v = _publish(registry, tmp_path, "one")
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(v, _files(tmp_path, "one"), {})


def test_materialize_verifies_checksums_and_names_a_corrupted_object(registry, tmp_path):
    v = _publish(registry, tmp_path, "one")
    registry.promote(v)
    out = registry.materialize("production", tmp_path / "cache")
    assert (out / "experts/t1/adapter_model.safetensors").read_bytes() == b"one-1" * 100
    registry.store.put_bytes(f"m/versions/{v}/experts/t1/adapter_model.safetensors", b"tampered")
    with pytest.raises(RegistryError, match="experts/t1/adapter_model.safetensors: checksum mismatch"):
        registry.materialize(v, tmp_path / "cache2")


def test_a_version_without_manifest_is_invisible_and_cannot_be_promoted(registry, tmp_path):
    registry.store.put_bytes("m/versions/v-half/experts/x.bin", b"partial upload")
    assert registry.list_versions() == []
    with pytest.raises(RegistryError):
        registry.promote("v-half")


def test_exactly_one_of_two_concurrent_promotes_wins(registry, tmp_path):
    v1, v2, v3 = (_publish(registry, tmp_path, t) for t in ("one", "two", "three"))
    registry.promote(v1)
    barrier = threading.Barrier(2)
    results = {}
    original = registry.store.read_with_tag
    first_read = threading.local()

    def slow_read(key):  # both promoters read the same alias state before either writes
        out = original(key)
        if key.endswith("aliases/production.json") and not getattr(first_read, "done", False):
            first_read.done = True
            barrier.wait(timeout=10)
        return out

    registry.store.read_with_tag = slow_read

    def promote(v):
        try:
            registry.promote(v)
            results[v] = "won"
        except PromotionConflict:
            results[v] = "lost"

    threads = [threading.Thread(target=promote, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    registry.store.read_with_tag = original
    assert sorted(results.values()) == ["lost", "won"]
    winner = next(v for v, r in results.items() if r == "won")
    assert registry.resolve("production") == winner
    assert registry.alias("production")["history"] == [v1]


def test_server_killed_mid_upload_leaves_production_untouched(moto_server, tmp_path):
    """Stop the real S3 server while a promotion uploads, restart it, and production is what it was."""
    from moto.server import ThreadedMotoServer

    reg = Registry(S3Store(BUCKET, "crash", endpoint_url=moto_server["url"]), "m")
    v1 = _publish(reg, tmp_path, "one")
    reg.promote(v1)
    files = _files(tmp_path, "two", n=6)
    uploads = {"n": 0}
    original = reg.store.put_bytes

    def dying_put(key, data):
        uploads["n"] += 1
        if uploads["n"] == 3:
            moto_server["server"].stop()  # the endpoint goes away mid-upload
        return original(key, data)

    reg.store.put_bytes = dying_put
    with pytest.raises(StoreError):
        reg.publish(candidate_id(files), files, {"tasks": ["t0"]})
    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_server["port"], verbose=False)
    restarted.start()
    moto_server["server"] = restarted
    fresh = Registry(S3Store(BUCKET, "crash", endpoint_url=moto_server["url"]), "m")
    assert fresh.resolve("production") == v1
    assert [m["version"] for m in fresh.list_versions()] == [v1]


def _cli_project(tmp_path, gate_decision: str) -> None:
    (tmp_path / "metrics").mkdir()
    check = {
        "name": "prior_task:rs",
        "passed": gate_decision == "pass",
        "value": 0.5,
        "threshold": 0.8,
        "detail": "rs dropped",
    }
    (tmp_path / "metrics/gate.json").write_text(
        json.dumps({"decision": gate_decision, "candidate": "v-x", "checks": [check]})
    )
    (tmp_path / "params.yaml").write_text(
        "tasks: [rs]\nbase: {build: none, name_or_path: x}\nregistry: {uri: reg, model: m}\n"
    )


def test_promote_from_cli_refuses_a_failed_gate_without_force(tmp_path, capsys):
    from mllmcl.cli.main import main

    _cli_project(tmp_path, "fail")
    code = main(["registry", "promote", "--root", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: candidate v-x did not pass its gate (prior_task:rs); refusing to promote "
        '(use --force --reason "..." to override, recorded in the manifest)'
    )
    assert not (tmp_path / "reg").exists()


def test_cli_lists_shows_and_promotes_published_versions_under_the_gate_rule(tmp_path, capsys):
    """`registry list|show|promote VERSION|rollback` on a local registry; a version whose gate failed is refused
    by the same rule as a workspace candidate, and --force needs a reason."""
    from mllmcl.cli.main import main

    _cli_project(tmp_path, "pass")
    reg = Registry(LocalStore(tmp_path / "reg"), "m")
    good = _publish(reg, tmp_path, "good")
    bad = _publish(reg, tmp_path, "bad", gate={"decision": "fail", "checks": [], "baseline": None})
    root = ["--root", str(tmp_path)]
    assert main(["registry", "promote", good, *root]) == 0
    assert capsys.readouterr().out.strip() == f"production -> {good}"
    assert main(["registry", "list", *root]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == [good, bad]
    assert listing[0].endswith("<- production") and "gate=fail" in listing[1]
    assert main(["registry", "show", "production", *root]) == 0
    shown = capsys.readouterr().out
    assert f"version   {good}" in shown and "t0         accuracy 0.900" in shown
    assert main(["registry", "promote", bad, *root]) == 2
    assert f"version {bad} did not pass its gate" in capsys.readouterr().err
    assert main(["registry", "promote", bad, "--force", *root]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert reg.resolve("production") == good
    assert main(["registry", "promote", bad, "--force", "--reason", "hotfix", *root]) == 0
    assert reg.resolve("production") == bad
    assert main(["registry", "rollback", *root]) == 0
    assert reg.resolve("production") == good
    assert main(["registry", "show", "no-such-version", *root]) == 2


def test_a_relative_local_registry_works_from_the_project_root(tmp_path, monkeypatch):
    """params.yaml says `registry.uri: registry`: the gate stage lists versions from the project root."""
    from mllmcl.config import parse_params

    monkeypatch.chdir(tmp_path)
    reg = Registry.from_params(parse_params({"tasks": ["t0"], "registry": {"uri": "registry", "model": "m"}}))
    version = _publish(reg, tmp_path, "a")
    assert [m["version"] for m in reg.list_versions()] == [version]


def test_the_audit_log_records_promote_force_and_rollback_in_order_and_detects_tampering(registry, tmp_path):
    v1 = _publish(registry, tmp_path, "one")
    v2 = _publish(registry, tmp_path, "two")
    registry.promote(v1, reason="first")
    registry.promote(v2, reason="hotfix", forced=True)
    registry.rollback(reason="bad day")
    entries = registry.audit.entries()
    assert [(e["action"], e["from"], e["to"], e["reason"]) for e in entries] == [
        ("promote", None, v1, "first"),
        ("force-promote", v1, v2, "hotfix"),
        ("rollback", v2, v1, "bad day"),
    ]
    assert all("@" in e["by"] and e["at"] for e in entries) and entries[1]["forced"] is True
    assert entries[0]["gate_decision"] == "pass"
    key = "m/audit/00000002.json"
    doc = json.loads(registry.store.get_bytes(key))
    registry.store.put_bytes(key, json.dumps({**doc, "reason": "routine"}).encode())  # someone rewrites history
    with pytest.raises(AuditError, match="00000002.json: checksum mismatch"):
        registry.audit.entries()
    registry.store.put_bytes(key, json.dumps(doc).encode())
    registry.store.delete("m/audit/00000001.json")
    with pytest.raises(AuditError, match="an entry was removed or inserted"):
        registry.audit.entries()


@pytest.mark.parametrize(
    "alias, version",
    [("../versions/{v2}/manifest", None), ("production", "../versions/{v2}"), ("production", "{v1}/../{v2}")],
)
def test_ids_that_are_paths_are_refused_and_touch_nothing(registry, tmp_path, alias, version):
    v1 = _publish(registry, tmp_path, "one")
    v2 = _publish(registry, tmp_path, "two")
    registry.promote(v1)
    before = {k: registry.store.get_bytes(k) for k in registry.store.list("m/")}
    with pytest.raises(RegistryError, match="is not an? (alias name|version id)"):
        registry.promote((version or v1).format(v1=v1, v2=v2), alias.format(v2=v2))
    assert {k: registry.store.get_bytes(k) for k in registry.store.list("m/")} == before
    assert [m["version"] for m in registry.list_versions()] == [v1, v2]


def test_a_lock_left_by_a_killed_promotion_does_not_block_the_next(tmp_path):
    """The local store's alias lock is an OS file lock: it dies with a writer killed by SIGKILL."""
    import signal
    import subprocess
    import sys
    import time

    reg = Registry(LocalStore(tmp_path / "registry"), "m")
    v1, v2 = _publish(reg, tmp_path, "one"), _publish(reg, tmp_path, "two")
    reg.promote(v1)
    lock = tmp_path / "registry/m/aliases/production.json.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,os,time; fd=os.open({str(lock)!r}, os.O_CREAT|os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(PromotionConflict):  # while the writer lives, it wins
        reg.promote(v2)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    time.sleep(0.1)
    reg.promote(v2)  # the killed writer's lock is gone with it
    assert reg.resolve("production") == v2


def test_an_unreadable_manifest_is_named(registry, tmp_path):
    v1 = _publish(registry, tmp_path, "one")
    registry.store.put_bytes(f"m/versions/{v1}/manifest.json", b"{not json")
    with pytest.raises(RegistryError, match=f"versions/{v1}/manifest.json: manifest is not valid JSON"):
        registry.list_versions()


def test_history_command_lists_and_verifies(tmp_path, capsys):
    from mllmcl.cli.main import main

    _cli_project(tmp_path, "pass")
    reg = Registry(LocalStore(tmp_path / "reg"), "m")
    v1 = _publish(reg, tmp_path, "one")
    reg.promote(v1, reason="first")
    assert main(["registry", "history", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        f"promote       production - -> {v1}" in out
        and "reason: first" in out
        and "checksum chain and alias anchors verified" in out
    )
    (tmp_path / "reg/m/audit/00000001.json").write_text("{}")
    assert main(["registry", "history", "--root", str(tmp_path)]) == 2
    assert "00000001.json" in capsys.readouterr().err


def test_store_failures_are_one_line_user_errors(moto_server, tmp_path, capsys):
    """A missing bucket, a version file deleted behind the registry's back: one line naming the object, exit 2."""
    from mllmcl.cli.main import main

    (tmp_path / "params.yaml").write_text(
        "tasks: [rs]\nregistry: {uri: 's3://no-such-bucket/x', model: m}\n"
        f"storage: {{s3: {{endpoint_url: '{moto_server['url']}'}}}}\n"
    )
    assert main(["registry", "list", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: s3://no-such-bucket/x/m/") and "NoSuchBucket" in err and "\n" not in err
    reg = Registry(S3Store(BUCKET, f"gone-{tmp_path.name}", endpoint_url=moto_server["url"]), "m")
    v = _publish(reg, tmp_path, "one")
    reg.store.delete(f"m/versions/{v}/experts/t1/adapter_model.safetensors")
    with pytest.raises(StoreError, match=f"versions/{v}/experts/t1/adapter_model.safetensors"):
        reg.materialize(v, tmp_path / "cache")
