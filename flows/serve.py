"""Serve the continual-stage deployments against a Prefect server: a cron schedule from params.yaml
(`schedule:`) and an event-triggered deployment that drift detection starts (`mllmcl.drift.detected`).

    make prefect-server            # a local server on 127.0.0.1 (SQLite under .prefect/)
    python -m flows.serve          # in another shell, with PREFECT_API_URL pointing at it
"""

from __future__ import annotations

import argparse
from pathlib import Path

DRIFT_EVENT = "mllmcl.drift.detected"


def build_deployments(params: dict, root: str):
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flows.continual_stage import continual_stage

    sched = params.get("schedule", {}) or {}
    out = []
    if sched.get("cron"):
        out.append(continual_stage.to_deployment(
            name=sched.get("name", "scheduled"),
            cron=sched["cron"],
            parameters={"root": root, "reason": "scheduled"},
            description="continual stage on a cron schedule (params.yaml schedule.cron)",
        ))
    out.append(continual_stage.to_deployment(
        name="on-drift",
        triggers=[DeploymentEventTrigger(
            name="drift detected",
            expect={DRIFT_EVENT},
            match={"prefect.resource.id": "mllmcl.*"},
            parameters={"root": root, "reason": "drift: {{ event.payload.batch }}",
                        "require_approval": sched.get("drift_requires_approval", False)},
        )],
        parameters={"root": root, "reason": "drift"},
        description=f"continual stage started by a `{DRIFT_EVENT}` event",
    ))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".", help="project root the flows run in (default: .)")
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args(argv)
    from prefect import serve

    from mllmcl.config import load_params

    root = str(Path(a.root).resolve())
    serve(*build_deployments(load_params(Path(root) / a.params), root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
