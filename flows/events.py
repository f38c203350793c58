"""Emitting the event that starts a drift-triggered continual stage (`flows.serve` deploys the listener).

python -m flows.events --project mllmcl --batch 2026-11-23 --drift-share 0.42   # data/incoming/2026-11-23/
"""

from __future__ import annotations

import argparse

from flows.serve import DRIFT_EVENT
from mllmcl.errors import UserError


class NoPrefectServer(UserError):
    """An event with nowhere to go: Prefect drops it silently, we refuse to pretend it was sent."""


def require_api() -> None:
    """Refuse (NoPrefectServer) when no Prefect API is configured: checked before anything else of an emit."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise NoPrefectServer("no Prefect API configured (set PREFECT_API_URL to a running server): nothing emitted")


def emit_drift_detected(
    project: str,
    batch: str,
    drift_share: float,
    report: str | None = None,
    *,
    action: str = "stage",
    task: str | None = None,
    kind: str = "",
    reason: str = "",
):
    """Emit `mllmcl.drift.detected` to the Prefect server in PREFECT_API_URL and wait until it is delivered; the
    payload carries the monitor's decision (`action`: new_task, refresh, alert, label_request, or `stage` for a plain
    continual stage) for the drift-triggered deployment. Without a configured server Prefect would drop the event
    silently: that is an error here."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    require_api()
    event = emit_event(
        event=DRIFT_EVENT,
        # the action is a resource label, so that a trigger can start training only for decisions that call for it
        resource={
            "prefect.resource.id": f"mllmcl.project.{project}",
            "prefect.resource.name": project,
            "mllmcl.action": action,
        },
        payload={
            "batch": batch,
            "drift_share": float(drift_share),
            "report": report or "",
            "action": action,
            "task": task or "",
            "kind": kind,
            "reason": reason,
        },
    )
    EventsWorker.drain_all(timeout=30)  # a short-lived process must deliver before it exits
    if event is None:
        raise NoPrefectServer("Prefect did not accept the event (is PREFECT_API_URL a running server?)")
    return event


def main(args) -> int:
    """Emit the drift event the options describe and print its id; no reachable Prefect server is a user error (exit
    2); so is a batch that is not a folder name under data/incoming/."""
    from flows.drift_monitor import batch_folder
    from mllmcl.paths import ProjectPaths

    batch_folder(ProjectPaths(args.root.resolve()), args.batch)
    event = emit_drift_detected(
        args.project, args.batch, args.drift_share, args.report, action=args.action, task=args.task
    )
    print(
        f"emitted {DRIFT_EVENT} {event.id} for {args.project}: batch {args.batch}, drift share {args.drift_share:.2f}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    """Options of `python -m flows.events`: what drifted, how much, and the report a reviewer should read."""
    from mllmcl.entry import add_common_options

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(p)
    p.add_argument("--project", default="mllmcl", help="resource name the trigger matches (mllmcl.project.NAME)")
    p.add_argument(
        "--batch",
        required=True,
        help="what drifted: a folder under data/incoming/ by its relative name, passed to the flow run",
    )
    p.add_argument("--drift-share", type=float, required=True, help="share of drifted columns, 0..1")
    p.add_argument("--report", default=None, help="path of the drift report, for the reviewer")
    p.add_argument(
        "--action",
        default="stage",
        choices=["stage", "new_task", "refresh", "alert", "label_request"],
        help="what the drift-triggered run does (default: a plain continual stage)",
    )
    p.add_argument("--task", default=None, help="the task the decision concerns (new_task: its name)")
    return p


if __name__ == "__main__":
    from mllmcl.entry import main_of

    main_of(main, parser())
