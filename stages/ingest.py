"""Stage `ingest@<task>`: data/raw/<task>/ (generator spec or LLaVA files) -> data/tasks/<task>/."""

from stages._common import context, parser, path_arg, run


def main(args) -> int:
    """Normalise one task's raw input into its task folder (replaced atomically)."""
    from mllmcl.data.ingest import ingest_task

    params, paths = context(args)
    meta = ingest_task(
        args.task,
        params.data,
        raw_dir=args.raw or paths.raw(args.task),
        out_dir=args.out or paths.task_data(args.task),
        progress=True,
    )
    print(f"ingest {args.task}: {meta['source']}, {meta['counts']}")
    return 0


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__, task=True)
    path_arg(p, "--raw", "the task's raw input folder")
    path_arg(p, "--out", "the normalised task folder to write")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
