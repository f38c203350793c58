"""`mllmcl run`: what `make run` does - reproduce the DVC pipeline on the embedded defaults and show the
gate's decision (promoting the first passing candidate when there is no production yet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mllmcl.paths import ProjectPaths


def register(sub, common) -> None:
    """Add `mllmcl run` (what `make run` does): exit 1 when the gate fails, dvc's own status when a stage fails."""
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run the whole pipeline (dvc repro) and show the promotion gate",
        description="Initialise DVC if needed, run `dvc repro`, print the gate decision. With no "
        "production model yet, a passing first candidate is promoted to the registry (say --no-promote "
        "to skip).",
    )
    p.add_argument("--no-promote", action="store_true", help="never promote, even a first passing candidate")
    p.set_defaults(handler=_run)


def _dvc(root: Path, *args: str) -> int:
    from flows.dvc_cli import env

    # stage commands say `python`: make it this environment's, whatever the caller's PATH
    return subprocess.call([sys.executable, "-m", "dvc", *args], cwd=root, env=env())


def _run(args) -> int:
    from mllmcl.entry import load_params

    load_params(args)  # a bad params.yaml stops here, in one line, before DVC starts anything
    root = args.root
    if not (root / ".dvc").is_dir():
        scm = (root / ".git").exists()
        if _dvc(root, "init", *([] if scm else ["--no-scm"])) != 0:
            return 1
    code = _dvc(root, "repro")
    if code != 0:
        print("dvc repro failed: the stage above says why; nothing was promoted", file=sys.stderr)
        return code
    gate = ProjectPaths(root).gate_json
    if gate.exists():
        decision = json.loads(gate.read_text())
        print(
            f"\ngate: {decision['decision'].upper()} for candidate {decision['candidate']} "
            f"(baseline {decision.get('baseline') or 'none'}); report: {root / 'reports/gate.html'}"
        )
        for c in decision["checks"]:
            if not c["passed"]:
                print(f"  failed: {c['name']}: {c['detail']}")
        if decision["decision"] == "pass" and not args.no_promote:
            from mllmcl.cli.commands.registry import promote_first_candidate

            promote_first_candidate(args)
        return 0 if decision["decision"] == "pass" else 1
    return 0
