"""The gate refuses regressions by name, passes a good candidate, judges a first candidate on absolute
thresholds, and its HTML report is self-contained with the decision first."""

from __future__ import annotations

import json

import pytest
import yaml

from mllmcl.config import GateConfig
from mllmcl.release.gate import evaluate_gate
from mllmcl.release.report import render_html, render_markdown
from mllmcl.release.stats import paired_test

TASKS = ["rs", "med", "ad"]
CFG = GateConfig(
    min_task_accuracy=0.7,
    min_new_task_accuracy=0.7,
    max_prior_drop=0.03,
    min_router_accuracy=0.95,
    max_language_drop=0.05,
)


def _eval(accs: dict, router=0.99, lang=(0.9, 0.9)):
    return {
        "tasks": {t: {"accuracy": a, "n": 100, "router_accuracy": router} for t, a in accs.items()},
        "language": {"accuracy": lang[0], "base_accuracy": lang[1], "n": 50},
        "router_accuracy": router,
        "mean_accuracy": sum(accs.values()) / len(accs),
        "router_confusion": {t: {t: 99, "base": 1} for t in accs},
    }


@pytest.fixture()
def env(tmp_path):
    (tmp_path / "validation").mkdir()
    for t in TASKS:
        (tmp_path / "validation" / f"{t}.json").write_text(json.dumps({"passed": True}))
    stages = {
        s: {"outs": [{"path": "x", "md5": "abc"}]}
        for s in ["base", "train_router"] + [f"{k}@{t}" for t in TASKS for k in ("train_expert", "validate")]
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return tmp_path


def _gate(env, eval_json, production=None, pairs=None):
    return evaluate_gate(
        eval_json,
        production,
        TASKS,
        CFG,
        candidate="v-cand",
        validation_dir=env / "validation",
        dvc_lock=env / "dvc.lock",
        history=[production] if production else [],
        pairs=pairs,
    ).to_json()


PRODUCTION = {"version": "v-prod", "tasks": ["rs", "med"], "eval": _eval({"rs": 0.9, "med": 0.85})}


def _same_answers(n: int, correct: int):
    answers = {f"q{i}": i < correct for i in range(n)}
    return paired_test(answers, dict(answers))


def test_a_good_candidate_passes(env):
    """Prior tasks answered as production answered them (paired, n=100) show non-inferiority at a 0.03 margin."""
    same = {"rs": _same_answers(100, 90), "med": _same_answers(100, 85)}
    gate = _gate(env, _eval({"rs": 0.9, "med": 0.85, "ad": 0.8}), PRODUCTION, pairs=same)
    assert gate["decision"] == "pass", gate["checks"]
    assert gate["baseline"] == "v-prod"
    names = {c["name"] for c in gate["checks"]}
    assert {"prior_task:rs", "prior_task:med", "new_task:ad", "router_accuracy", "language_degradation"} <= names
    assert gate["metrics"]["matrix"][-1] == [0.9, 0.85, 0.8]


def test_a_planted_regression_on_an_earlier_task_fails_naming_it(env):
    same = {"rs": _same_answers(100, 90)}
    gate = _gate(env, _eval({"rs": 0.9, "med": 0.40, "ad": 0.8}), PRODUCTION, pairs=same)
    assert gate["decision"] == "fail"
    failed = [c for c in gate["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["prior_task:med"]
    assert "med" in failed[0]["detail"] and "0.850" in failed[0]["detail"]


def test_a_first_candidate_is_judged_on_absolute_thresholds(env):
    gate = _gate(env, _eval({"rs": 0.9, "med": 0.6, "ad": 0.8}))
    assert gate["baseline"] is None and gate["decision"] == "fail"
    assert [c["name"] for c in gate["checks"] if not c["passed"]] == ["task:med"]


@pytest.mark.parametrize(
    "change, check",
    [
        (lambda e, env: e.update(router_accuracy=0.5), "router_accuracy"),
        (lambda e, env: e["language"].update(accuracy=0.5), "language_degradation"),
        (lambda e, env: (env / "validation/ad.json").write_text(json.dumps({"passed": False})), "validation_passed"),
        (lambda e, env: (env / "dvc.lock").unlink(), "data_state_known"),
    ],
)
def test_each_guard_can_fail_the_gate(env, change, check):
    e = _eval({"rs": 0.9, "med": 0.85, "ad": 0.8})
    change(e, env)
    gate = _gate(env, e, PRODUCTION)
    assert gate["decision"] == "fail"
    assert check in [c["name"] for c in gate["checks"] if not c["passed"]]


def test_report_is_self_contained_and_leads_with_the_decision(env):
    e = _eval({"rs": 0.9, "med": 0.40, "ad": 0.8})
    gate = _gate(env, e, PRODUCTION)
    page = render_html(gate, e, PRODUCTION)
    assert page.index("FAIL: do not promote") < page.index("<table")
    assert "prior_task:med" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    md = render_markdown(gate, e)
    assert md.startswith("# Promotion gate: **FAIL**") and "prior_task:med" in md


def test_report_leads_with_a_loosened_policy_and_shows_statistics_and_examples(env):
    production = {**PRODUCTION, "params": {"gate": {**CFG.model_dump(), "min_new_task_accuracy": 0.7}}}
    loose = CFG.model_copy(update={"min_new_task_accuracy": 0.25})
    e = _eval({"rs": 0.9, "med": 0.85, "ad": 0.5})
    examples = {
        "ad": [{"id": "ad-1", "question": "is the light red?", "answer": "yes", "prediction": "no", "expert": "ad"}]
    }
    gate = evaluate_gate(
        e,
        production,
        TASKS,
        loose,
        candidate="v-cand",
        validation_dir=env / "validation",
        dvc_lock=env / "dvc.lock",
        examples=examples,
    ).to_json()
    md = render_markdown(gate, e)
    assert md.splitlines()[4].startswith("> **POLICY LOOSENED") and "min_new_task_accuracy 0.7 -> 0.25" in md
    assert "n=100, 95% CI" in md and "| ad-1 | is the light red? | yes | no | ad |" in md
    page = render_html(gate, e, production)
    assert page.index("POLICY LOOSENED") < page.index("<table") and "is the light red?" in page


def test_bwt_is_never_shown_as_a_number_the_matrix_cannot_support():
    from mllmcl.continual.metrics import summary
    from mllmcl.release.report import bwt_text

    # a first run learned rs and med at once (no just-learned row), then a stage added ad: rs went 0.79 -> 0.78
    m = summary([[None, None, None], [0.79, 0.85, None], [0.78, 0.85, 0.8]])
    assert bwt_text(m) == "+0.000 (over 1 of 2 earlier tasks; change vs the previous stage -0.005)"
    m = summary([[None, None, None], [None, None, None], [0.78, 0.85, 0.8]])
    assert m["BWT"] is None and bwt_text(m) == "n/a (no task's just-learned accuracy is recorded)"
    assert bwt_text(summary([[0.9, None], [0.8, 0.7]])) == "-0.100"
