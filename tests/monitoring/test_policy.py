"""The drift policy, table-driven: verdict numbers in, decision out (pure, no model, no files)."""

from __future__ import annotations

import pytest

from mllmcl.config import DriftConfig
from monitoring.policy import Decision, decide, top_task
from monitoring.report import DriftResult

CFG = DriftConfig(novel_share=0.3, drift_share=0.5, min_batch=20, embedding_threshold=0.65)


def verdict(
    *, rows=50, unknown=0.0, image=0.5, question=0.5, share=0.0, strong=(), routed=None, assigned=None
) -> DriftResult:
    embeddings = {"image": {"score": image, "drifted": image > CFG.embedding_threshold}}
    if question is not None:
        embeddings["question"] = {"score": question, "drifted": question > CFG.embedding_threshold}
    return DriftResult(
        detected=any(e["drifted"] for e in embeddings.values()) or share >= CFG.drift_share or bool(strong),
        drift_share=share,
        threshold=CFG.drift_share,
        drifted_columns=["brightness", "red"] if share else list(strong),
        strong_columns=list(strong),
        scores={},
        embeddings=embeddings,
        reference_rows=120,
        current_rows=rows,
        unknown_share=unknown,
        base_share=unknown,
        routed=routed if routed is not None else {"rs": 40, "med": 10},
        assigned=assigned if assigned is not None else {"rs": 40, "med": 10},
    )


CASES = [
    # name, verdict, labelled, kind, action, task
    ("in distribution", verdict(), False, "none", "none", None),
    ("in distribution, labelled", verdict(), True, "none", "none", None),
    ("too few requests", verdict(rows=5, unknown=1.0, image=0.99, question=0.99), False, "none", "wait", None),
    ("images moved, unlabelled", verdict(image=0.9), False, "known_drift", "alert", "rs"),
    ("images moved, labelled", verdict(image=0.9), True, "known_drift", "refresh", "rs"),
    (
        "the task concerned is where most requests belong",
        verdict(image=0.9, assigned={"med": 45, "rs": 5}),
        True,
        "known_drift",
        "refresh",
        "med",
    ),
    ("half the columns drifted", verdict(share=0.5), False, "known_drift", "alert", "rs"),
    ("one column far off", verdict(strong=["width"]), False, "known_drift", "alert", "rs"),
    ("few columns drifted", verdict(share=0.2), False, "none", "none", None),
    ("a few unknowns and no drift", verdict(unknown=0.1), False, "none", "none", None),
    # the router's open set flags a learned task's new-looking images, but the questions are that task's
    ("many unknowns asking known questions", verdict(unknown=0.8, image=0.99), True, "known_drift", "refresh", "rs"),
    ("unknowns alone make a decision", verdict(unknown=0.3), False, "known_drift", "alert", "rs"),
    # new questions: a new kind of request, whether the router noticed or not
    (
        "new questions, router fooled, unlabelled",
        verdict(question=0.99, image=0.8),
        False,
        "novel",
        "label_request",
        None,
    ),
    ("new questions, router fooled, labelled", verdict(question=0.99, image=0.8), True, "novel", "new_task", None),
    ("new questions, all unknown", verdict(unknown=1.0, image=0.99, question=0.99), True, "novel", "new_task", None),
    # an old traffic log without question embeddings: the open set alone decides
    ("no question embeddings, many unknowns", verdict(unknown=0.5, question=None), True, "novel", "new_task", None),
    (
        "no question embeddings, few unknowns",
        verdict(unknown=0.1, question=None, image=0.9),
        False,
        "known_drift",
        "alert",
        "rs",
    ),
]


@pytest.mark.parametrize(("name", "result", "labelled", "kind", "action", "task"), CASES, ids=[c[0] for c in CASES])
def test_decision(name, result, labelled, kind, action, task):
    d = decide(result, labelled=labelled, cfg=CFG)
    assert (d.kind, d.action, d.task) == (kind, action, task), d.line()
    assert d.labelled is labelled and d.reason
    assert d.triggers is (action not in ("none", "wait"))
    assert d.numbers["requests"] == result.current_rows and d.numbers["unknown_share"] == result.unknown_share


def test_decision_serialises_with_its_numbers():
    d = decide(verdict(image=0.9), labelled=True, cfg=CFG)
    js = d.to_json()
    assert js["action"] == "refresh" and js["task"] == "rs" and js["numbers"]["embeddings"]["image"] == 0.9
    assert Decision(**js) == d
    assert d.line().startswith("known_drift: refresh task=rs (")


def test_top_task_ignores_the_base_and_breaks_ties_by_name():
    assert top_task({"base": 30, "med": 10, "ad": 10}) == "ad"
    assert top_task({"base": 3}) is None
