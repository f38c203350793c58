"""Monitor inputs: a JSONL batch (a bad line is one DataError naming file and line), traffic-log lines (features,
byte offsets, malformed lines skipped, retention), the reference cache per version, the event cooldown."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from mllmcl.errors import DataError
from monitoring.features import is_labelled, read_batch, to_frame, traffic_row
from monitoring.monitor import (
    batch_name,
    cooldown_allows,
    prune_traffic,
    read_state,
    read_traffic,
    record_event,
    write_state,
)
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


def _line(t: str, **kw) -> str:
    return json.dumps(_traffic(t, **kw)) + "\n"


def _append(path, text: str) -> None:
    """What a server does: one O_APPEND write of whole lines (or, to test, of a part of one)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_traffic_is_read_by_offset_each_line_once_whatever_its_time(tmp_path):
    day1, day2 = tmp_path / "2026-11-25.jsonl", tmp_path / "2026-11-26.jsonl"
    _append(day1, _line("2026-11-25T23:00:00+00:00"))
    _append(day2, "".join(_line(f"2026-11-26T0{i}:00:00+00:00") for i in range(3)) + '{"time": "2026-11-26T09')
    read = read_traffic(tmp_path)
    assert len(read.rows) == 4 and not read.problems  # the half-written last line waits for its newline
    assert read.marks["2026-11-26.jsonl"]["offset"] == day2.read_bytes().rindex(b"\n") + 1
    assert read_traffic(tmp_path, read.marks).rows == []  # nothing is read twice
    # the first server finishes its line; a slower second server appends an older request after it, to the same file
    # and to yesterday's: a time watermark (10:00 seen) would skip both older ones forever
    _append(day2, ':00:00+00:00", "question": "q?", "expert": "rs", "confidence": 0.9}\n')
    _append(day2, _line("2026-11-26T08:30:00+00:00", id="slow"))
    _append(day1, _line("2026-11-25T23:59:00+00:00", id="late"))
    again = read_traffic(tmp_path, read.marks)
    assert [r["time"][11:16] for r in again.rows] == ["23:59", "08:30", "09:00"]  # oldest first
    assert read_traffic(tmp_path, again.marks).rows == []
    assert again.marks["2026-11-26.jsonl"] == {"offset": day2.stat().st_size, "line": 5}


def test_servers_with_files_of_their_own_are_each_read_once(tmp_path):
    a, b = tmp_path / "2026-11-26.host1-101.jsonl", tmp_path / "2026-11-26.host2-202.jsonl"
    _append(a, _line("2026-11-26T10:00:00+00:00", id="a1"))
    read = read_traffic(tmp_path)
    _append(b, _line("2026-11-26T09:00:00+00:00", id="b1"))  # the slower server's older request, in its own file
    _append(a, _line("2026-11-26T11:00:00+00:00", id="a2"))
    again = read_traffic(tmp_path, read.marks)
    assert [r["id"] for r in read.rows] == ["a1"] and [r["id"] for r in again.rows] == ["b1", "a2"]
    assert read_traffic(tmp_path, again.marks).rows == []
    assert prune_traffic(tmp_path, 1, datetime(2026, 11, 28, tzinfo=UTC)) == [a.name, b.name]


def test_a_malformed_traffic_line_is_reported_and_skipped_not_fatal(tmp_path):
    day = tmp_path / "2026-11-26.jsonl"
    good = [_line(f"2026-11-26T0{i}:00:00+00:00") for i in range(4)]
    _append(day, good[0] + "garbage\n" + good[1] + json.dumps({"time": "t", "question": "q"}) + "\n" + good[2])
    _append(day, json.dumps(_traffic("2026-11-26T05:00:00+00:00", confidence="high")) + "\n\xff\n" + good[3])
    read = read_traffic(tmp_path)
    assert len(read.rows) == 4
    assert [p.split(": ", 1)[0] for p in read.problems] == [f"{day}, line {n}" for n in (2, 4, 6, 7)]
    assert "malformed JSON" in read.problems[0] and "lacks expert" in read.problems[1]
    assert all("\n" not in p for p in read.problems)
    assert read.marks[day.name]["offset"] == day.stat().st_size  # past the bad lines: never read again


def test_one_run_reads_a_bounded_share_of_a_file_and_the_next_goes_on(tmp_path, monkeypatch):
    from monitoring import monitor

    monkeypatch.setattr(monitor, "MAX_READ_BYTES", 1000)
    day = tmp_path / "2026-11-26.jsonl"
    lines = [_line(f"2026-11-26T0{i}:00:00+00:00") for i in range(6)]
    _append(day, lines[0] + lines[1] + '{"question": "' + "x" * 3000 + '"}\n' + "".join(lines[2:]))
    runs, marks, seen, problems = 0, {}, 0, []
    while runs < 20 and (marks.get(day.name) or {}).get("offset", 0) < day.stat().st_size:
        read = read_traffic(tmp_path, marks)
        before = (marks.get(day.name) or {}).get("offset", 0)
        assert read.marks[day.name]["offset"] - before <= (1000 if read.rows else 4000)  # a long line: skipped
        marks, seen, problems, runs = read.marks, seen + len(read.rows), problems + read.problems, runs + 1
    assert seen == 6 and runs > 2  # every good line, over several bounded reads
    assert problems == [f"{day}, line 3: longer than 1000 bytes, skipped"]


def test_an_older_state_s_time_watermark_is_honoured_once(tmp_path):
    _append(tmp_path / "2026-11-26.jsonl", "".join(_line(f"2026-11-26T0{i}:00:00+00:00") for i in range(3)))
    read = read_traffic(tmp_path, None, since="2026-11-26T00:00:00+00:00")
    assert [r["time"][11:13] for r in read.rows] == ["01", "02"]


def test_traffic_older_than_the_retention_is_deleted_by_day(tmp_path):
    for day in ("2026-11-01", "2026-11-20", "2026-11-26"):
        _append(tmp_path / f"{day}.jsonl", _line(f"{day}T10:00:00+00:00"))
        (tmp_path / "images" / day).mkdir(parents=True)
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert prune_traffic(tmp_path, 0, now) == []  # 0: keep every day
    assert prune_traffic(tmp_path, 7, now) == ["2026-11-01.jsonl"]
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["2026-11-20.jsonl", "2026-11-26.jsonl"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["2026-11-20", "2026-11-26"]


def test_state_is_replaced_atomically_through_a_unique_temporary_file(tmp_path):
    state = tmp_path / ".monitor-state.json"
    (tmp_path / ".monitor-state.tmp").write_text("another writer's")  # the fixed name the old writer used
    write_state(state, {"a": 1})
    write_state(state, {"a": 2})
    assert read_state(state) == {"a": 2}
    assert (tmp_path / ".monitor-state.tmp").read_text() == "another writer's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".monitor-state.json", ".monitor-state.tmp"]


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
