"""Stage `train_router`: the router LoRA on a replay sample of every task in `tasks` plus text-only samples."""

from stages._common import context, parser, path_arg, run


def main(args) -> int:
    """Train the router on the replay set of every task in `tasks` (resumable from checkpoints/router) and print its
    held-out routing accuracy."""
    from mllmcl.continual.router import train_router

    params, paths = context(args)
    s = train_router(
        params.tasks,
        params,
        base_dir=args.base or paths.base,
        tasks_dir=args.tasks_dir or paths.tasks_dir,
        out_dir=args.out or paths.router,
        checkpoint_dir=paths.checkpoints("router"),
        embedding_cache=paths.embedding_cache,
    )
    print(
        f"router: accuracy {s['accuracy']:.3f}, text-only to base {s['base_routing_accuracy']:.3f}, "
        f"{s['seconds']:.0f} s"
    )
    return 0


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__)
    path_arg(p, "--base", "the base model folder")
    path_arg(p, "--tasks-dir", "the folder holding every task's data")
    path_arg(p, "--out", "where the router adapter is written")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
