"""`mllmcl params show|check`: the effective configuration with every field's description, or just its check."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add `mllmcl params show|check`; a bare `mllmcl params` prints its help."""
    p = sub.add_parser("params", help="show or check params.yaml (typed, with each field's description)")
    ps = p.add_subparsers(dest="params_command", metavar="ACTION")
    show = ps.add_parser("show", parents=[common], help="print the effective configuration, defaults filled in")
    check = ps.add_parser("check", parents=[common], help="exit 0 when params.yaml is valid, 2 with the reason if not")
    show.set_defaults(handler=_show)
    check.set_defaults(handler=_check)
    p.set_defaults(help_parser=p)


def _show(args) -> int:
    from mllmcl.config import describe
    from mllmcl.entry import load_params

    print(describe(load_params(args)))
    return 0


def _check(args) -> int:
    from mllmcl.entry import load_params, params_path

    params = load_params(args)
    print(f"{params_path(args)}: valid ({len(params.tasks)} tasks: {', '.join(params.tasks)})")
    return 0
