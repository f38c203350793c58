"""The continual_stage Prefect flow under Prefect's test harness, on a tiny real DVC project: promotion,
validation failure, retries, the stage lock, and the approval pause."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests import pipeline_project as pp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, harness, shared_dvc_cache):
    root = pp.make(tmp_path_factory.mktemp("flow") / "proj", ["rs", "fin"], cache=shared_dvc_cache)
    return root


def _registry(root):
    from mllmcl.config import load_params
    from mllmcl.release.registry import Registry

    return Registry.from_params(load_params(root / "params.yaml"), root)


def test_a_continual_stage_runs_the_dag_and_promotes(project):
    from flows.continual_stage import continual_stage

    summary = continual_stage(root=str(project), push=False)
    assert summary["decision"] == "pass"
    assert "train_expert@rs" in summary["ran"] and "gate" in summary["ran"]
    assert _registry(project).resolve("production") == summary["promoted"]


def test_a_failed_gate_ends_the_run_rejected_and_promotes_nothing(project):
    """A planted regression (every request to the plain base) fails the gate: the run ends in a distinct state that
    alerting can match (type FAILED, name "Rejected"), not "Completed", and production does not move."""
    import yaml

    from flows.continual_stage import GateRejected, continual_stage

    before = _registry(project).alias("production")
    text = (project / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["routing"]["min_confidence"] = 1.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        state = continual_stage(root=str(project), push=False, return_state=True)
        assert state.is_failed() and state.name == "Rejected", (state.type, state.name)
        assert "prior_task:rs" in state.message
        result = state.result(raise_on_failure=False)
        assert isinstance(result, GateRejected) and result.summary["decision"] == "fail"
        assert _registry(project).alias("production") == before
    finally:
        (project / "params.yaml").write_text(text)
        pp.dvc(project, "repro")


def test_a_flow_on_a_cached_pipeline_reruns_nothing_and_moves_nothing(project):
    """A scheduled run with nothing new checks every DAG stage, runs none, and leaves production where it was (its
    overhead over a plain `dvc repro` is a timing, for a benchmark, not a test)."""
    from flows.continual_stage import continual_stage

    before = _registry(project).alias("production")
    summary = continual_stage(root=str(project), push=False)
    assert summary["ran"] == [] and summary["stages"], summary
    assert {"train_router", "evaluate", "gate"} <= {s["stage"] for s in summary["stages"]}
    assert _registry(project).alias("production") == before


def test_a_transient_training_failure_is_retried(project, monkeypatch):
    from flows import dag
    from flows.continual_stage import continual_stage

    real = dag.repro_stage
    calls = {"n": 0}

    def flaky(root, stage, pull=False):
        if stage == "train_router":
            calls["n"] += 1
            if calls["n"] == 1:
                raise dag.DvcError("simulated transient failure (worker lost)")
        return real(root, stage, pull=pull)

    monkeypatch.setattr(dag, "repro_stage", flaky)
    monkeypatch.setattr(dag, "stale_stages", lambda root: {"train_router"})
    summary = continual_stage(root=str(project), push=False, promote=False, retry_delay_seconds=0)
    assert calls["n"] == 2
    assert any(s["stage"] == "train_router" and s["ran"] for s in summary["stages"])


def test_two_concurrent_stages_never_overlap(project, monkeypatch):
    from flows import dag
    from flows.continual_stage import continual_stage
    from flows.lock import StageBusy

    inside = threading.Event()
    release = threading.Event()

    def slow(root, stage, pull=False):
        inside.set()
        release.wait(timeout=60)
        return ""

    monkeypatch.setattr(dag, "repro_stage", slow)
    monkeypatch.setattr(dag, "stale_stages", lambda root: {"gate"})
    first = threading.Thread(daemon=True, target=lambda: continual_stage(root=str(project), push=False, promote=False))
    first.start()
    assert inside.wait(timeout=60)
    with pytest.raises(StageBusy, match="already running"):
        continual_stage(root=str(project), push=False, promote=False)
    release.set()
    first.join(timeout=60)


def test_a_failing_validation_fails_the_flow_without_promotion(project):
    from flows.continual_stage import continual_stage
    from tests.data.test_task_add import add_llava_task, make_llava_fixture

    before = _registry(project).alias("production")
    train, test, images = make_llava_fixture(project.parent / "bad")
    rows = json.loads(train.read_text())
    rows[2]["conversations"][1]["value"] = ""
    train.write_text(json.dumps(rows))
    assert add_llava_task(project, "pets", train, test, images) == 0
    state = continual_stage(root=str(project), push=False, return_state=True)
    assert state.is_failed()
    assert "validate@pets" in str(state.message) or "validate@pets" in repr(state.result(raise_on_failure=False))
    assert _registry(project).alias("production") == before
    _remove_task(project, "pets")


def _remove_task(root, name):
    import shutil

    from ruamel.yaml import YAML

    y = YAML()
    data = y.load((root / "params.yaml").read_text())
    data["tasks"].remove(name)
    with (root / "params.yaml").open("w") as f:
        y.dump(data, f)
    shutil.rmtree(root / "data/raw" / name, ignore_errors=True)
    (root / "data/raw" / f"{name}.dvc").unlink(missing_ok=True)


@pytest.mark.parametrize("approve", [True, False])
def test_an_approval_required_run_waits_for_a_reviewer(project, approve):
    # a new candidate that behaves exactly like production: the router is retrained with another checkpoint interval
    # (same weights, new stats file), so the gate passes on identical answers and there is something to promote
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.continual_stage import continual_stage

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["router"]["checkpoint_every"] = 70 if approve else 90
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = _registry(project).alias("production")
    result = {}
    runner = threading.Thread(
        daemon=True,
        target=lambda: result.update(
            summary=continual_stage(root=str(project), push=False, require_approval=True, approval_timeout_seconds=120)
        ),
    )
    runner.start()
    flow_run_id = _wait_for_paused(get_client, runner)
    resume_flow_run(flow_run_id, run_input={"approve": approve, "comment": "reviewed in test"})
    runner.join(timeout=180)
    summary = result["summary"]
    assert summary["approval"]["approve"] is approve
    after = _registry(project).alias("production")
    if approve:
        assert summary["promoted"] and after["version"] == summary["promoted"]
    else:
        assert summary["promoted"] is None and after == before


def _wait_for_paused(get_client, runner, timeout: float = 300):
    import asyncio

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    async def find():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                limit=10,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            )
            return runs[0].id if runs else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_id = asyncio.run(find())
        if run_id:
            return run_id
        if not runner.is_alive():
            raise AssertionError("the flow run ended before pausing for approval")
        time.sleep(1)
    raise AssertionError("the flow run never paused for approval")


def test_the_benchmark_flow_writes_its_reports_and_publishes_the_summary(harness, toy_root, tmp_path):
    """`benchmark` as a Prefect flow: the reports land under reports/benchmark/<track>, the Markdown summary is the
    run's artifact, and a second run with the same parameters reuses every unit the first one measured."""
    import shutil

    from prefect.client.orchestration import get_client

    from flows.benchmark import benchmark

    root = tmp_path / "proj"
    for part in ("data", "models/base"):
        shutil.copytree(toy_root / part, root / part)
    shutil.copy(toy_root / "params.yaml", root / "params.yaml")
    kwargs = dict(root=str(root), methods=["oracle_experts", "lora_ft"], steps=4)
    summary = benchmark(**kwargs)
    assert summary["track"] == "workspace" and summary["aggregate"]["lora_ft"]["MFN"]["n"] == 1
    report = json.loads((root / "reports/benchmark/workspace.json").read_text())
    assert report["tasks"] == ["colour", "where"] and list(report["methods"]) == ["oracle_experts", "lora_ft"]
    with get_client(sync_client=True) as client:  # the REST filter: read_artifacts sends nulls this server refuses
        found = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": ["benchmark-workspace"]}},
                "limit": 5,
                "offset": 0,
                "sort": "CREATED_DESC",
            },
        ).json()
    assert len(found) == 1 and "| LoRA-FT (one shared adapter) |" in found[0]["data"]
    units = sorted((root / ".cache/benchmark/units").iterdir())
    stamps = [u.stat().st_mtime_ns for u in units]
    again = benchmark(**kwargs)
    assert again["aggregate"] == summary["aggregate"]
    assert [u.stat().st_mtime_ns for u in sorted((root / ".cache/benchmark/units").iterdir())] == stamps
