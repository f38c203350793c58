"""The drift monitor: one call judges one batch end to end. It takes either a JSONL batch of requests (run through the
production model here, to see it as the model does) or traffic-log lines (already seen by the server), compares them
with the production version's reference profile, applies the policy, writes the reports (and, for novel unlabelled
data, a labelling request), and returns the verdict and the decision. What happens next (an alert, a refresh, a new
task) is the caller's: the Prefect flow or `mllmcl drift --emit`."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import DataError, UserError
from mllmcl.paths import ProjectPaths
from mllmcl.release.registry import VERSION_ID
from monitoring.features import read_batch, to_frame, traffic_row
from monitoring.policy import Decision, decide
from monitoring.reference import build_reference, cached_reference, workspace_version
from monitoring.report import DriftResult, judge, unknown, write_report

PRODUCTION = "production"
LABEL_FILE = "to_label.jsonl"


class NoModel(UserError):
    """Nothing to monitor against: no production version in the registry and no trained model in models/."""


def production_version(root: Path, params: Params) -> str:
    """The version id the registry's `production` alias names now, or the workspace model's id (models/) when no
    version was promoted yet."""
    from mllmcl.release.registry import Registry

    paths = ProjectPaths(Path(root))
    doc = Registry.from_params(params, root=paths.root).alias(PRODUCTION)
    if doc:
        return doc["version"]
    if not (paths.router / "pool.json").is_file():
        raise NoModel(
            f"no '{PRODUCTION}' version in the registry ({params.registry.uri}) and no trained model in {paths.router}: "
            "train and promote one first"
        )
    return workspace_version(params, paths)


def load_model(root: Path, params: Params, version: str):
    """The RoutedModel of `version` (a registry version id, else the workspace model in models/)."""
    from mllmcl.serving.models import WORKSPACE, load_served

    if not VERSION_ID.fullmatch(version):
        return load_served(params, Path(root), WORKSPACE).model
    return load_served(params, Path(root), version, version=version).model


class Monitor:
    """The production version's id, its model (loaded only when a batch or a profile needs it) and its reference
    profile (cached per version under reports/drift/reference/)."""

    def __init__(self, root: Path, params: Params, *, model=None, version: str | None = None):
        self.root, self.params = Path(root), params
        self.paths = ProjectPaths(self.root)
        self.version = version or production_version(self.root, params)
        self._model = model

    @property
    def model(self):
        """The production RoutedModel, loaded on first use."""
        if self._model is None:
            self._model = load_model(self.root, self.params, self.version)
        return self._model

    def tasks(self) -> list[str]:
        """The tasks the production version learned (its experts), in learned order."""
        return list(self.model.experts)

    def reference(self):
        """The reference profile of the production version (computed with the model once, then read from cache): the
        learned tasks, plus the router's text-only base suite as task "base" (what the base is meant to answer)."""
        cfg = self.params.drift
        suite = self.params.router.base_suite
        base_suite = suite if (self.paths.task_data(suite) / "train.jsonl").is_file() else None
        return cached_reference(
            self.paths.drift_reports / "reference",
            self.version,
            lambda: build_reference(
                self.model, self.tasks(), self.paths.tasks_dir, cfg.reference_rows, cfg.seed, base_suite=base_suite
            ),
        )


def batch_name(path: Path) -> str:
    """A batch's name: its folder for data/incoming/<batch>/requests.jsonl, else the file's stem."""
    path = Path(path)
    return path.parent.name if path.stem == "requests" else path.stem


