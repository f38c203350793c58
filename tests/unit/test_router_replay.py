"""The router's replay: question swaps teach it that a question only one task asks decides the route, and leave the
image to decide wherever tasks share a wording."""

from __future__ import annotations

from mllmcl.continual.router import BASE, question_swaps


def _rec(task: str, i: int, question: str, image: bool = True) -> dict:
    return {"id": f"{task}-{i}", "question": question, "image": f"images/train_{i:05d}.png" if image else None}


def test_a_question_one_task_asks_gets_copies_on_other_tasks_images_and_keeps_its_label():
    labelled = [("ocr", _rec("ocr", i, "what word is written?")) for i in range(4)]
    labelled += [("math", _rec("math", i, "solve the sum.")) for i in range(4)]
    swaps = question_swaps(labelled, copies=2, seed=0)
    assert len(swaps) == 2 * 8
    for label, rec in swaps:
        assert rec["_task"] != label  # the image comes from another task's folder
        assert rec["question"] == {"ocr": "what word is written?", "math": "solve the sum."}[label]
        assert rec["image"].startswith("images/train_")
    assert len({rec["id"] for _, rec in swaps}) == len(swaps)
    assert question_swaps(labelled, copies=2, seed=0) == swaps  # a seed repeats itself


def test_a_shared_wording_and_text_only_requests_get_no_swaps():
    labelled = [("rs", _rec("rs", 0, "what is shown?")), ("med", _rec("med", 0, "what is shown?"))]
    labelled += [("med", _rec("med", 1, "which organ is it?")), (BASE, _rec("language", 0, "what is up?", image=False))]
    swaps = question_swaps(labelled, copies=1, seed=0)
    assert [(label, rec["question"], rec["_task"]) for label, rec in swaps] == [("med", "which organ is it?", "rs")]
    assert question_swaps(labelled, copies=0, seed=0) == []
    assert question_swaps([("rs", _rec("rs", 0, "what is shown?"))], copies=1, seed=0) == []  # one task: no other image


def test_a_fractional_count_gives_that_share_of_the_requests_one_copy_and_a_whole_count_is_unchanged():
    labelled = [("ocr", _rec("ocr", i, f"what word is written? {i}")) for i in range(200)]
    labelled += [("math", _rec("math", i, f"solve the sum. {i}")) for i in range(200)]
    quarter = question_swaps(labelled, copies=0.25, seed=0)
    assert 70 <= len(quarter) <= 130  # about 100 of 400, one copy each
    assert len({rec["id"] for _, rec in quarter}) == len(quarter)
    assert all(rec["_task"] != label for label, rec in quarter)
    assert question_swaps(labelled, copies=0.25, seed=0) == quarter
    assert len(question_swaps(labelled, copies=1.5, seed=0)) > 400
    assert question_swaps(labelled, copies=1.0, seed=3) == question_swaps(labelled, copies=1, seed=3)
