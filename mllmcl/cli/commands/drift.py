"""`mllmcl drift`: is an incoming batch of requests new territory for the learned tasks? (Evidently)"""

from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    """Add `mllmcl drift`; exit 1 means drift was found, not that the command failed."""
    p = sub.add_parser(
        "drift",
        parents=[common],
        help="compare a batch of incoming requests with the learned tasks (Evidently)",
        description="Features of each request (image brightness, colour, contrast, edges, size; "
        "question length) against a sample of the learned tasks' training data. Writes "
        "reports/drift/<batch>.html (Evidently) and .json. Exit 0: no drift, 1: drift (with --emit, "
        "the mllmcl.drift.detected event starts the drift-triggered continual stage).",
    )
    p.add_argument("incoming", type=Path, help="JSONL of requests ({id?, image?, question}; images relative to it)")
    p.add_argument("--tasks", nargs="*", default=None, help="reference tasks (default: params.yaml tasks)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: reports/drift)")
    p.add_argument("--emit", action="store_true", help="on drift, emit mllmcl.drift.detected to Prefect")
    p.add_argument("--project", default="mllmcl", help="resource name of the emitted event")
    p.set_defaults(handler=_drift)


def _drift(args) -> int:
    from mllmcl.entry import load_params
    from mllmcl.paths import ProjectPaths
    from monitoring.drift import check_batch

    params = load_params(args)
    paths = ProjectPaths(args.root)
    learned = args.tasks or params.tasks
    out = args.out or paths.drift_reports
    result = check_batch(args.incoming, learned, paths.tasks_dir, params.drift, out)
    verdict = "DRIFT" if result.detected else "no drift"
    print(
        f"{verdict}: {result.drift_share:.0%} of feature columns drifted (threshold {result.threshold:.0%}); "
        f"drifted: {', '.join(result.drifted_columns) or 'none'}; report {out / (args.incoming.stem + '.html')}"
    )
    if result.detected and args.emit:
        from flows.events import emit_drift_detected

        event = emit_drift_detected(
            args.project, str(args.incoming), result.drift_share, str(out / (args.incoming.stem + ".html"))
        )
        print(f"emitted mllmcl.drift.detected {event.id}")
    return 1 if result.detected else 0
