"""Serve the deployments against a Prefect server: the continual stage on a cron schedule (`schedule.cron`), the drift
monitor every `schedule.monitor_minutes`, the benchmark on demand, and the drift-triggered stage that the monitor's `mllmcl.drift.detected`
event starts (one run at a time, the next queued; the monitor's cooldown already keeps a burst to one event).

    make prefect-server            # a local server on 127.0.0.1 (SQLite under .prefect/)
    python -m flows.serve          # in another shell, with PREFECT_API_URL pointing at it
"""

from __future__ import annotations

import argparse
from pathlib import Path

DRIFT_EVENT = "mllmcl.drift.detected"
TRAINING_ACTIONS = ("new_task", "refresh", "stage")  # decisions whose event starts the drift-triggered stage


def build_deployments(params, root: str):
    """The scheduled continual stage (`schedule.cron`), the drift monitor (`schedule.monitor_minutes`), the
    drift-triggered stage and the on-demand benchmark."""
    from datetime import timedelta

    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flows.benchmark import benchmark
    from flows.continual_stage import continual_stage
    from flows.drift_monitor import drift_monitor, drift_stage

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
    if sched.monitor_minutes:
        out.append(
            drift_monitor.to_deployment(
                name="drift-monitor",
                interval=timedelta(minutes=sched.monitor_minutes),
                parameters={"root": root},
                # a slow run (the first builds the reference profile) must not overlap the next: both would judge the
                # same traffic and emit twice
                concurrency_limit=ConcurrencyLimitConfig(
                    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
                ),
                description="judge new traffic and incoming batches for drift (params.yaml schedule.monitor_minutes)",
            )
        )
    out.append(
        benchmark.to_deployment(
            name="benchmark",
            parameters={"root": root, "quick": True},
            # on demand (`prefect deployment run benchmark/benchmark -p seeds=3 -p orders=3 -p quick=false`); a second
            # run waits: two benchmarks on one machine would share its cores and the resumable units
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description="MR-LoRA against the continual-learning baselines (mllmcl benchmark), on demand",
        )
    )
    out.append(
        drift_stage.to_deployment(
            name="on-drift",
            triggers=[
                DeploymentEventTrigger(
                    name="drift detected",
                    expect={DRIFT_EVENT},
                    # alerts and labelling requests are events too, but train nothing: they do not start a run
                    match={"prefect.resource.id": "mllmcl.*", "mllmcl.action": list(TRAINING_ACTIONS)},
                    parameters={
                        "root": root,
                        "action": "{{ event.payload.action }}",
                        "batch": "{{ event.payload.batch }}",
                        "task": "{{ event.payload.task }}",
                        "reason": "drift: {{ event.payload.batch }}",
                        "require_approval": sched.drift_requires_approval,
                    },
                )
            ],
            parameters={"root": root, "reason": "drift"},
            # one stage at a time; distinct decisions (two new tasks) each get theirs, in turn
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=f"act on a `{DRIFT_EVENT}` event: learn a new task or re-run the continual stage",
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
