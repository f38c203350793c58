"""Every gate check fails closed: an input it needs that is missing (a task's result, the router's accuracy, the
text-only suite, production's accuracy for a prior task, a validation report, the dvc.lock lineage) is a named
failure, never a skipped check; and a candidate with every input in order passes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mllmcl.config import GateConfig
from mllmcl.release.gate import evaluate_gate
from mllmcl.release.stats import paired_test

TASKS = ["rs", "med", "ad"]
CFG = GateConfig()  # the defaults: every threshold non-zero


def good_eval(accs: dict[str, float] | None = None) -> dict:
    accs = accs or {"rs": 0.90, "med": 0.85, "ad": 0.80}
    return {
        "tasks": {t: {"accuracy": a, "n": 100, "router_accuracy": 0.99} for t, a in accs.items()},
        "language": {"accuracy": 0.90, "base_accuracy": 0.91, "n": 50},
        "router_accuracy": 0.99,
        "mean_accuracy": sum(accs.values()) / len(accs),
    }


PRODUCTION = {
    "version": "v-prod",
    "tasks": ["rs", "med"],
    "eval": {"tasks": {"rs": {"accuracy": 0.90}, "med": {"accuracy": 0.85}}, "router_accuracy": 0.99},
}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """Validation reports that passed and a dvc.lock with md5 outs for every stage the candidate comes from."""
    (tmp_path / "validation").mkdir()
    for t in TASKS:
        (tmp_path / "validation" / f"{t}.json").write_text(json.dumps({"passed": True}))
    wanted = ["base", "train_router"] + [f"{kind}@{t}" for t in TASKS for kind in ("train_expert", "validate")]
    stages = {s: {"cmd": "x", "outs": [{"path": s, "hash": "md5", "md5": "0123456789abcdef"}]} for s in wanted}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return tmp_path


def unchanged_answers(production: dict | None, eval_json: dict) -> dict:
    """Production's recorded answers and the candidate's on the same questions, disagreeing no more than the two
    accuracies force (what an expert that was not retrained gives): the paired evidence the gate normally has."""
    pairs = {}
    for task in (production or {}).get("tasks", []):
        before = ((production.get("eval") or {}).get("tasks") or {}).get(task, {}).get("accuracy")
        entry = (eval_json.get("tasks") or {}).get(task)
        if not isinstance(before, float) or not isinstance(entry, dict) or not isinstance(entry.get("accuracy"), float):
            continue
        n = entry.get("n", 100)
        prod = {f"q{i}": i < round(before * n) for i in range(n)}
        pairs[task] = paired_test(prod, {f"q{i}": i < round(entry["accuracy"] * n) for i in range(n)})
    return pairs


def gate(project: Path, eval_json: dict, production: dict | None = None, tasks=TASKS, cfg: GateConfig = CFG, **kw):
    kw.setdefault("pairs", unchanged_answers(production, eval_json))
    return evaluate_gate(
        eval_json,
        production,
        list(tasks),
        cfg,
        candidate="v-cand",
        validation_dir=project / "validation",
        dvc_lock=project / "dvc.lock",
        **kw,
    )


def failed(result) -> list[str]:
    return [c.name for c in result.failed()]


def check(result, name: str):
    matches = [c for c in result.checks if c.name == name]
    assert len(matches) == 1, [c.name for c in result.checks]
    return matches[0]


def test_the_default_thresholds_are_not_zero():
    assert CFG.min_task_accuracy > 0 and CFG.min_new_task_accuracy > 0 and CFG.min_router_accuracy > 0
    assert 0 < CFG.max_prior_drop < 1 and 0 < CFG.max_language_drop < 1


def test_a_first_candidate_with_every_input_passes(project):
    result = gate(project, good_eval())
    assert result.passed and result.decision == "pass", [(c.name, c.detail) for c in result.failed()]
    assert result.baseline is None
    names = [c.name for c in result.checks]
    assert names == [
        "policy_unchanged",
        "task:rs",
        "task:med",
        "task:ad",
        "router_accuracy",
        "language_degradation",
        "validation_passed",
        "data_state_known",
    ]


def test_a_candidate_against_production_with_every_input_passes(project):
    result = gate(project, good_eval(), PRODUCTION)
    assert result.passed, [(c.name, c.detail) for c in result.failed()]
    assert result.baseline == "v-prod"
    assert {"prior_task:rs", "prior_task:med", "new_task:ad"} <= {c.name for c in result.checks}


def test_an_eval_without_the_language_suite_fails_the_language_check(project):
    e = good_eval()
    del e["language"]
    result = gate(project, e, PRODUCTION)
    assert result.decision == "fail"
    assert failed(result) == ["language_degradation"]
    assert "fails closed" in check(result, "language_degradation").detail


@pytest.mark.parametrize("missing", ["accuracy", "base_accuracy"])
def test_a_half_language_result_fails_the_language_check(project, missing):
    e = good_eval()
    del e["language"][missing]
    assert failed(gate(project, e, PRODUCTION)) == ["language_degradation"]


def test_a_language_drop_beyond_the_limit_fails(project):
    e = good_eval()
    e["language"] = {"accuracy": 0.80, "base_accuracy": 0.91}
    result = gate(project, e, PRODUCTION)
    assert failed(result) == ["language_degradation"]
    assert check(result, "language_degradation").value == pytest.approx(0.11)


@pytest.mark.parametrize("production", [None, PRODUCTION], ids=["first-candidate", "with-production"])
def test_a_task_missing_from_eval_fails_naming_it(project, production):
    e = good_eval()
    del e["tasks"]["med"]
    result = gate(project, e, production)
    assert result.decision == "fail"
    assert failed(result) == ["task:med"]
    assert "no evaluation result" in check(result, "task:med").detail


def test_an_eval_without_any_task_results_fails_every_task(project):
    e = good_eval()
    del e["tasks"]
    assert failed(gate(project, e)) == ["task:rs", "task:med", "task:ad"]


def test_a_missing_router_accuracy_fails(project):
    e = good_eval()
    del e["router_accuracy"]
    result = gate(project, e, PRODUCTION)
    assert failed(result) == ["router_accuracy"]
    c = check(result, "router_accuracy")
    assert c.value is None and "fails closed" in c.detail


def test_a_low_router_accuracy_fails(project):
    e = good_eval()
    e["router_accuracy"] = CFG.min_router_accuracy - 0.01
    assert failed(gate(project, e, PRODUCTION)) == ["router_accuracy"]


def test_a_prior_task_without_production_accuracy_fails(project):
    production = copy.deepcopy(PRODUCTION)
    del production["eval"]["tasks"]["med"]["accuracy"]
    result = gate(project, good_eval(), production)
    assert failed(result) == ["prior_task:med"]
    assert "no accuracy" in check(result, "prior_task:med").detail


def test_a_production_manifest_without_eval_fails_every_prior_task(project):
    production = {k: v for k, v in PRODUCTION.items() if k != "eval"}
    assert failed(gate(project, good_eval(), production)) == ["prior_task:rs", "prior_task:med"]


def test_a_planted_regression_on_a_prior_task_fails_naming_it(project):
    cfg = GateConfig(max_prior_drop=0.03)
    e = good_eval({"rs": 0.90, "med": 0.75, "ad": 0.80})  # med: 0.85 in production, -0.10 now
    result = gate(project, e, PRODUCTION, cfg=cfg)
    assert result.decision == "fail"
    assert failed(result) == ["prior_task:med"]
    c = check(result, "prior_task:med")
    assert c.value == pytest.approx(0.75) and c.threshold == pytest.approx(0.82)
    assert "0.850" in c.detail


def test_a_drop_within_the_limit_passes_when_enough_questions_show_it(project):
    e = good_eval({"rs": 0.90, "med": 0.84, "ad": 0.80})  # -0.01 with a 0.03 allowance
    for t in ("rs", "med"):
        e["tasks"][t]["n"] = 1000  # 10 of 1000 answers lost: the drop's upper bound is 0.017
    assert gate(project, e, PRODUCTION, cfg=GateConfig(max_prior_drop=0.03)).passed


def test_a_weak_new_task_fails_as_new(project):
    e = good_eval({"rs": 0.90, "med": 0.85, "ad": CFG.min_new_task_accuracy - 0.05})
    assert failed(gate(project, e, PRODUCTION)) == ["new_task:ad"]


def test_a_missing_validation_report_fails(project):
    (project / "validation" / "ad.json").unlink()
    result = gate(project, good_eval(), PRODUCTION)
    assert failed(result) == ["validation_passed"]
    assert "ad" in check(result, "validation_passed").detail


def test_a_failed_validation_report_fails(project):
    (project / "validation" / "rs.json").write_text(json.dumps({"passed": False}))
    assert failed(gate(project, good_eval(), PRODUCTION)) == ["validation_passed"]


def test_a_missing_dvc_lock_fails(project):
    (project / "dvc.lock").unlink()
    assert failed(gate(project, good_eval(), PRODUCTION)) == ["data_state_known"]


@pytest.mark.parametrize("stage", ["base", "train_router", "train_expert@ad", "validate@rs"])
def test_a_stage_without_hashes_in_dvc_lock_fails_naming_it(project, stage):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    lock["stages"][stage]["outs"] = [{"path": stage}]  # recorded, but without an md5
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    result = gate(project, good_eval(), PRODUCTION)
    assert failed(result) == ["data_state_known"]
    assert stage in check(result, "data_state_known").detail


def test_the_result_round_trips_through_json(project):
    from mllmcl.release.gate import GateResult

    result = gate(project, good_eval({"rs": 0.90, "med": 0.75, "ad": 0.80}), PRODUCTION)
    again = GateResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.decision == "fail" and [c.name for c in again.failed()] == ["prior_task:med"]


def test_a_task_dropped_from_tasks_fails_the_gate(project):
    production = copy.deepcopy(PRODUCTION)
    production["tasks"] = ["rs", "med", "ad"]
    production["eval"]["tasks"]["ad"] = {"accuracy": 0.80}
    e = good_eval({"rs": 0.90, "med": 0.85})
    result = gate(project, e, production, tasks=["rs", "med"])
    assert result.decision == "fail"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["tasks"]["med"].pop("accuracy"),
        lambda e: e["tasks"]["med"].update(accuracy=None),
        lambda e: e["language"].update(accuracy=None),
        lambda e: e.update(router_accuracy="0.99"),
    ],
    ids=["task-without-accuracy", "task-accuracy-null", "language-null", "router-accuracy-string"],
)
def test_a_malformed_eval_fails_its_check_instead_of_crashing(project, mutate):
    e = good_eval()
    mutate(e)
    try:
        result = gate(project, e, PRODUCTION)
    except (KeyError, TypeError) as crash:
        raise AssertionError(f"the gate crashed: {crash!r}") from crash
    assert result.decision == "fail"
