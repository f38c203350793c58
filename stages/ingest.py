"""Stage `ingest@<task>`: data/raw/<task>/ (generator spec or LLaVA files) -> data/tasks/<task>/."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.config import load_params
    from mllmcl.ingest import ingest_task

    meta = ingest_task(args.task, load_params(args.params), Path(args.root), progress=True)
    print(f"ingest {args.task}: {meta['source']}, {meta['counts']}")
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__, task=True).parse_args())
