"""Emitting the event that starts a drift-triggered continual stage."""

from __future__ import annotations

from flows.serve import DRIFT_EVENT


def emit_drift_detected(project: str, batch: str, drift_share: float, report: str | None = None):
    from prefect.events import emit_event

    return emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": f"mllmcl.project.{project}", "prefect.resource.name": project},
        payload={"batch": batch, "drift_share": float(drift_share), "report": report or ""},
    )
