"""Serve the continual-stage deployments against a Prefect server: a cron schedule from params.yaml
(`schedule:`) and an event-triggered deployment that drift detection starts (`mllmcl.drift.detected`).

    make prefect-server            # a local server on 127.0.0.1 (SQLite under .prefect/)
    python -m flows.serve          # in another shell, with PREFECT_API_URL pointing at it
"""

from __future__ import annotations

import argparse
from pathlib import Path

DRIFT_EVENT = "mllmcl.drift.detected"


def build_deployments(params, root: str):
    """The scheduled deployment (params `schedule.cron`) and the drift-triggered one."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flows.continual_stage import continual_stage

    sched = params.schedule
    out = []
    if sched.cron:
        out.append(
            continual_stage.to_deployment(
                name=sched.name,
                cron=sched.cron,
                parameters={"root": root, "reason": "scheduled"},
                description="continual stage on a cron schedule (params.yaml schedule.cron)",
            )
        )
    out.append(
        continual_stage.to_deployment(
            name="on-drift",
            triggers=[
                DeploymentEventTrigger(
                    name="drift detected",
                    expect={DRIFT_EVENT},
                    match={"prefect.resource.id": "mllmcl.*"},
                    parameters={
                        "root": root,
                        "reason": "drift: {{ event.payload.batch }}",
                        "require_approval": sched.drift_requires_approval,
                    },
                )
            ],
            parameters={"root": root, "reason": "drift"},
            description=f"continual stage started by a `{DRIFT_EVENT}` event",
        )
    )
    return out


def main(args) -> int:
    """Serve both deployments until interrupted (blocks); the root is resolved so flow runs do not depend on the
    server's working directory."""
    from prefect import serve

    from mllmcl.entry import load_params

    root = str(Path(args.root).resolve())
    serve(*build_deployments(load_params(args), root))
    return 0


if __name__ == "__main__":
    from mllmcl.entry import add_common_options, main_of

    main_of(
        main,
        add_common_options(
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ),
    )
