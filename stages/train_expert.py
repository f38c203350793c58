"""Stage `train_expert@<task>`: one LoRA expert for the task, trained from the base (never from another expert)."""

from stages._common import context, data_parallel, parser, path_arg, run


def main(args) -> int:
    """Train the task's expert from the base, resuming from checkpoints/expert-<task> after an interruption."""
    from mllmcl.continual.experts import train_expert

    params, paths = context(args)
    launched = data_parallel(params, "stages.train_expert")
    if launched is not None:  # compute.gpus > 1: the launched ranks trained and saved
        return launched
    s = train_expert(
        args.task,
        params,
        base_dir=args.base or paths.base,
        data_dir=args.data or paths.task_data(args.task),
        out_dir=args.out or paths.expert(args.task),
        checkpoint_dir=paths.checkpoints(f"expert-{args.task}"),
    )
    if s is None:  # a helper rank of a data-parallel run: rank 0 reports
        return 0
    print(
        f"expert {args.task}: accuracy {s.expert_accuracy:.3f} (base zero-shot {s.base_accuracy:.3f}), "
        f"{s.train_seconds:.0f} s, {s.trainable_params} trainable params"
    )
    return 0


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__, task=True)
    path_arg(p, "--base", "the base model folder")
    path_arg(p, "--data", "the task folder")
    path_arg(p, "--out", "where the expert adapter is written")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
