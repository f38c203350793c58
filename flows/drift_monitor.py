"""Drift-triggered continual learning, the Prefect side.

`drift_monitor` (a scheduled deployment, `schedule.monitor_minutes`) reads what production sent since its last run
(the serving endpoint's traffic log) and every new batch dropped under data/incoming/<batch>/requests.jsonl, has
`monitoring/` judge each against the production version, publishes the report as an artifact, and emits
`mllmcl.drift.detected` with the decision (at most one per decision per `drift.cooldown_minutes`).

`drift_stage` (the `on-drift` deployment that event triggers; one run at a time, later ones queued) acts on the decision: a labelled batch of a new kind becomes a task (`task add`) and a
continual stage runs; known-task drift with labels re-runs the stage against the current data (the gate re-checks
every task); an alert or a labelling request trains nothing.

    python -m flows.drift_monitor --root .            # judge what is new once, emit on drift
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

STATE_FILE = ".monitor-state.json"  # under data/incoming/: traffic watermark, batches judged, cooldowns
LABELLED_BATCH = "requests.jsonl"


def _state(paths: ProjectPaths) -> dict:
    from monitoring.monitor import read_state

    return read_state(paths.incoming / STATE_FILE)


def _save_state(paths: ProjectPaths, state: dict) -> None:
    from monitoring.monitor import write_state

    write_state(paths.incoming / STATE_FILE, state)


def new_batches(paths: ProjectPaths, judged: dict[str, str]) -> list[Path]:
    """data/incoming/<batch>/requests.jsonl not judged yet in its current form, by name: a batch whose file changed
    since (annotators filled in `to_label.jsonl` and dropped it back as requests.jsonl) is judged again."""
    if not paths.incoming.is_dir():
        return []
    return [
        p / LABELLED_BATCH
        for p in sorted(paths.incoming.iterdir())
        if p.is_dir() and (p / LABELLED_BATCH).is_file() and judged.get(p.name) != _batch_signature(p / LABELLED_BATCH)
    ]


def task_name_for(batch_dir: Path) -> tuple[str, str | None]:
    """The name (and router description) a labelled batch is learned under: its meta.json {task, description} when
    the team named it, else the batch folder's name made a legal task name."""
    meta = Path(batch_dir) / "meta.json"
    if meta.is_file():
        data = json.loads(meta.read_text())
        if data.get("task"):
            return str(data["task"]), data.get("description")
    name = re.sub(r"[^a-z0-9_]+", "_", Path(batch_dir).name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"task_{name}"
    return name[:32], None


def cooldown_file(paths: ProjectPaths) -> Path:
    """When each decision's last event was sent: shared by this flow and `mllmcl drift --emit`."""
    return paths.incoming / ".cooldowns.json"


def batch_folder(paths: ProjectPaths, batch: str) -> Path:
    """The folder an event's `batch` names: an absolute path as given (`mllmcl drift --emit` on any file), else a
    folder under data/incoming/."""
    given = Path(batch)
    return given if given.is_absolute() else paths.incoming / batch


def _batch_signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


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
    from monitoring.monitor import Monitor, monitor_batch, read_traffic

    logger = get_run_logger()
    paths = ProjectPaths(Path(root).resolve())
    params = load_params(Path(params_file) if Path(params_file).is_absolute() else paths.root / params_file)
    state = _state(paths)
    monitor = Monitor(paths.root, params)
    judged: dict[str, dict] = {}
    work: list[tuple[str, object]] = []
    rows, watermark = read_traffic(paths.traffic(params.serve.traffic_dir), state.get("traffic_since"))
    if len(rows) >= params.drift.min_batch:
        work.append((f"traffic-{datetime.now(UTC):%Y%m%dT%H%M%S}", rows))
    elif rows:
        logger.info(
            "%d new traffic requests: fewer than drift.min_batch=%d, waiting", len(rows), params.drift.min_batch
        )
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
            state["traffic_since"] = watermark
        else:
            batches[name] = _batch_signature(source)
        _save_state(paths, state)  # judged is judged, whatever happens to the event
        if not (emit and decision.triggers):
            continue
        folder = None if isinstance(source, list) else Path(source).parent
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
        if event is None:
            logger.info(
                "%s: same decision within drift.cooldown_minutes=%d: no new event", name, params.drift.cooldown_minutes
            )
            continue
        judged[name]["event"] = str(event.id)
    return judged


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
    its own task to the cooldown; only an event really sent starts the cooldown."""
    from flows.events import emit_drift_detected
    from monitoring.monitor import cooldown_allows, record_event

    if decision.action == "new_task" and folder is not None:
        decision = dataclasses.replace(decision, task=task_name_for(folder)[0])
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
    labelling requests train nothing. Returns the continual stage's summary (or what was decided instead)."""
    from flows.continual_stage import continual_stage

    logger = get_run_logger()
    paths = ProjectPaths(Path(root).resolve())
    params_path = Path(params_file) if Path(params_file).is_absolute() else paths.root / params_file
    if action in ("alert", "label_request", "none", "wait"):
        logger.info("drift %s for %s: nothing to train (%s)", action, batch, reason)
        return {"action": action, "batch": batch, "trained": False}
    if action == "new_task":
        from flows.dvc_cli import add as dvc_add
        from mllmcl.config import load_params
        from mllmcl.data.tasks import add_labelled_batch

        folder = batch_folder(paths, batch)
        name, description = task_name_for(folder)
        name = task or name
        if name in load_params(params_path).tasks:
            logger.info("task %s is already learned (an earlier event of this burst added it)", name)
        else:
            add_labelled_batch(
                name,
                folder,
                root=paths.root,
                params_path=params_path,
                description=description,
                track=lambda folder: dvc_add(folder, paths.root),
            )
            logger.info("learning batch %s as new task %s", batch, name)
    return continual_stage(
        root=str(paths.root),
        params_file=str(params_path),
        require_approval=require_approval,
        reason=f"drift {action or 'stage'}: {batch} {reason}".strip(),
    )


def main(args) -> int:
    """Run the monitor once; exit 1 when something drifted enough to act on, 0 when not."""
    judged = drift_monitor(root=str(args.root), project=args.project, emit=not args.no_emit)
    for name, decision in judged.items():
        print(f"{name}: {decision['kind']} -> {decision['action']} ({decision['reason']})")
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
