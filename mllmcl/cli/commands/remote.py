"""`mllmcl remote`: the project's DVC remote from params.yaml `storage:`; push/pull data, models, run-cache."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add `mllmcl remote setup|push|pull`; S3 credentials come from the AWS chain, never from options or params."""
    p = sub.add_parser(
        "remote",
        parents=[common],
        help="configure the DVC remote from params.yaml and push/pull through it",
        description="setup: make params.yaml storage.dvc_remote (a folder or s3://bucket/prefix; "
        "storage.s3.endpoint_url for S3-compatible servers) the default DVC remote. push/pull: data, "
        "models and DVC's run-cache. S3 credentials come from the AWS chain (AWS_ACCESS_KEY_ID, "
        "AWS_PROFILE, ...), never from params.yaml.",
    )
    p.add_argument("action", choices=("setup", "push", "pull"))
    p.set_defaults(handler=_remote)


def _remote(args) -> int:
    from flows import dvc_cli
    from mllmcl.entry import load_params
    from mllmcl.errors import UserError

    params = load_params(args)
    url = dvc_cli.configure(params, args.root)
    if args.action == "setup":
        print(f"DVC remote '{dvc_cli.REMOTE}' -> {url}" if url else "storage.dvc_remote is null: no DVC remote")
        return 0
    if url is None and not dvc_cli.has_remote(args.root):
        raise UserError("no DVC remote: set storage.dvc_remote in params.yaml (a folder or s3://bucket/prefix)")
    out = dvc_cli.push(args.root) if args.action == "push" else dvc_cli.pull(args.root)
    print(out.strip() or f"dvc {args.action}: done")
    return 0
