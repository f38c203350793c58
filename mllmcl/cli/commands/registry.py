"""`mllmcl registry list|show|promote|rollback|history`: the model registry (local folder or S3)."""

from __future__ import annotations

import json
import sys


def register(sub, common) -> None:
    """Add `mllmcl registry list|show|promote|rollback`; a bare `mllmcl registry` prints its help."""
    p = sub.add_parser("registry", help="list, inspect, promote and roll back model versions")
    rs = p.add_subparsers(dest="registry_command", metavar="ACTION")
    ls = rs.add_parser(
        "list", parents=[common], help="complete versions, oldest first, with the aliases pointing at them"
    )
    show = rs.add_parser("show", parents=[common], help="a version's manifest summary and how to reproduce it")
    show.add_argument("version", help="version id or alias (e.g. production)")
    show.add_argument("--json", action="store_true", help="print the whole manifest")
    pr = rs.add_parser(
        "promote",
        parents=[common],
        help="publish the last gated candidate (or a version) and make it production",
        description="With no VERSION, publishes the workspace candidate judged by the last gate run "
        "(metrics/gate.json) and flips the alias to it. A failed gate is refused unless --force --reason.",
    )
    pr.add_argument("version", nargs="?", help="an already published version id (default: the gated candidate)")
    pr.add_argument("--alias", default="production")
    pr.add_argument("--force", action="store_true", help="promote although the gate failed (needs --reason)")
    pr.add_argument("--reason", default="", help="why: recorded in the manifest, the alias and the audit log")
    pr.add_argument(
        "--require-reproducible",
        action="store_true",
        help="refuse a candidate whose commit lacks its dvc.lock/params or whose outputs are not in the DVC remote",
    )
    hist = rs.add_parser(
        "history", parents=[common], help="every promote, rollback and force, oldest first (checksum chain verified)"
    )
    hist.set_defaults(handler=_history)
    rb = rs.add_parser("rollback", parents=[common], help="point the alias back at its previous version")
    rb.add_argument("--alias", default="production")
    rb.add_argument("--reason", default="")
    ls.set_defaults(handler=_list)
    show.set_defaults(handler=_show)
    pr.set_defaults(handler=_promote)
    rb.set_defaults(handler=_rollback)
    p.set_defaults(help_parser=p)


def _open(args):
    from mllmcl.entry import load_params
    from mllmcl.release.registry import Registry

    params = load_params(args)
    return params, Registry.from_params(params, args.root)


def _list(args) -> int:
    _, reg = _open(args)
    prod = reg.alias("production")
    versions = reg.list_versions()
    if not versions:
        print(f"no versions in {reg.store.uri}")
    for m in versions:
        gate = (m.get("gate") or {}).get("decision", "?")
        mark = " <- production" if prod and prod["version"] == m["version"] else ""
        print(
            f"{m['version']}  {m.get('created_at', '')}  tasks={','.join(m.get('tasks', []))}  gate={gate}"
            f"{'  FORCED' if m.get('forced') else ''}{mark}"
        )
    return 0


def _show(args) -> int:
    _, reg = _open(args)
    version = reg.resolve(args.version)
    m = reg.manifest(version)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    ev = m.get("eval") or {}
    print(f"version   {version}  ({m.get('created_at')})")
    print(f"tasks     {', '.join(m.get('tasks', []))}")
    print(
        f"base      {(m.get('base') or {}).get('name_or_path') or 'tiny (built by the base stage; stored in this version)'}"
    )
    print(
        f"gate      {(m.get('gate') or {}).get('decision', '?')}{'  FORCED: ' + m.get('reason', '') if m.get('forced') else ''}"
    )
    for t, v in (ev.get("tasks") or {}).items():
        print(f"  {t:10s} accuracy {v['accuracy']:.3f}  router {v.get('router_accuracy', 0):.3f}")
    if ev.get("language"):
        print(f"  {'language':10s} accuracy {ev['language']['accuracy']:.3f}")
    print(f"files     {len(m.get('files', {}))} (sha256 verified on load)")
    print(f"git       {m.get('git_commit') or 'unknown'}{' (had uncommitted changes)' if m.get('git_dirty') else ''}")
    print(f"dvc.lock  {len(m.get('dvc_lock', {}))} stages recorded")
    commit = m.get("git_commit") or "<commit>"
    repro = m.get("reproducible") or {"ok": False, "problems": ["recorded before reproducibility was checked"]}
    if repro.get("ok"):
        print(f"reproduce git checkout {commit} && dvc pull && dvc repro")
    else:
        print(f"reproduce NOT REPRODUCIBLE: {'; '.join(repro.get('problems') or ['unknown'])}")
    if m.get("forced"):
        print(f"forced    {m.get('reason') or '(no reason recorded)'}")
    return 0


