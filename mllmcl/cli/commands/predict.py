"""`mllmcl predict`: routed inference, one request or a JSONL batch."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub, common) -> None:
    """Add `mllmcl predict`: one request (--question) or a JSONL batch (--input), with the workspace's model or a
    registry version."""
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="answer image+question requests with the routed experts",
        description="Route each request to an expert (or the base) and answer it. Single request with "
        "--question [--image], or a batch: --input requests.jsonl ({id?, image?, question} a line, image paths "
        "relative to the file) and --output answers.jsonl ({id, answer, expert, confidence, known, novelty, latency_ms}).",
    )
    p.add_argument("--question", help="the question (single request)")
    p.add_argument("--image", type=Path, help="an image file (single request; omit for text-only)")
    p.add_argument("--input", type=Path, help="JSONL of requests (batch mode)")
    p.add_argument("--output", type=Path, help="JSONL of answers (batch mode; default: stdout)")
    p.add_argument(
        "--model",
        default="workspace",
        help="'workspace' (models/ of this project, default), a registry alias such as 'production', "
        "or a registry version id",
    )
    p.add_argument("--batch-size", type=int, default=32, help="requests per forward batch (default: 32)")
    p.set_defaults(handler=_predict)


def _load_model(args):
    from mllmcl.entry import load_params
    from mllmcl.model.compute import set_threads
    from mllmcl.serving.models import load_served

    params = load_params(args)
    set_threads(params.compute.threads)
    return load_served(params, args.root, args.model).model  # registry files verified against their checksums


def _predict(args) -> int:
    from mllmcl.continual.inference import load_request, prediction_json
    from mllmcl.errors import UserError

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if bool(args.question) == bool(args.input):
        raise UserError("give either --question (single request) or --input FILE.jsonl (batch)")
    if args.question:
        requests = [
            load_request(
                {"question": args.question, "image": str(args.image) if args.image else None}, Path("."), confine=False
            )
        ]
    else:
        from mllmcl.data.records import read_json_lines

        requests = [load_request(r.obj, args.input.parent, r.line) for r in read_json_lines(args.input)]
    model = _load_model(args)
    preds = model.predict(requests, batch_size=args.batch_size)
    lines = [prediction_json(p) for p in preds]
    if args.question:
        p = preds[0]
        print(f"{p.answer}\t(expert: {p.expert}, confidence {p.confidence:.2f}, {p.latency_ms:.0f} ms)")
    elif args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")
        print(f"wrote {len(lines)} answers to {args.output}", file=sys.stderr)
    else:
        print("\n".join(lines))
    return 0
