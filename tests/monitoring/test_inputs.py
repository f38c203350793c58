"""Monitor inputs: a JSONL batch (a bad line is one DataError naming file and line), traffic-log lines (features,
watermark), the reference cache per version, the event cooldown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from mllmcl.errors import DataError
from monitoring.features import is_labelled, read_batch, to_frame, traffic_row
from monitoring.monitor import batch_name, cooldown_allows, read_traffic, record_event
from monitoring.policy import Decision
from monitoring.reference import cached_reference


def _batch(tmp_path, lines: list[str]):
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "ok.png")
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps({"id": "r1", "image": "ok.png", "question": "what colour is the square?"})


def test_a_good_batch_is_read_with_its_images(tmp_path):
    objs, requests = read_batch(_batch(tmp_path, [GOOD, json.dumps({"question": "the opposite of hot is?"})]))
    assert [r.id for r in requests] == ["r1", None] and requests[0].image.size == (16, 16)
    assert requests[1].image is None and not is_labelled(objs)
    assert is_labelled([{"question": "q", "answer": "a"}])


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("{not json", ["line 2", "JSON"]),
        (json.dumps({"id": "r2", "image": "ok.png"}), ["line 2", "question"]),
        (json.dumps({"id": "r2", "image": "missing.png", "question": "q"}), ["line 2", "missing.png"]),
        (json.dumps({"id": "r2", "image": "broken.png", "question": "q"}), ["line 2", "broken.png"]),
        (json.dumps({"id": "r2", "image": "../../etc/passwd", "question": "q"}), ["line 2", "outside"]),
    ],
)
def test_a_bad_line_is_one_data_error_naming_file_and_line(tmp_path, bad, words):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    path = _batch(tmp_path, [GOOD, bad])
    with pytest.raises(DataError) as e:
        read_batch(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and all(w in message for w in words), message


def test_missing_or_empty_batch(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_batch(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no requests"):
        read_batch(tmp_path / "empty.jsonl")


def _traffic(t: str, **kw) -> dict:
    line = {
        "time": t,
        "id": "x",
        "version": "v-000000000000",
        "question": "is there water?",
        "expert": "rs",
        "confidence": 0.97,
        "known": True,
        "novelty": 2.5,
        "image_stats": {
            "brightness": 0.4,
            "red": 0.3,
            "green": 0.5,
            "blue": 0.4,
            "contrast": 0.2,
            "edges": 0.1,
            "width": 64,
            "height": 64,
        },
        "image_embedding": [0.1, 0.2, 0.3],
        "question_embedding": [0.5, 0.4],
        "latency_ms": 12.0,
    }
    return {**line, **kw}


def test_traffic_lines_become_feature_rows():
    frame = to_frame(
        [
            traffic_row(_traffic("t1")),
            traffic_row(_traffic("t2", expert="base", known=False, image_stats=None, image_embedding=None)),
        ]
    )
    assert list(frame["to_base"]) == ["no", "yes"] and list(frame["has_image"]) == ["yes", "no"]
    assert frame.loc[1, "img_00"] == 0.0 and frame.loc[0, "img_02"] == 0.3 and frame.loc[0, "question_words"] == 3
    with pytest.raises(DataError, match="lacks expert"):
        traffic_row({"question": "q", "confidence": 1.0}, "traffic: request 1")


def test_traffic_is_read_past_a_watermark(tmp_path):
    day1, day2 = tmp_path / "2026-11-25.jsonl", tmp_path / "2026-11-26.jsonl"
    day1.write_text(json.dumps(_traffic("2026-11-25T23:00:00+00:00")) + "\n")
    day2.write_text(
        "".join(json.dumps(_traffic(f"2026-11-26T0{i}:00:00+00:00")) + "\n" for i in range(3))
        + '{"time": "2026-11-26T09'  # the server is writing this one
    )
    rows, mark = read_traffic(tmp_path)
    assert len(rows) == 4 and mark == "2026-11-26T02:00:00+00:00"
    rows, mark2 = read_traffic(tmp_path, since="2026-11-26T00:00:00+00:00")
    assert [r["time"][11:13] for r in rows] == ["01", "02"] and mark2 == mark
    assert read_traffic(tmp_path, since=mark) == ([], mark)
    day1.write_text("garbage\n" + json.dumps(_traffic("2026-11-25T23:00:00+00:00")) + "\n")
    with pytest.raises(DataError, match=r"2026-11-25.jsonl, line 1: malformed JSON"):
        read_traffic(tmp_path)


def test_reference_is_cached_per_version(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return to_frame([{**traffic_row(_traffic("t")), "task": "rs"}])

    a = cached_reference(tmp_path, "v-aaaaaaaaaaaa", compute)
    b = cached_reference(tmp_path, "v-aaaaaaaaaaaa", compute)
    assert len(calls) == 1 and a.equals(b) and (tmp_path / "v-aaaaaaaaaaaa.parquet").is_file()
    cached_reference(tmp_path, "v-bbbbbbbbbbbb", compute)  # production moved: computed afresh
    assert len(calls) == 2


def test_batch_names():
    assert batch_name("data/incoming/2026-11-26/requests.jsonl") == "2026-11-26"
    assert batch_name("some/where/pets.jsonl") == "pets"


def test_cooldown_allows_one_event_per_decision_per_window(tmp_path):
    state, now = tmp_path / "events.json", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    alert = Decision("known_drift", "alert", "r", "rs")
    assert cooldown_allows(state, alert, 30, now)
    assert not cooldown_allows(state, alert, 30, now + timedelta(minutes=10))
    assert cooldown_allows(state, Decision("novel", "label_request", "r"), 30, now + timedelta(minutes=10))
    assert cooldown_allows(state, alert, 30, now + timedelta(minutes=31))
    # checking without recording (the event may still fail to send), then recording once sent
    novel = Decision("novel", "new_task", "r")
    assert cooldown_allows(state, novel, 30, now, record=False) and cooldown_allows(state, novel, 30, now, record=False)
    record_event(state, novel, now)
    assert not cooldown_allows(state, novel, 30, now + timedelta(minutes=1))
