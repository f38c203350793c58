"""Stage `gate`: the candidate vs the registry's production version -> metrics/gate.json, reports/gate.{md,html}
and the DVC plots. It decides; it never promotes (`mllmcl registry promote` or the Prefect flow does). A failing
gate is a decision, not a broken pipeline: the stage succeeds and the decision is in metrics/gate.json."""

from stages._common import context, parser, run


def main(args) -> int:
    """Judge the candidate and print the decision; returns 0 on a failing gate too (the decision is in
    metrics/gate.json)."""
    from mllmcl.release.candidate import run_gate

    params, paths = context(args)
    gate = run_gate(params, paths)
    failed = [c.name for c in gate.failed()]
    print(
        f"gate: {gate.decision.upper()} for {gate.candidate} vs {gate.baseline or 'no production'}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + "; report: reports/gate.html"
    )
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__).parse_args())