def _promote(args) -> int:
    from flows.dvc_cli import outputs_pushed
    from mllmcl.paths import ProjectPaths
    from mllmcl.release.promotion import promote_candidate, promote_version

    params, reg = _open(args)
    if args.version:
        version = promote_version(reg, args.version, alias=args.alias, force=args.force, reason=args.reason)
        print(f"{args.alias} -> {version}")
        return 0
    result = promote_candidate(
        params,
        ProjectPaths(args.root),
        force=args.force,
        reason=args.reason,
        alias=args.alias,
        pushed=outputs_pushed(args.root),
        require_reproducible=args.require_reproducible,
    )
    print(f"{args.alias} -> {result.version}" + ("" if result.moved else " (already)"))
    _warn_unreproducible(result.problems)
    return 0


def _warn_unreproducible(problems: list[str]) -> None:
    if problems:
        print("WARNING: NOT REPRODUCIBLE from its recipe (recorded in the manifest):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)


def _history(args) -> int:
    _, reg = _open(args)
    report = reg.verify_audit()  # verified chain and anchors: a tampered log is an error naming the entry
    entries = report.entries
    if not entries:
        print(f"no promotions recorded in {reg.store.uri}")
    for e in entries:
        moved = f"{e['from'] or '-'} -> {e['to'] or '-'}"
        print(
            f"{e['seq']:4d}  {e['at'][:19]}  {e['action']:13s} {e['alias']:10s} {moved:32s} {e['by']}"
            + (f"  gate={e['gate_decision']}" if e.get("gate_decision") else "")
            + (f"  reason: {_one_line(e['reason'])}" if e.get("reason") else "")
            + (f"  (entry {e['voids']} did not land)" if e.get("voids") else "")
        )
    for e in report.unlanded:
        print(
            f"NOTE: entry {e['seq']} logged a move of '{e['alias']}' to {e['to']} that never landed (interrupted "
            "between the log and the alias flip); the alias is where the last landed move left it"
        )
    print(f"{len(entries)} entries, checksum chain and alias anchors verified")
    return 0


def _one_line(text: str) -> str:
    """A logged free-text field on one line: control characters escaped, so a reason cannot forge an extra entry."""
    return json.dumps(str(text), ensure_ascii=False)[1:-1]


def _rollback(args) -> int:
    _, reg = _open(args)
    doc = reg.rollback(args.alias, reason=args.reason)
    print(f"{args.alias} -> {doc['version']} (rolled back from {doc['rolled_back_from']})")
    return 0


def promote_first_candidate(args) -> None:
    """`mllmcl run`: with no production yet, a passing first candidate becomes production."""
    from mllmcl.paths import ProjectPaths
    from mllmcl.release.promotion import promote_candidate

    params, reg = _open(args)
    if reg.alias("production"):
        print("production exists: review reports/gate.html, then `mllmcl registry promote`")
        return
    from flows.dvc_cli import outputs_pushed

    result = promote_candidate(
        params, ProjectPaths(args.root), reason="first passing candidate (make run)", pushed=outputs_pushed(args.root)
    )
    version = result.version
    _warn_unreproducible(result.problems)
    print(f"no production yet: promoted the first passing candidate {version} to production in {reg.store.uri}")
