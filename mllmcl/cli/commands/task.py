"""`mllmcl task add`: start a continual stage with a new task (imported LLaVA data or a generator)."""

from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    """Add `mllmcl task add`; a bare `mllmcl task` prints its help."""
    p = sub.add_parser("task", help="manage the ordered list of tasks")
    tsub = p.add_subparsers(dest="task_command", metavar="ACTION")
    add = tsub.add_parser(
        "add",
        parents=[common],
        help="add a task: copy its data under data/raw/NAME, track it with DVC, append NAME to params.yaml tasks",
        description="Add a task. Imported data uses MLLM-CL's LLaVA formats: train items "
        "{id, image, conversations:[{from:human,value},{from:gpt,value}]} and test items "
        "{question_id, image, text, answer}; image paths are relative to --images.",
    )
    add.add_argument("name", help="task name (lowercase letters, digits, _)")
    src = add.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", metavar="GENERATOR", help="a generator of the embedded MLLM-CL-mini benchmark")
    src.add_argument("--train", type=Path, help="LLaVA-format training file (JSON list or JSONL)")
    add.add_argument("--test", type=Path, help="MLLM-CL test file {question_id, image, text, answer}")
    add.add_argument("--images", type=Path, help="folder the image paths are relative to")
    add.add_argument("--description", help="one line describing the task, shown in the router's pool")
    add.set_defaults(handler=_add)
    p.set_defaults(help_parser=p)


def _add(args) -> int:
    from flows.dvc_cli import add as dvc_add
    from mllmcl.data.tasks import add_llava, add_synthetic
    from mllmcl.entry import params_path
    from mllmcl.errors import UserError

    params = params_path(args)
    if args.synthetic:
        raw = add_synthetic(args.name, args.synthetic, root=args.root, params_path=params, description=args.description)
    else:
        if not (args.test and args.images):
            raise UserError("--train needs --test and --images too")
        raw = add_llava(
            args.name,
            args.train,
            args.test,
            args.images,
            root=args.root,
            params_path=params,
            description=args.description,
            track=lambda folder: dvc_add(folder, args.root),
        )
    print(f"added task '{args.name}' ({raw}); run `dvc repro` to ingest, validate and train its expert")
    return 0
