"""`mllmcl gate`: re-run the promotion gate for the workspace's candidate against the current production."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add `mllmcl gate`; exit 1 means the gate failed, not that the command did."""
    p = sub.add_parser(
        "gate",
        parents=[common],
        help="judge the workspace's candidate against production and write the gate report",
        description="Reads metrics/eval.json, the registry's production manifest, validation reports and "
        "dvc.lock; writes metrics/gate.json, reports/gate.md and reports/gate.html. Exit 0 on pass, "
        "1 on fail.",
    )
    p.set_defaults(handler=_gate)


def _gate(args) -> int:
    from mllmcl.entry import load_params
    from mllmcl.paths import ProjectPaths
    from mllmcl.release.candidate import run_gate

    gate = run_gate(load_params(args), ProjectPaths(args.root))
    for c in gate.checks:
        print(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
    print(f"decision: {gate.decision.upper()} (candidate {gate.candidate}, baseline {gate.baseline or 'none'})")
    return 0 if gate.passed else 1
