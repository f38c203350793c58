"""The drift verdict and Evidently's report on synthetic feature frames (no model): a batch drawn like the reference
is not drifted (single tasks and mixes), a shifted one and an unseen kind are; the report files are written and
carry the embedding drift."""

from __future__ import annotations

import json

import pytest

from mllmcl.config import DriftConfig
from monitoring.reference import assign_tasks, matched_reference
from monitoring.report import detect, judge, write_report
from tests.monitoring import synthetic

CFG = DriftConfig()


@pytest.fixture(scope="module")
def reference():
    return synthetic.reference(n_per_task=120)


@pytest.mark.parametrize("parts", [[("colour", 50)], [("where", 50)], [("colour", 25), ("where", 25)]])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_like_the_reference_is_not_drifted(reference, parts, seed):
    current = synthetic.batch(parts, seed=1000 + seed)
    result, _ = judge(reference, current, CFG)
    assert not result.detected, result.summary()
    assert result.unknown_share == 0 and set(result.embeddings) == {"image", "question"}


def test_the_reference_follows_the_batch_task_mix(reference):
    current = synthetic.batch([("colour", 40), ("where", 10)], seed=5)
    matched = matched_reference(reference, list(current["expert"]))
    share = (matched["task"] == "colour").mean()
    assert 0.75 <= share <= 0.85 and not matched["id"].duplicated().any()
    # a batch of only one task is compared with that task alone
    only = matched_reference(reference, ["where"] * 30)
    assert set(only["task"]) == {"where"} and len(only) == 120


def test_a_shifted_batch_of_a_known_task_drifts(reference):
    current = synthetic.batch([("colour", 50)], seed=7, shift=0.3)
    result, _ = judge(reference, current, CFG)
    assert result.detected, result.summary()
    assert result.embeddings["image"]["drifted"] and {"brightness", "red"} <= set(result.drifted_columns)
    assert result.unknown_share == 0 and result.routed == {"colour": 50} and result.assigned == {"colour": 50}


def test_an_unseen_kind_drifts_and_is_unknown(reference):
    current = synthetic.batch([("colour", 50)], seed=8, novel=True)
    result, _ = judge(reference, current, CFG)
    assert result.detected and result.unknown_share == 1.0 and result.base_share == 1.0
    assert "question" in result.drifted_columns  # the question text drifted (domain classifier)


def test_unknown_images_are_compared_with_the_task_their_questions_belong_to(reference):
    # images the router did not know (sent to the base) but asked a learned task's questions
    current = synthetic.batch([("where", 40)], seed=11, shift=0.3)
    current["expert"], current["known"], current["to_base"] = "base", "no", "yes"
    assert set(assign_tasks(reference, current)) == {"where"}
    result, matched = judge(reference, current, CFG)
    assert set(matched["task"]) == {"where"} and result.assigned == {"where": 40}
    assert result.detected and not result.embeddings["question"]["drifted"]  # the questions are where's


def test_report_files_hold_the_embedding_drift(reference, tmp_path):
    current = synthetic.batch([("colour", 30)], seed=9, shift=0.3)
    matched = matched_reference(reference, list(current["expert"])).head(60)
    result = detect(matched, current, CFG)
    written = write_report(matched, current, tmp_path, "b1", {"summary": result.summary(), **result.to_json()}, CFG)
    page = (tmp_path / "b1.html").read_text()
    assert page.lstrip().lower().startswith(("<!doctype html", "<html"))
    assert "Drift in embeddings" in page and "brightness" in page
    doc = json.loads((tmp_path / "b1.json").read_text())
    assert written == {"html": str(tmp_path / "b1.html"), "json": str(tmp_path / "b1.json")}
    assert doc["embeddings"]["image"]["drifted"] is True and doc["drifted_embeddings"]
    # Evidently's own values for the same methods are in the JSON too, and agree with the verdict
    evidently = doc["evidently"]
    image = next(v for k, v in evidently.items() if k.startswith("EmbeddingsDrift(embeddings_name=image"))
    assert image == pytest.approx(doc["embeddings"]["image"]["score"], abs=1e-3)
    assert any(k.startswith("ValueDrift(column=question") for k in evidently)
