"""Validation rejects each kind of bad input with its row (id or line) and rule named, in the result and in
the JSON report, and `stages.validate` exits 1 with a message instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.config import ValidateConfig
from mllmcl.data.images import pack_images
from mllmcl.data.records import write_records
from mllmcl.data.validation import validate_task, write_reports

CFG = ValidateConfig(min_rows={"train": 4, "test": 2}, question_type_balance_tolerance=0.6)
REPO = Path(__file__).resolve().parents[2]


def make_valid(folder: Path, n_train: int = 8, n_test: int = 4) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            name = f"images/{split}_{i}.png"
            Image.new("RGB", (64, 64), (i * 20 % 255, 100 if split == "train" else 200, 50)).save(folder / name)
            qt = ["colour", "count"][i % 2]
            rows.append(
                {
                    "id": f"{split}-{i}",
                    "image": name,
                    "question": f"what {qt}?",
                    "answer": "yes",
                    "answer_type": "yesno",
                    "choices": ["yes", "no"],
                    "question_type": qt,
                }
            )
        write_records(folder / f"{split}.jsonl", rows)
    (folder / "meta.json").write_text(json.dumps({"task": "t", "source": "synthetic", "image_size": 64}))


def _edit(folder: Path, split: str, index: int, **changes) -> None:
    path = folder / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[index].update(changes)
    for key in [k for k, v in changes.items() if v is _DROP]:
        del rows[index][key]
    write_records(path, rows)


_DROP = object()


def _missing_answer(f):
    _edit(f, "train", 2, answer=_DROP)
    return "schema", "line 3"


def _empty_answer(f):
    _edit(f, "train", 2, answer="  ")
    return "schema", "line 3"


def _answer_outside_set(f):
    _edit(f, "train", 1, answer="maybe")
    return "answer_in_choices", "train-1"


def _duplicate_id(f):
    _edit(f, "test", 0, id="train-3")
    return "unique_id", "train-3"


def _truncated_png(f):
    p = f / "images/train_4.png"
    p.write_bytes(p.read_bytes()[:60])
    return "image_decodes", "train-4"


def _not_an_image(f):
    (f / "images/train_5.png").write_text("this is not a picture")
    return "image_decodes", "train-5"


def _wrong_size(f):
    Image.new("RGB", (32, 48)).save(f / "images/train_6.png")
    return "image_size_ok", "train-6"


def _grey_mode(f):
    Image.new("L", (64, 64)).save(f / "images/train_6.png")
    return "image_mode_ok", "train-6"


def _passwd(f):
    _edit(f, "train", 0, image="../../etc/passwd")
    return "path_safe", "train-0"


def _absolute(f):
    _edit(f, "train", 0, image="/etc/hostname")
    return "path_safe", "train-0"


def _symlink_out(f):
    link = f / "images/escape.png"
    os.symlink("/etc/hostname", link)
    _edit(f, "train", 3, image="images/escape.png")
    return "path_safe", "train-3"


def _missing_image(f):
    (f / "images/train_7.png").unlink()
    return "image_exists", "train-7"


def _leakage(f):
    (f / "images/test_1.png").write_bytes((f / "images/train_2.png").read_bytes())
    return "no_leakage", "test-1"


def _empty_split(f):
    (f / "test.jsonl").write_text("")
    return "non_empty_split", None


def _malformed_json(f):
    path = f / "train.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]
    path.write_text("\n".join(lines) + "\n")
    return "json", "line 4"


def _bom(f):
    path = f / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    return "utf8_no_bom", "line 1"


def _not_utf8(f):
    path = f / "test.jsonl"
    data = path.read_bytes().split(b"\n")
    data[1] = data[1].replace(b"what", b"wh\xe9t")
    path.write_bytes(b"\n".join(data))
    return "utf8", "line 2"


def _too_few_rows(f):
    path = f / "test.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return "min_rows_test", None


def _long_question(f):
    _edit(f, "train", 5, question=" ".join(["word"] * 5000) + "?")
    return "question_length_ok", "train-5"


BAD = [
    _long_question,
    _missing_answer,
    _empty_answer,
    _answer_outside_set,
    _duplicate_id,
    _truncated_png,
    _not_an_image,
    _wrong_size,
    _grey_mode,
    _passwd,
    _absolute,
    _symlink_out,
    _missing_image,
    _leakage,
    _empty_split,
    _malformed_json,
    _bom,
    _not_utf8,
    _too_few_rows,
]


def test_a_valid_task_passes(tmp_path):
    make_valid(tmp_path)
    result = validate_task(tmp_path, "t", CFG)
    assert result.passed, result.summary()


@pytest.mark.parametrize("damage", BAD, ids=[f.__name__.strip("_") for f in BAD])
def test_bad_input_is_rejected_with_rule_and_row(tmp_path, damage):
    make_valid(tmp_path)
    rule, row = damage(tmp_path)
    result = validate_task(tmp_path, "t", CFG)
    assert not result.passed
    failed = {c.rule: c for c in result.failures()}
    assert rule in failed, result.summary()
    if row:
        assert any(row in r for r in failed[rule].rows), failed[rule]
        assert row in result.summary()
    js, md = write_reports(result, tmp_path / "reports")
    report = json.loads(js.read_text())
    assert report["passed"] is False
    assert any(c["rule"] == rule and not c["passed"] for c in report["checks"])
    assert "FAILED" in md.read_text()


PACKED_DAMAGE = [_truncated_png, _not_an_image, _wrong_size, _grey_mode, _missing_image, _leakage]


def test_a_valid_packed_task_passes(tmp_path):
    make_valid(tmp_path)
    assert pack_images(tmp_path) == 12 and not (tmp_path / "images").exists()
    result = validate_task(tmp_path, "t", CFG)
    assert result.passed, result.summary()


@pytest.mark.parametrize("damage", PACKED_DAMAGE, ids=[f.__name__.strip("_") for f in PACKED_DAMAGE])
def test_a_bad_image_inside_images_zip_is_named_like_a_loose_one(tmp_path, damage):
    """Ingest packs a task's images into images.zip; a damaged member fails the same rule on the same row."""
    make_valid(tmp_path)
    rule, row = damage(tmp_path)
    assert pack_images(tmp_path) > 0
    failed = {c.rule: c for c in validate_task(tmp_path, "t", CFG).failures()}
    assert rule in failed and any(row in r for r in failed[rule].rows), failed


def test_unbalanced_question_types_fail(tmp_path):
    make_valid(tmp_path, n_train=12)
    for i in range(12):
        _edit(tmp_path, "train", i, question_type="colour" if i else "count")
    result = validate_task(tmp_path, "t", CFG)
    assert "question_type_balance_train" in {c.rule for c in result.failures()}


def test_stage_exits_1_with_a_message_and_no_traceback(tmp_path):
    folder = tmp_path / "data" / "tasks" / "bad"
    make_valid(folder)
    _answer_outside_set(folder)
    (tmp_path / "params.yaml").write_text("tasks: [bad]\nvalidate:\n  min_rows: {train: 4, test: 2}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.validate",
            "--task",
            "bad",
            "--root",
            str(tmp_path),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "answer_in_choices" in out and "train-1" in out and "train.jsonl" in out
    assert "Traceback" not in out
    assert (tmp_path / "reports/validation/bad.json").exists()
