"""`mllmcl drift`: has a batch of requests moved away from what the production model learned? A thin front of
monitoring/ (Evidently); the decision is printed in one line."""

from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    """Add `mllmcl drift`; exit 1 means a drift decision was taken, not that the command failed."""
    p = sub.add_parser(
        "drift",
        parents=[common],
        help="judge a batch of requests against the production model's learned tasks (Evidently)",
        description="Runs the production model (registry alias `production`, else the workspace models/) on the "
        "batch and compares what it sees (image statistics, question text, the base's image and question "
        "embeddings, the router's confidence and open-set flag) with each learned task's reference profile. "
        "Writes reports/drift/<batch>.html (Evidently) and .json, and prints the decision: none, known_drift "
        "(alert; refresh for a labelled batch) or novel (new_task for a labelled batch; label_request otherwise, "
        "written to data/incoming/<batch>/to_label.jsonl). Exit 0: no drift, 1: a drift decision (with --emit, "
        "the mllmcl.drift.detected event starts the drift-triggered continual stage).",
    )
    p.add_argument("incoming", type=Path, help="JSONL of requests ({id?, image?, question, answer?}; images relative)")
    p.add_argument("--name", default=None, help="batch name for the reports (default: the file's stem or folder)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: reports/drift)")
    p.add_argument("--emit", action="store_true", help="on a drift decision, emit mllmcl.drift.detected to Prefect")
    p.add_argument("--project", default="mllmcl", help="resource name of the emitted event")
    p.set_defaults(handler=_drift)


def _drift(args) -> int:
    from mllmcl.entry import load_params
    from mllmcl.paths import ProjectPaths
    from monitoring.monitor import batch_name, monitor_batch

    params = load_params(args)
    paths = ProjectPaths(args.root)
    name = args.name or batch_name(args.incoming)
    out = args.out or paths.drift_reports
    result, decision = monitor_batch(args.root, params, args.incoming, name, out_dir=out)
    report = out / f"{name}.html"
    print(f"{decision.line()}; {result.summary()}; report {report if report.exists() else out / (name + '.json')}")
    if decision.triggers and args.emit:
        from flows.drift_monitor import emit_decision

        event = emit_decision(  # shares the drift_monitor flow's cooldown: neither re-emits what the other just sent
            paths,
            params,
            decision,
            project=args.project,
            batch=str(args.incoming.resolve().parent),  # the folder the drift-triggered stage learns from
            folder=args.incoming.parent,
            drift_share=result.drift_share,
            report=str(report),
        )
        if event is not None:
            print(f"emitted mllmcl.drift.detected {event.id}")
        else:
            print(f"not emitted: the same decision was emitted less than {params.drift.cooldown_minutes} minutes ago")
    return 1 if decision.triggers else 0
