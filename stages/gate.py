"""Stage `gate`: the candidate vs the registry's production version -> metrics/gate.json + reports/gate.{md,html}.
It decides; it never promotes (`mllmcl registry promote` or the Prefect flow does)."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.config import load_params
    from mllmcl.gating import run_gate

    gate = run_gate(load_params(args.params), Path(args.root))
    failed = [c["name"] for c in gate["checks"] if not c["passed"]]
    print(f"gate: {gate['decision'].upper()} for {gate['candidate']} vs {gate['baseline'] or 'no production'}"
          + (f"; failed: {', '.join(failed)}" if failed else "") + "; report: reports/gate.html")
    return 0  # a failing gate is a decision, not a broken pipeline


if __name__ == "__main__":
    run(main, parser(__doc__).parse_args())
