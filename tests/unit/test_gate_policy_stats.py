"""A promotion you can trust: the gate policy is production's, not the candidate's; prior tasks are judged with a
paired test on the same questions (a real drop fails, noise passes); every check carries n and a 95% interval."""

from __future__ import annotations

import pytest

from mllmcl.config import GateConfig
from mllmcl.release.stats import paired_test, wilson
from tests.unit.test_gate_fail_closed import check, failed, gate, good_eval, project  # noqa: F401 (fixture)

POLICY = GateConfig().model_dump()


def production(accs: dict[str, float], **policy) -> dict:
    return {
        "version": "v-prod",
        "tasks": list(accs),
        "eval": {"tasks": {t: {"accuracy": a, "n": 200} for t, a in accs.items()}},
        "params": {"gate": {**POLICY, **policy}},
    }


def test_loosening_a_threshold_fails_policy_unchanged_and_the_stricter_value_applies(project):  # noqa: F811
    cfg = GateConfig(min_new_task_accuracy=0.25)  # the candidate's params.yaml loosens the floor
    result = gate(
        project, good_eval({"rs": 0.90, "med": 0.85, "ad": 0.50}), production({"rs": 0.9, "med": 0.85}), cfg=cfg
    )
    assert result.decision == "fail"
    assert set(failed(result)) == {"policy_unchanged", "new_task:ad"}
    assert "min_new_task_accuracy 0.7 -> 0.25" in check(result, "policy_unchanged").detail
    assert check(result, "new_task:ad").threshold == 0.7  # production's policy, not the candidate's
    assert result.policy["loosened"] == ["min_new_task_accuracy 0.7 -> 0.25"]


def test_raising_alpha_loosens_the_prior_task_rule_and_is_refused(project):  # noqa: F811
    """Under non-inferiority a prior task passes when p < alpha: alpha 0.99 would wave a 4-point drop through."""
    evals = good_eval({"rs": 0.86, "med": 0.85, "ad": 0.80})
    prod = _answers(100, 90)
    cand = {q: (ok and int(q[1:]) >= 4) for q, ok in prod.items()}  # 4 answers lost
    result = gate(
        project,
        evals,
        production({"rs": 0.90, "med": 0.85}),
        cfg=GateConfig(alpha=0.99),
        pairs={"rs": paired_test(prod, cand), "med": paired_test(_answers(100, 85), _answers(100, 85))},
    )
    assert set(failed(result)) == {"policy_unchanged", "prior_task:rs"}
    assert "alpha 0.05 -> 0.99" in check(result, "policy_unchanged").detail
    assert result.policy["applied"]["alpha"] == 0.05


def test_tightening_the_policy_is_allowed(project):  # noqa: F811
    cfg = GateConfig(max_prior_drop=0.02, min_router_accuracy=0.97)
    evals = good_eval()
    for entry in evals["tasks"].values():
        entry["n"] = 1000  # enough questions to show a drop below the tighter 0.02
    result = gate(project, evals, production({"rs": 0.9, "med": 0.85}), cfg=cfg)
    assert result.decision == "pass", [(c.name, c.detail) for c in result.failed()]
    assert "tightened" in check(result, "policy_unchanged").detail
    assert check(result, "router_accuracy").threshold == 0.97


def _answers(n: int, correct: int) -> dict[str, bool]:
    return {f"q{i}": i < correct for i in range(n)}


def test_a_planted_five_point_drop_on_200_questions_fails_the_paired_test(project):  # noqa: F811
    prod = _answers(200, 180)  # 0.90
    cand = dict(prod)
    for i in range(10):  # ten questions production got right are now wrong: 0.85
        cand[f"q{i}"] = False
    paired = paired_test(prod, cand)
    assert (paired.n, paired.lost, paired.gained) == (200, 10, 0) and paired.p_value < 0.001
    result = gate(
        project,
        good_eval({"rs": 0.85, "med": 0.85, "ad": 0.80}),
        production({"rs": 0.90, "med": 0.85}),
        pairs={"rs": paired},
    )
    rs = check(result, "prior_task:rs")
    assert not rs.passed and rs.p_value > 0.9  # nowhere near showing a drop below 0.03
    assert "10 now wrong, 0 now right" in rs.detail and "non-inferiority" in rs.detail
    assert rs.n == 100 and rs.interval[0] < 0.85 < rs.interval[1]


