"""Stage `validate@<task>`: Great Expectations checks of data/tasks/<task>; a failure stops the DAG here
(exit 1, with a report naming the offending rows)."""

from stages._common import context, parser, path_arg, run


def main(args) -> int:
    """Validate one task folder and write <task>.json/.md; returns 1 when a rule fails, which stops `dvc repro` here."""
    from mllmcl.data.validation import validate_task, write_reports

    params, paths = context(args)
    result = validate_task(args.data or paths.task_data(args.task), args.task, params.validate_)
    _, md = write_reports(result, args.reports or paths.validation_reports)
    if result.passed:
        print(result.summary())
        return 0
    print(f"{result.summary()}\nreport: {md}", flush=True)
    return 1


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__, task=True)
    path_arg(p, "--data", "the task folder to validate")
    path_arg(p, "--reports", "folder for <task>.json and <task>.md")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