def safe_name(name: str) -> str:
    """A batch name usable as a file name (an ISO time's colons become dashes)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return cleaned or "batch"


def monitor_batch(
    root: Path,
    params: Params,
    source: Path | list[dict],
    name: str | None = None,
    *,
    monitor: Monitor | None = None,
    labelled: bool | None = None,
    out_dir: Path | None = None,
) -> tuple[DriftResult, Decision]:
    """Judge one batch. `source`: a JSONL file of requests ({id?, image?, question, answer?}, images relative to it;
    run through the production model) or a list of traffic-log lines (`read_traffic(...).rows`). Writes
    `<out_dir or reports/drift>/<name>.html` (Evidently) and `.json` (verdict, decision, Evidently's values) and, for
    an unlabelled novel batch, `data/incoming/<name>/to_label.jsonl`. A bad request is a DataError naming file and
    line; no model and no production version is a NoModel error."""
    monitor = monitor or Monitor(root, params)
    paths, cfg = monitor.paths, params.drift
    if isinstance(source, (str, Path)):
        source = Path(source)
        name = safe_name(name or batch_name(source))
        objs, requests = read_batch(source)
        from monitoring.features import is_labelled, model_view

        current = to_frame(model_view(monitor.model, requests))
        labelled = is_labelled(objs) if labelled is None else labelled
        base_dir = source.parent
    else:
        if not source:
            raise DataError(f"{name or 'traffic'}: no requests")
        name = safe_name(name or "traffic")
        objs = list(source)
        current = to_frame([traffic_row(line, f"{name}: request {i + 1}") for i, line in enumerate(objs)])
        labelled = bool(labelled)
        base_dir = paths.traffic(params.serve.traffic_dir)
    result, reference = judge(monitor.reference(), current, cfg, seed=cfg.seed)
    decision = decide(result, labelled=labelled, cfg=cfg)
    document = {
        "batch": str(source) if isinstance(source, Path) else name,
        "name": name,
        "version": monitor.version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": result.summary(),
        "decision": decision.to_json(),
        **result.to_json(),
    }
    if decision.action == "label_request":
        document["to_label"] = str(write_label_request(paths.incoming / name, objs, current, base_dir))
    out_dir = Path(out_dir) if out_dir else paths.drift_reports
    if decision.action == "wait":  # too few to judge: the numbers only, no Evidently report
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    else:
        write_report(reference, current, out_dir, name, document, cfg)
    return result, decision


def write_label_request(folder: Path, objs: list[dict], current, base_dir: Path) -> Path:
    """`folder/to_label.jsonl`: every request of a novel batch, for annotators ({id, image, question, answer: null}
    and the router's hints: where it sent it, how sure, whether the open set flagged it; the router may have been
    fooled, so the flag does not select). Image paths are rewritten relative to `folder` (null when not kept)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for obj, (_, row), flag in zip(objs, current.iterrows(), unknown(current)):
        image = obj.get("image")
        if image:
            image = os.path.relpath((Path(base_dir) / image).resolve(), folder.resolve())
        lines.append(
            {
                "id": obj.get("id") or obj.get("request_id"),
                "image": image,
                "question": obj["question"],
                "answer": None,
                "routed_to": row["expert"],
                "confidence": row["confidence"],
                "flagged_unknown": bool(flag),
                "novelty": None if row["novelty"] != row["novelty"] else row["novelty"],
            }
        )
    path = folder / LABEL_FILE
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@dataclass
class TrafficRead:
    """What `read_traffic` consumed: the good lines (oldest first), the new per-file marks, the lines it skipped."""

    rows: list[dict]
    marks: dict[str, dict]  # file name -> {"offset": bytes consumed, "line": lines consumed}
    problems: list[str] = field(default_factory=list)  # one line each: file, line number, what is wrong


MAX_READ_BYTES = 64 << 20  # one file's new bytes read per run at most: the monitor's memory stays bounded
TRAFFIC_FILES = "????-??-??*.jsonl"  # <UTC day>.jsonl, or <UTC day>.<writer>.jsonl for a server with a file of its own


def read_traffic(folder: Path, marks: dict | None = None, *, since: str | None = None) -> TrafficRead:
    """The traffic-log lines (folder/<UTC date>[.<writer>].jsonl) appended since the per-file byte offsets `marks` (a previous
    read's `marks`; none: every file from its start). By offset, not by time: several servers append to their own or
    the same file in any time order, and each whole line is read exactly once. A last line without its newline is
    being written: left for next time. A malformed line is reported in `problems` (file and line number) and skipped,
    never a reason to stop. `since` (the ISO-time watermark of older state files) also drops lines at or before it."""
    folder = Path(folder)
    marks = marks or {}
    rows, new_marks, problems = [], {}, []
    for path in sorted(folder.glob(TRAFFIC_FILES)):
        got, new_marks[path.name], bad = _read_appended(path, marks.get(path.name) or {})
        rows += [r for r in got if since is None or r["time"] > since]
        problems += bad
    rows.sort(key=lambda r: r["time"])
    return TrafficRead(rows, new_marks, problems)


def _read_appended(path: Path, mark: dict) -> tuple[list[dict], dict, list[str]]:
    """The whole lines of `path` after byte `mark["offset"]`, its new mark, and the problems of the lines skipped."""
    offset, line_no, problems = int(mark.get("offset", 0)), int(mark.get("line", 0)), []
    size = path.stat().st_size
    if size < offset:  # replaced or truncated by hand: what it holds now was never read
        problems.append(f"{path}: shorter than the {offset} bytes already read: read again from its start")
        offset, line_no = 0, 0
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(min(size - offset, MAX_READ_BYTES))  # bounded: the rest is read by the next runs
        end = data.rfind(b"\n") + 1  # after the last complete line; a partial one waits for its newline
        if not end and len(data) == MAX_READ_BYTES:  # one line longer than a whole read: never a real request
            skipped = _skip_line(f)
            problems.append(f"{path}, line {line_no + 1}: longer than {MAX_READ_BYTES} bytes, skipped")
            return [], {"offset": offset + len(data) + skipped, "line": line_no + 1}, problems
    rows = []
    for raw in data[:end].split(b"\n")[:-1]:
        line_no += 1
        if not raw.strip():
            continue
        try:
            rows.append(_traffic_line(raw))
        except DataError as e:
            problems.append(f"{path}, line {line_no}: {e}")
    return rows, {"offset": offset + end, "line": line_no}, problems


def _skip_line(f) -> int:
    """Bytes from `f`'s position up to and including the next newline (all that is left when there is none)."""
    skipped = 0
    while block := f.read(1 << 20):
        cut = block.find(b"\n")
        if cut >= 0:
            return skipped + cut + 1
        skipped += len(block)
    return skipped


def _traffic_line(raw: bytes) -> dict:
    """One traffic-log line, checked as the monitor will use it (its time and its features); a DataError if not."""
    try:
        line = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg})") from None
    if not isinstance(line, dict) or not isinstance(line.get("time"), str):
        raise DataError("a traffic line needs a 'time'")
    try:
        traffic_row(line)
    except DataError as e:
        raise DataError(str(e).removeprefix("traffic: ")) from None
    except (TypeError, ValueError) as e:
        raise DataError(f"a traffic line's fields are malformed ({e})") from None
    return line


