"""Drift-triggered continual learning, the Prefect side.

`drift_monitor` (a scheduled deployment, `schedule.monitor_minutes`) reads what production sent since its last run
(the serving endpoint's traffic log) and every new batch dropped under data/incoming/<batch>/requests.jsonl, has
`monitoring/` judge each against the production version, publishes the report as an artifact, and emits
`mllmcl.drift.detected` with the decision (at most one per decision per `drift.cooldown_minutes`).

`drift_stage` (the `on-drift` deployment that event triggers; one run at a time, later ones queued) acts on the decision: a labelled batch of a new kind becomes a task (`task add`) and a
continual stage runs; known-task drift with labels re-runs the stage against the current data (the gate re-checks
every task); an alert or a labelling request trains nothing.

    python -m flows.drift_monitor --root .            # judge what is new once, emit on drift

Names are not trusted: an event (or a flow parameter) names a batch folder under data/incoming/ only, and a batch's
task name (meta.json) follows `mllmcl task add`'s rule and must be new; anything else is refused in one line before
anything is written. A malformed traffic line is reported (file, line) and skipped: it never stalls the loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from mllmcl.errors import UserError
from mllmcl.paths import ProjectPaths

STATE_FILE = ".monitor-state.json"  # under data/incoming/: traffic offsets per file, batches judged
LABELLED_BATCH = "requests.jsonl"
META = "meta.json"
LEARNED = "learned.json"  # written into a batch folder once the drift stage added it as a task


class BatchRefused(UserError):
    """A batch the drift loop will not learn as named (outside data/incoming/, an illegal or an already learned task
    name): one line saying what to do; the batch stays where it is, nothing is written."""


def _state(paths: ProjectPaths) -> dict:
    from monitoring.monitor import read_state

    return read_state(paths.incoming / STATE_FILE)


def _save_state(paths: ProjectPaths, state: dict) -> None:
    from monitoring.monitor import write_state

    write_state(paths.incoming / STATE_FILE, state)


def new_batches(paths: ProjectPaths, judged: dict[str, str]) -> list[Path]:
    """data/incoming/<batch>/requests.jsonl not judged yet in its current form, by name: a batch whose file changed
    since (annotators filled in `to_label.jsonl` and dropped it back as requests.jsonl, or its meta.json was fixed)
    is judged again."""
    if not paths.incoming.is_dir():
        return []
    return [
        p / LABELLED_BATCH
        for p in sorted(paths.incoming.iterdir())
        if p.is_dir() and (p / LABELLED_BATCH).is_file() and judged.get(p.name) != _batch_signature(p / LABELLED_BATCH)
    ]


def task_name_for(batch_dir: Path) -> tuple[str, str | None]:
    """The name (and router description) a labelled batch is learned under: its meta.json {task, description} when
    the team named it, else the batch folder's name made a legal task name. Not checked here: see `check_new_task`."""
    meta = Path(batch_dir) / META
    if meta.is_file():
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BatchRefused(f"{meta}: not a JSON object ({e}); fix it and the batch is judged again") from None
        if not isinstance(data, dict):
            raise BatchRefused(f"{meta}: not a JSON object {{task, description}}; fix it and the batch is judged again")
        if data.get("task"):
            description = data.get("description")
            return str(data["task"]), None if description is None else str(description)
    name = re.sub(r"[^a-z0-9_]+", "_", Path(batch_dir).name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"task_{name}"
    return name[:32], None


def check_new_task(name: str, tasks: list[str], folder: Path, *, retry: bool = False) -> None:
    """Refuse (BatchRefused, one line) a task name that `mllmcl task add` would refuse, before anything is written;
    an already learned one is refused too, unless `retry` and this very batch was learned as it (a retried stage)."""
    from mllmcl.config.schema import RESERVED_TASKS, TASK_NAME

    where = f"{Path(folder) / META}: task {name!r}"
    if not TASK_NAME.fullmatch(name):
        raise BatchRefused(f"{where}: not a task name (1-32 lowercase letters, digits or '_', starting with a letter)")
    if name in RESERVED_TASKS:
        raise BatchRefused(f"{where}: reserved ({', '.join(sorted(RESERVED_TASKS))}); name another task")
    if name in tasks and not (retry and learned_as(folder) == name):
        raise BatchRefused(
            f"{where}: already learned; refreshing a learned task's expert from a batch is not supported yet: name a "
            "new task in meta.json to learn it as one (the batch is judged again), or leave it as evidence"
        )


def learned_as(folder: Path) -> str | None:
    """The task this batch folder was learned as by an earlier drift stage (its learned.json), else None."""
    marker = Path(folder) / LEARNED
    try:
        return json.loads(marker.read_text()).get("task") if marker.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def cooldown_file(paths: ProjectPaths) -> Path:
    """When each decision's last event was sent: shared by this flow and `mllmcl drift --emit`."""
    return paths.incoming / ".cooldowns.json"


def batch_folder(paths: ProjectPaths, batch: str) -> Path:
    """The folder an event's (or a flow parameter's) `batch` names: a relative name under data/incoming/. An absolute
    path, one that climbs out (`..`) or one that leads out through a link is refused in one line (BatchRefused)."""
    given = Path(batch)
    if not batch or given.is_absolute() or ".." in given.parts:
        raise BatchRefused(
            f"batch {batch!r}: name a folder under {paths.incoming} by its relative name (no absolute path, no '..')"
        )
    folder = paths.incoming / given
    if not folder.resolve().is_relative_to(paths.incoming.resolve()):
        raise BatchRefused(f"batch {batch!r}: {folder} leads outside {paths.incoming}")
    return folder


def event_batch(paths: ProjectPaths, folder: Path, action: str) -> str:
    """What an event names a batch by: its folder relative to data/incoming/. A folder elsewhere (`mllmcl drift --emit`
    on any file) is named by its last part, a label only; the drift stage cannot learn it as a new task, so that is
    refused here, before any event is sent."""
    folder, incoming = Path(folder).resolve(), paths.incoming.resolve()
    if folder.is_relative_to(incoming) and folder != incoming:
        return folder.relative_to(incoming).as_posix()
    if action == "new_task":
        raise BatchRefused(
            f"{folder}: a new task is learned from a batch folder under {paths.incoming} only: move it there "
            f"({paths.incoming}/<name>/{LABELLED_BATCH}) and let the drift monitor judge it"
        )
    return folder.name


def _batch_signature(path: Path) -> str:
    """requests.jsonl's size and time, and meta.json's: a batch whose file or name changed is judged again."""
    meta = Path(path).parent / META
    parts = [path.stat()] + ([meta.stat()] if meta.is_file() else [])
    return "|".join(f"{st.st_size}:{st.st_mtime_ns}" for st in parts)


def _publish(name: str, document: dict) -> None:
    decision = document["decision"]
    lines = [
        f"# Drift: {name}",
        "",
        f"**Decision**: {decision['kind']} -> {decision['action']}"
        + (f" (task `{decision['task']}`)" if decision.get("task") else ""),
        "",
        f"{decision['reason']}",
        "",
        f"Summary: {document.get('summary', '')}",
        f"Report: `{document.get('report', '')}`",
    ]
    if document.get("to_label"):
        lines += ["", f"**Labelling request**: annotate `{document['to_label']}` (fill `answer`), then drop it back."]
    key = re.sub(r"[^a-z0-9-]+", "-", f"drift-{name}".lower()).strip("-")[:60]
    create_markdown_artifact(markdown="\n".join(lines), key=key, description=f"drift {decision['action']}")


@flow(name="drift_monitor", log_prints=True)
def drift_monitor(
    root: str = ".", params_file: str = "params.yaml", project: str = "mllmcl", emit: bool = True
) -> dict:
    """Judge new traffic and new incoming batches against production; emit the drift event for each decision that
    calls for action (respecting the cooldown). Returns {batch name: decision}."""
    from mllmcl.config import load_params
    from monitoring.monitor import Monitor, monitor_batch

    logger = get_run_logger()
    paths = ProjectPaths(Path(root).resolve())
    params = load_params(Path(params_file) if Path(params_file).is_absolute() else paths.root / params_file)
    state = _state(paths)
    monitor = Monitor(paths.root, params)
    judged: dict[str, dict] = {}
    work: list[tuple[str, object]] = []
    traffic = _new_traffic(paths, params, state, logger)
    if traffic is not None:
        work.append((f"traffic-{datetime.now(UTC):%Y%m%dT%H%M%S}", traffic))
    batches = state.setdefault("batches", {})
    for path in new_batches(paths, batches):
        work.append((path.parent.name, path))
    for name, source in work:
        try:
            result, decision = monitor_batch(paths.root, params, source, name, monitor=monitor)
        except UserError as e:  # one bad batch is reported and set aside; it must not block the ones after it
            logger.error("%s: not judged: %s", name, e)
            judged[name] = {"action": "error", "kind": "none", "reason": str(e)}
            if not isinstance(source, list):
                batches[name] = _batch_signature(source)
                _save_state(paths, state)
            continue
        report = paths.drift_reports / f"{name}.json"
        document = json.loads(report.read_text()) if report.is_file() else {"decision": decision.to_json()}
        document["report"] = str(paths.drift_reports / f"{name}.html")
        logger.info("%s: %s", name, decision.line())
        _publish(name, document)
        judged[name] = decision.to_json()
        if isinstance(source, list):
            _consume_traffic(state, traffic)
        else:
            batches[name] = _batch_signature(source)
        _save_state(paths, state)  # judged is judged, whatever happens to the event
        if emit and decision.triggers:
            _emit(paths, params, decision, name, source, result, document, project, judged[name], logger)
    return judged


class _Traffic(list):
    """The traffic rows to judge, with the per-file marks to save once they are judged."""

    marks: dict


def _new_traffic(paths: ProjectPaths, params, state: dict, logger) -> _Traffic | None:
    """The traffic appended since the saved offsets, when there is enough of it to judge (drift.min_batch); malformed
    lines are logged and skipped. Nothing good to judge: the offsets advance past what was read at once; too few: they
    stay, and the same lines (and problems) are read again next time. Then the days older than
    drift.traffic_retention_days are deleted."""
    from monitoring.monitor import prune_traffic, read_traffic

    folder = paths.traffic(params.serve.traffic_dir)
    legacy = None if "traffic" in state else state.get("traffic_since")  # an older state file's time watermark
    read = read_traffic(folder, state.get("traffic"), since=legacy)
    for problem in read.problems:
        logger.warning("skipped: %s", problem)
    rows = _Traffic(read.rows)
    rows.marks = read.marks
    if not rows:
        _consume_traffic(state, rows)
    elif len(rows) < params.drift.min_batch:
        logger.info(
            "%d new traffic requests: fewer than drift.min_batch=%d, waiting", len(rows), params.drift.min_batch
        )
    for name in prune_traffic(folder, params.drift.traffic_retention_days):
        logger.info(
            "%s: older than drift.traffic_retention_days=%d: deleted", name, params.drift.traffic_retention_days
        )
        state.get("traffic", {}).pop(name, None)
        rows.marks.pop(name, None)
    _save_state(paths, state)
    return rows if len(rows) >= params.drift.min_batch else None


def _consume_traffic(state: dict, traffic: _Traffic) -> None:
    """Record the traffic read as consumed: its per-file offsets replace the old ones (and any time watermark)."""
    state["traffic"] = traffic.marks
    state.pop("traffic_since", None)


def _emit(paths, params, decision, name, source, result, document, project, judged: dict, logger) -> None:
    """Send the event of one decision; a batch refused by name is logged and marked in `judged`, not sent."""
    folder = None if isinstance(source, list) else Path(source).parent
    try:
        event = emit_decision(
            paths,
            params,
            decision,
            project=project,
            batch=name,
            folder=folder,
            drift_share=result.drift_share,
            report=document["report"],
        )
    except BatchRefused as e:
        logger.error("%s: refused, no event: %s", name, e)
        judged["refused"] = str(e)
        return
    if event is None:
        logger.info(
            "%s: same decision within drift.cooldown_minutes=%d: no new event", name, params.drift.cooldown_minutes
        )
        return
    judged["event"] = str(event.id)


def emit_decision(
    paths: ProjectPaths,
    params,
    decision,
    *,
    project: str,
    batch: str,
    folder: Path | None,
    drift_share: float,
    report: str,
):
    """Emit `mllmcl.drift.detected` for a decision unless the same one was sent within drift.cooldown_minutes
    (then None). A new task is named by its batch `folder` (meta.json, else the folder), so that each new batch is
    its own task to the cooldown; only an event really sent starts the cooldown. The payload names the batch by its
    folder under data/incoming/; a batch the drift stage would refuse (elsewhere, an illegal or learned task name)
    is refused here, before anything is sent (BatchRefused)."""
    from flows.events import emit_drift_detected, require_api
    from monitoring.monitor import cooldown_allows, record_event

    require_api()
    if folder is not None:
        batch = event_batch(paths, folder, decision.action)
    if decision.action == "new_task" and folder is not None:
        decision = dataclasses.replace(decision, task=task_name_for(folder)[0])
        check_new_task(decision.task, params.tasks, Path(folder))
    cooldowns = cooldown_file(paths)
    if not cooldown_allows(cooldowns, decision, params.drift.cooldown_minutes, record=False):
        return None
    event = emit_drift_detected(
        project,
        batch,
        drift_share,
        report,
        action=decision.action,
        task=decision.task,
        kind=decision.kind,
        reason=decision.reason,
    )
    record_event(cooldowns, decision)
    return event


@flow(name="drift_stage", log_prints=True)
def drift_stage(
    root: str = ".",
    params_file: str = "params.yaml",
    action: str = "",
    batch: str = "",
    task: str = "",
    reason: str = "",
    require_approval: bool | None = None,
):
    """Act on one drift decision: learn a labelled new batch as a task, then run the continual stage; alerts and
    labelling requests train nothing. Returns the continual stage's summary (or what was decided instead). A batch
    refused by name (or a bad batch) ends the run Failed with the one-line reason, nothing written."""
    from prefect.states import Failed

    from flows.continual_stage import continual_stage

    logger = get_run_logger()
    paths = ProjectPaths(Path(root).resolve())
    params_path = Path(params_file) if Path(params_file).is_absolute() else paths.root / params_file
    try:
        folder = batch_folder(paths, batch) if batch or action == "new_task" else None
        if action in ("alert", "label_request", "none", "wait"):
            logger.info("drift %s for %s: nothing to train (%s)", action, batch, reason)
            return {"action": action, "batch": batch, "trained": False}
        if action == "new_task":
            _learn_batch(paths, params_path, folder, task, logger)
    except UserError as e:  # a refused name, a bad batch: one line, the run Failed, no traceback
        logger.error("drift %s for %s refused: %s", action, batch, e)
        return Failed(message=str(e))
    return continual_stage(
        root=str(paths.root),
        params_file=str(params_path),
        require_approval=require_approval,
        reason=f"drift {action or 'stage'}: {batch} {reason}".strip(),
    )


def _learn_batch(paths: ProjectPaths, params_path: Path, folder: Path, task: str, logger) -> None:
    """Add a labelled batch as a new task (`task add`'s checks first, nothing written on refusal) and mark the
    folder as learned, so that a retried run goes on to the stage instead of refusing its own task."""
    from flows.dvc_cli import add as dvc_add
    from mllmcl.data.tasks import add_labelled_batch

    if not (folder / LABELLED_BATCH).is_file():
        raise BatchRefused(f"{folder / LABELLED_BATCH}: not found (a labelled batch is a folder with it and images)")
    from mllmcl.config import load_params

    name, description = task_name_for(folder)
    name = task or name
    tasks = load_params(params_path).tasks
    check_new_task(name, tasks, folder, retry=True)
    if name in tasks:  # learned from this very folder by an earlier try of this run
        logger.info("batch %s was learned as task %s by an earlier run: running the stage", folder.name, name)
        return
    add_labelled_batch(
        name,
        folder,
        root=paths.root,
        params_path=params_path,
        description=description,
        track=lambda folder: dvc_add(folder, paths.root),
    )
    (folder / LEARNED).write_text(json.dumps({"task": name}) + "\n")
    logger.info("learning batch %s as new task %s", folder.name, name)


def main(args) -> int:
    """Run the monitor once; exit 1 when something drifted enough to act on, 0 when not."""
    judged = drift_monitor(root=str(args.root), project=args.project, emit=not args.no_emit)
    for name, decision in judged.items():
        refused = f"; refused: {decision['refused']}" if decision.get("refused") else ""
        print(f"{name}: {decision['kind']} -> {decision['action']} ({decision['reason']}){refused}")
    if not judged:
        print("nothing new to judge")
    return 1 if any(d["action"] not in ("none", "wait", "error") for d in judged.values()) else 0


if __name__ == "__main__":
    from mllmcl.entry import add_common_options, main_of

    p = add_common_options(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    p.add_argument("--project", default="mllmcl", help="resource name of the emitted event (mllmcl.project.NAME)")
    p.add_argument("--no-emit", action="store_true", help="judge and report only; emit no event")
    main_of(main, p)
