"""Emitting the event that starts a drift-triggered continual stage (`flows.serve` deploys the listener).

    python -m flows.events --project mllmcl --batch incoming/2026-11-23 --drift-share 0.42
"""

from __future__ import annotations

import argparse

from flows.serve import DRIFT_EVENT


def emit_drift_detected(project: str, batch: str, drift_share: float, report: str | None = None):
    """Emit `mllmcl.drift.detected` to the Prefect server in PREFECT_API_URL; returns the event (or None when
    no server is configured, as Prefect does)."""
    from prefect.events import emit_event

    return emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": f"mllmcl.project.{project}", "prefect.resource.name": project},
        payload={"batch": batch, "drift_share": float(drift_share), "report": report or ""},
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", default="mllmcl", help="resource name the trigger matches (mllmcl.project.NAME)")
    p.add_argument("--batch", required=True, help="what drifted (a folder or batch id), passed to the flow run")
    p.add_argument("--drift-share", type=float, required=True, help="share of drifted columns, 0..1")
    p.add_argument("--report", default=None, help="path of the drift report, for the reviewer")
    a = p.parse_args(argv)
    from prefect.events.worker import EventsWorker

    event = emit_drift_detected(a.project, a.batch, a.drift_share, a.report)
    EventsWorker.drain_all(timeout=30)  # a short-lived process must deliver before it exits
    if event is None:
        print("no Prefect API configured (set PREFECT_API_URL): nothing emitted")
        return 1
    print(f"emitted {DRIFT_EVENT} {event.id} for {a.project}: batch {a.batch}, drift share {a.drift_share:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
