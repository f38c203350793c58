"""The real DAG end to end with DVC in a temporary git repo (tiny params): a full run, an incremental
continual stage that re-runs only what the new task needs, and an invalid task stopped at validation."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests import pipeline_project as pp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, shared_dvc_cache):
    """The tiny rs+fin project, its cache seeded from the session's shared one: in a full session the stages that
    other modules trained (test_distributed, test_flows) are restored from the run-cache; alone, it trains them."""
    root = pp.make(tmp_path_factory.mktemp("pipeline") / "proj", ["rs", "fin"])
    pp.seed_cache(root, shared_dvc_cache)
    out = pp.dvc(root, "repro")
    return {"root": root, "first": out.stdout + out.stderr}


def test_full_run_produces_every_artifact(project):
    root = project["root"]
    produced = pp.ran_stages(project["first"]) + pp.restored_stages(project["first"])
    assert {"base", "train_expert@rs", "train_expert@fin", "train_router", "evaluate", "gate"} <= set(produced)
    eval_json = json.loads((root / "metrics/eval.json").read_text())
    assert set(eval_json["tasks"]) == {"rs", "fin"} and "language" in eval_json
    gate = json.loads((root / "metrics/gate.json").read_text())
    assert gate["candidate"].startswith("v-") and gate["baseline"] is None
    checks = {c["name"]: c for c in gate["checks"]}
    assert gate["decision"] == "pass", [c["detail"] for c in checks.values() if not c["passed"]]  # a first candidate
    params = yaml.safe_load((root / "params.yaml").read_text())["gate"]
    assert checks["task:rs"]["threshold"] == params["min_task_accuracy"] > 0  # a real, non-zero threshold
    assert checks["router_accuracy"]["threshold"] == params["min_router_accuracy"] > 0
    assert (root / "reports/gate.html").exists() and (root / "reports/validation/rs.json").exists()
    assert "lineage" not in gate and (root / "reports/gate_lineage.json").exists()  # metrics/ holds metrics only
    shown = pp.dvc(root, "metrics", "show")
    assert "metrics/eval.json" in shown.stdout and "metrics/gate.json" in shown.stdout
    assert len(shown.stdout.splitlines()) < 40, shown.stdout  # readable in one screen


def test_nothing_to_do_when_nothing_changed(project):
    out = pp.dvc(project["root"], "repro")
    assert pp.ran_stages(out.stdout) == []


def _edit_params(root, edit) -> str:
    text = (root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return text


def _stale(root) -> set[str]:
    return set(json.loads(pp.dvc(root, "status", "--json").stdout or "{}"))


def test_params_are_declared_per_key(project):
    """router.steps re-runs the router and what consumes it; compute.threads re-runs nothing; a routing threshold
    re-runs evaluate, not the router."""
    root = project["root"]
    before = _edit_params(root, lambda p: p["router"].update(steps=p["router"]["steps"] + 1))
    try:
        assert _stale(root) == {"train_router"}  # evaluate and gate follow through models/router
        ran = pp.ran_stages(pp.dvc(root, "repro").stdout)
        assert ran == ["train_router", "evaluate", "gate"], ran
    finally:
        (root / "params.yaml").write_text(before)
        pp.dvc(root, "repro")  # back to the first candidate (DVC's run-cache restores it)
    before = _edit_params(root, lambda p: p["compute"].update(threads=2))
    try:
        assert _stale(root) == set()
    finally:
        (root / "params.yaml").write_text(before)
    before = _edit_params(root, lambda p: p["routing"].update(min_confidence=0.6))
    try:  # a routing threshold is read when answering: evaluate (and, through eval.json, the gate), never training
        assert _stale(root) == {"evaluate"}
    finally:
        (root / "params.yaml").write_text(before)


def test_gate_run_and_benchmark_commands_on_a_finished_run(project, capsys):
    """`mllmcl gate` re-judges the candidate (exit 0 pass / 1 fail, as gate.json says), `mllmcl run` on a finished
    project reproduces nothing and reports the decision, `mllmcl benchmark` writes its JSON and figure."""
    from mllmcl.cli.main import main
    from mllmcl.continual.baselines import METHODS

    root = project["root"]
    code = main(["gate", "--root", str(root)])
    gate = json.loads((root / "metrics/gate.json").read_text())
    assert (
        code == 0 and gate["decision"] == "pass"
    )  # the first candidate passes (test_full_run_produces_every_artifact)
    out = capsys.readouterr().out
    assert f"decision: {gate['decision'].upper()}" in out and "router_accuracy" in out
    assert main(["run", "--root", str(root), "--no-promote"]) == code
    assert f"gate: {gate['decision'].upper()} for candidate {gate['candidate']}" in capsys.readouterr().out
    out_stem = root / "reports/benchmark/test"
    assert main(["benchmark", "--root", str(root), "--steps", "5", "--out", str(out_stem)]) == 0
    result = json.loads(out_stem.with_suffix(".json").read_text())
    assert list(result["methods"]) == list(
        METHODS
    )  # zero-shot, oracle, MR-LoRA, NCM, LoRA-FT (+replay), mSGM (+), joint
    assert result["methods"]["lora_ft"]["matrix"][0][1] is None  # stage 1 knows only the first task
    assert result["methods"]["joint"]["matrix"][0] == [None, None]  # joint has no sequence: its final row only
    staged = result["methods"]["mr_lora"]["per_stage"]  # a router per stage; the DAG's serves the last one
    assert [s["tasks"] for s in staged] == [["rs"], ["rs", "fin"]] and [s["router_reused"] for s in staged] == [
        False,
        True,
    ]
    assert all(cell for m in result["methods"].values() for row in m["cells"] for cell in row if cell is not None)
    assert out_stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "| MR-LoRA (routed) |" in out_stem.with_suffix(".md").read_text()
    page = out_stem.with_suffix(".html").read_text()
    assert page.count("data:image/png") >= len(METHODS) + 2 and "http" not in page  # self-contained


def test_a_planted_regression_fails_the_gate_on_a_real_threshold(project):
    """Production = the first candidate; then the router sends everything to the plain base (min_confidence 1):
    the earlier tasks drop by far more than gate.max_prior_drop and the gate names them."""
    from mllmcl.cli.main import main

    root = project["root"]
    assert json.loads((root / "metrics/gate.json").read_text())["decision"] == "pass"  # promoted without --force
    # a reproducible production: the recipe's files committed, data and models pushed to the remote
    remote = project["root"].parent / "dvc-remote"
    _edit_params(root, lambda p: p["storage"].update(dvc_remote=str(remote)))
    assert main(["remote", "push", "--root", str(root)]) == 0
    pp.run(["git", "add", "-A"], root)
    pp.run(["git", "commit", "-qm", "first candidate"], root)
    assert main(["registry", "promote", "--root", str(root), "--require-reproducible"]) == 0
    production = json.loads((root / "metrics/eval.json").read_text())["tasks"]
    before = _edit_params(root, lambda p: p["routing"].update(min_confidence=1.0))
    try:
        pp.dvc(root, "repro")
        gate = json.loads((root / "metrics/gate.json").read_text())
        assert gate["decision"] == "fail" and gate["baseline"]
        failed = {c["name"]: c for c in gate["checks"] if not c["passed"]}
        drop = yaml.safe_load(before)["gate"]["max_prior_drop"]
        assert drop > 0
        for task in ("rs", "fin"):
            check = failed[f"prior_task:{task}"]
            assert check["threshold"] == round(production[task]["accuracy"] - drop, 4)
            assert check["value"] < check["threshold"]
        assert main(["registry", "promote", "--root", str(root)]) == 2  # refused without --force
    finally:
        (root / "params.yaml").write_text(before)
        pp.dvc(root, "repro")


def test_push_to_s3_wipe_pull_and_nothing_to_reproduce(project, moto_server):
    """The DVC remote on a real S3 endpoint: a clone that pulls data, models and the run-cache has nothing to
    re-train."""
    import yaml

    from mllmcl.cli.main import main

    root = project["root"]
    params_text = (root / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    params["storage"] = {
        "dvc_remote": f"s3://{moto_server['bucket']}/dvc",
        "s3": {"endpoint_url": moto_server["url"], "region": "us-east-1"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        args = ["--params", str(root / "params.yaml")]
        assert main([*args, "remote", "push", "--root", str(root)]) == 0
        assert "testing" not in (root / ".dvc/config").read_text()  # no credentials written
        # what a fresh `git clone` lacks: every cached output of dvc.lock and the cache (the .gitignore files
        # DVC writes beside outputs are committed, so they stay)
        lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
        cached = {
            o["path"] for entry in lock.values() for o in entry.get("outs", []) if str(o.get("md5")).endswith(".dir")
        }
        assert {"models/base", "models/experts/rs", "data/tasks/rs", "models/router"} <= cached
        for path in [*cached, ".dvc/cache"]:
            shutil.rmtree(root / path)
        assert main([*args, "remote", "pull", "--root", str(root)]) == 0
        assert (root / "models/experts/rs/adapter_model.safetensors").exists()
        (root / "params.yaml").write_text(params_text)
        out = pp.dvc(root, "repro")
        assert pp.ran_stages(out.stdout) == [], out.stdout
    finally:
        (root / "params.yaml").write_text(params_text)
        pp.dvc(root, "remote", "remove", "storage", check=False)


def test_the_production_recipe_reproduces_on_a_fresh_clone(project, tmp_path, capsys):
    """`registry show` prints `git checkout C && dvc pull && dvc repro`; run on a fresh clone it rebuilds nothing and
    gives production's evaluation (within 0.5 pt)."""
    from mllmcl.cli.main import main

    root = project["root"]
    assert main(["registry", "show", "production", "--root", str(root), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["reproducible"] == {"ok": True, "problems": []}, manifest["reproducible"]
    assert main(["registry", "show", "production", "--root", str(root)]) == 0
    recipe = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("reproduce"))
    assert recipe == f"reproduce git checkout {manifest['git_commit']} && dvc pull && dvc repro"
    clone = tmp_path / "clone"
    pp.run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    pp.run(["git", "checkout", "-q", manifest["git_commit"]], clone)
    pp.dvc(clone, "pull")
    out = pp.dvc(clone, "repro")
    assert pp.ran_stages(out.stdout) == [], out.stdout
    again = json.loads((clone / "metrics/eval.json").read_text())["tasks"]
    for task, entry in manifest["eval"]["tasks"].items():
        assert abs(again[task]["accuracy"] - entry["accuracy"]) <= 0.005


def test_adding_a_task_reruns_only_its_stages_and_the_shared_tail(project):
    from mllmcl.cli.main import main

    root = project["root"]
    expert_rs = (root / "models/experts/rs/adapter_model.safetensors").read_bytes()
    assert main(["task", "add", "ad", "--synthetic", "ad", "--root", str(root)]) == 0
    out = pp.dvc(root, "repro")
    ran = set(pp.ran_stages(out.stdout))
    assert {"ingest@ad", "validate@ad", "train_expert@ad", "train_router", "evaluate"} <= ran
    assert not ran & {
        "base",
        "suite@general",
        "suite@language",
        "ingest@rs",
        "validate@rs",
        "train_expert@rs",
        "ingest@fin",
        "train_expert@fin",
    }
    assert (root / "models/experts/rs/adapter_model.safetensors").read_bytes() == expert_rs
    assert set(json.loads((root / "metrics/eval.json").read_text())["tasks"]) == {"rs", "fin", "ad"}


def test_an_invalid_task_stops_at_validation_and_touches_nothing_else(project, tmp_path):
    from tests.data.test_task_add import add_llava_task, make_llava_fixture

    root = project["root"]
    pp.dvc(root, "repro")  # settle the earlier test's state
    lock_before = (root / "dvc.lock").read_text()
    experts_before = {p: p.read_bytes() for p in (root / "models/experts").rglob("*") if p.is_file()}
    train, test, images = make_llava_fixture(tmp_path / "bad")
    rows = json.loads(train.read_text())
    rows[3]["image"] = "../../etc/passwd"
    train.write_text(json.dumps(rows))
    assert add_llava_task(root, "pets", train, test, images) == 0
    out = pp.dvc(root, "repro", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "validate@pets" in text and "path_safe" in text and "q3" in text
    assert "train_expert@pets" not in pp.ran_stages(out.stdout)
    assert not (root / "models/experts/pets").exists()
    after = {p: p.read_bytes() for p in (root / "models/experts").rglob("*") if p.is_file()}
    assert after == experts_before
    lock_after = (root / "dvc.lock").read_text()
    for stage in ("train_expert@rs", "train_expert@fin", "train_router", "base"):
        assert _lock_entry(lock_before, stage) == _lock_entry(lock_after, stage)
    shutil.rmtree(root / "data/raw/pets", ignore_errors=True)


def _lock_entry(lock_text: str, stage: str):
    import yaml

    return (yaml.safe_load(lock_text)["stages"]).get(stage)