def prune_traffic(folder: Path, days: int, now: datetime | None = None) -> list[str]:
    """Delete the traffic-log days (<day>[.<writer>].jsonl and images/<day>/) older than `days` (0: keep every day);
    returns the file names removed. The writer rotates by UTC day, so retention removes whole files."""
    if days <= 0:
        return []
    folder = Path(folder)
    oldest = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y-%m-%d")
    removed = []
    for path in sorted(folder.glob(TRAFFIC_FILES)):
        day = path.name[:10]
        if day < oldest:
            path.unlink(missing_ok=True)
            shutil.rmtree(folder / "images" / day, ignore_errors=True)
            removed.append(path.name)
    return removed


def _event_key(decision: Decision) -> str:
    return f"{decision.kind}:{decision.action}:{decision.task or ''}"


def cooldown_allows(
    state_file: Path, decision: Decision, minutes: int, now: datetime | None = None, *, record: bool = True
) -> bool:
    """True when no event for the same decision (kind, action, task) was recorded in the last `minutes`, and then
    (`record`) records this one: one continual stage per burst of drift, not one per batch. With `record=False`, call
    `record_event` once the event was really sent."""
    now = now or datetime.now(UTC)
    last = read_state(state_file).get(_event_key(decision))
    if last and now - datetime.fromisoformat(last) < timedelta(minutes=minutes):
        return False
    if record:
        record_event(state_file, decision, now)
    return True


def record_event(state_file: Path, decision: Decision, now: datetime | None = None) -> None:
    """Remember that an event for `decision` was sent now (the cooldown's clock)."""
    state = read_state(state_file)
    state[_event_key(decision)] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    write_state(state_file, state)


def read_state(path: Path) -> dict:
    """A small JSON state file (cooldowns, the monitor's watermark); {} when it does not exist yet."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def write_state(path: Path, state: dict) -> None:
    """Replace a state file atomically: a crash leaves the old state, never half of the new one; the temporary file
    has a unique name, so two writers never write into each other's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