def test_a_rerun_with_identical_answers_passes(project):  # noqa: F811
    prod = _answers(200, 180)
    paired = paired_test(prod, dict(prod))
    assert (paired.lost, paired.gained, paired.p_value) == (0, 0, 1.0)
    result = gate(
        project,
        good_eval({"rs": 0.90, "med": 0.85, "ad": 0.80}),
        production({"rs": 0.90, "med": 0.85}),
        pairs={"rs": paired},
    )
    assert check(result, "prior_task:rs").passed


def test_the_candidate_must_show_its_drop_is_small_not_the_data_that_it_is_large(project):  # noqa: F811
    """4 answers lost and 0 gained on 100 questions (drop 0.04 > 0.03) has McNemar p = 0.0625: the old rule let it
    through as noise. Non-inferiority asks the candidate to show a drop below 0.03 at alpha: it cannot, and the check
    says the test's power at this n."""
    prod = _answers(100, 90)
    cand = dict(prod)
    for i in range(4):
        cand[f"q{i}"] = False
    paired = paired_test(prod, cand)
    assert (paired.lost, paired.gained) == (4, 0) and paired.p_value == pytest.approx(0.0625)
    evals = good_eval({"rs": 0.86, "med": 0.85, "ad": 0.80})
    rs = check(gate(project, evals, production({"rs": 0.90, "med": 0.85}), pairs={"rs": paired}), "prior_task:rs")
    assert not rs.passed and rs.p_value >= 0.05 and "power at this n" in rs.detail and 0 < rs.power < 1


def test_identical_answers_pass_on_enough_questions_and_a_tiny_test_set_cannot_show_anything(project):  # noqa: F811
    for n, passes in ((200, True), (40, False)):
        prod = _answers(n, int(n * 0.9))
        evals = good_eval({"rs": 0.90, "med": 0.85, "ad": 0.80})
        evals["tasks"]["rs"]["n"] = n
        result = gate(project, evals, production({"rs": 0.90, "med": 0.85}), pairs={"rs": paired_test(prod, prod)})
        assert check(result, "prior_task:rs").passed is passes, (n, check(result, "prior_task:rs").detail)


def test_without_production_answers_the_two_accuracies_must_show_it(project):  # noqa: F811
    evals = good_eval({"rs": 0.90, "med": 0.85, "ad": 0.80})
    prod = production({"rs": 0.90, "med": 0.85})
    small = check(gate(project, evals, prod, pairs={}), "prior_task:rs")  # 200 vs 100 questions: too few unpaired
    assert not small.passed and "no paired answers" in small.detail and "Newcombe" in small.detail
    for t in ("rs", "med"):
        evals["tasks"][t]["n"] = 20000
        prod["eval"]["tasks"][t]["n"] = 20000
    assert check(gate(project, evals, prod, pairs={}), "prior_task:rs").passed


def test_wilson_interval_brackets_the_accuracy_and_narrows_with_n():
    lo, hi = wilson(90, 100)
    assert lo < 0.9 < hi and hi - lo == pytest.approx(0.116, abs=0.01)
    lo2, hi2 = wilson(900, 1000)
    assert hi2 - lo2 < (hi - lo) / 2
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_failing_examples_are_kept_for_failing_tasks_only(project):  # noqa: F811
    examples = {
        "rs": [{"id": "q1", "question": "is there water?", "answer": "yes", "prediction": "no", "expert": "rs"}],
        "med": [{"id": "m1", "question": "abnormal?", "answer": "no", "prediction": "yes", "expert": "med"}],
    }
    result = gate(
        project,
        good_eval({"rs": 0.5, "med": 0.85, "ad": 0.80}),
        production({"rs": 0.9, "med": 0.85}),
        examples=examples,
    )
    assert list(result.examples) == ["rs"]
