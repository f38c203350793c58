"""Stage `validate@<task>`: Great Expectations checks of data/tasks/<task>; a failure stops the DAG here."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.config import load_params, section
    from mllmcl.records import task_dir
    from mllmcl.validation import validate_task, write_reports

    params = load_params(args.params)
    root = Path(args.root)
    result = validate_task(task_dir(root / "data", args.task), args.task, section(params, "validate"))
    js, md = write_reports(result, root / "reports" / "validation")
    if result.passed:
        print(result.summary())
        return 0
    print(f"{result.summary()}\nreport: {md}", flush=True)
    return 1


if __name__ == "__main__":
    run(main, parser(__doc__, task=True).parse_args())
