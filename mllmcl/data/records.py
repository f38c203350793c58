"""Task records: the one schema every stage reads and writes (data/tasks/<task>/{train,test}.jsonl).

A record is one JSON object a line:
    {"id": str, "image": str | null, "question": str, "answer": str,
     "answer_type": str, "choices": [str] | null, "question_type": str, ...extra fields}
`image` is a path relative to the task folder (null = text-only question). `choices` is the closed
answer set of the question when there is one. Reading is strict so that a bad file is reported with
its path, line number and the rule it broke instead of surfacing later as a training crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmcl.errors import DataError

REQUIRED_FIELDS = ("id", "image", "question", "answer", "answer_type", "choices", "question_type")
ANSWER_TYPES = ("yesno", "number", "word", "choice")
SPLITS = ("train", "test")


class RecordError(DataError):
    """A task file that cannot be read as records; the message names file, line and rule."""

    def __init__(self, path: Path | str, line: int | None, rule: str, detail: str):
        self.path, self.line, self.rule, self.detail = str(path), line, rule, detail
        where = f"{path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: [{rule}] {detail}")


@dataclass(frozen=True)
class RawLine:
    """A parsed JSON line with where it came from, before schema checks."""

    line: int
    obj: Any


def read_json_lines(path: Path | str) -> list[RawLine]:
    """Parse a JSONL file, rejecting BOMs, non-UTF-8 bytes and malformed lines with their line number."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        raise RecordError(path, 1, "utf8_no_bom", "file starts with a UTF-8 byte-order mark; save it as plain UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RecordError(path, line, "utf8", f"byte {e.start} is not valid UTF-8 ({e.reason})") from None
    out: list[RawLine] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append(RawLine(i, json.loads(raw)))
        except json.JSONDecodeError as e:
            raise RecordError(path, i, "json", f"malformed JSON: {e.msg} at column {e.colno}") from None
    return out


def schema_problems(obj: Any) -> list[str]:
    """Every schema rule a record breaks (empty list when it is well formed)."""
    if not isinstance(obj, dict):
        return [f"record must be a JSON object, got {type(obj).__name__}"]
    problems = [f"missing field '{k}'" for k in REQUIRED_FIELDS if k not in obj]
    for key in ("id", "question", "answer", "answer_type", "question_type"):
        if key in obj and not isinstance(obj[key], str):
            problems.append(f"'{key}' must be a string, got {type(obj[key]).__name__}")
        elif key in obj and not obj[key].strip():
            problems.append(f"'{key}' is empty")
    if "image" in obj and obj["image"] is not None and not isinstance(obj["image"], str):
        problems.append("'image' must be a string path or null")
    if isinstance(obj.get("answer_type"), str) and obj["answer_type"] not in ANSWER_TYPES:
        problems.append(f"'answer_type' must be one of {list(ANSWER_TYPES)}, got {obj['answer_type']!r}")
    choices = obj.get("choices")
    if choices is not None and not (isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices)):
        problems.append("'choices' must be null or a non-empty list of strings")
    return problems


def read_records(path: Path | str) -> list[dict]:
    """Read a task file, failing on the first record that breaks the schema."""
    records = []
    for raw in read_json_lines(path):
        problems = schema_problems(raw.obj)
        if problems:
            raise RecordError(path, raw.line, "schema", "; ".join(problems))
        records.append(raw.obj)
    return records


def write_records(path: Path | str, records: Iterable[dict]) -> int:
    """Write records as canonical JSONL (sorted keys, UTF-8) so equal data gives equal bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def iter_split_files(task_folder: Path | str) -> Iterator[tuple[str, Path]]:
    """(split, path) of a task folder's train.jsonl and test.jsonl, whether or not they exist."""
    for split in SPLITS:
        yield split, Path(task_folder) / f"{split}.jsonl"
