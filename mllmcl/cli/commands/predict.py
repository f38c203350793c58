"""`mllmcl predict`: routed inference, one request or a JSONL batch."""

from __future__ import annotations

import os
import stat
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


def _params(args):
    from mllmcl.entry import load_params

    return load_params(args)


def check_image_file(path: Path, max_bytes: int, where: str = "") -> bool:
    """Refuse, before a byte is read, what is not a regular file (/dev/zero never ends, a FIFO blocks forever, a
    directory cannot be read) or is larger than serve.max_image_bytes. False when there is no such file (it may
    be a member of its folder's images.zip, which the image reader knows)."""
    from mllmcl.errors import DataError

    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DataError(f"{where}{path}: cannot read the image ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device"
        raise DataError(f"{where}{path}: is {kind}, not a regular image file")
    if info.st_size > max_bytes:
        raise DataError(f"{where}{path}: image is {info.st_size} bytes; at most {max_bytes} (serve.max_image_bytes)")
    return True


def _read_image(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, at most `max_bytes`: opened without blocking and checked again on the open file, so a file
    swapped for a FIFO or a device after the check is still refused."""
    from mllmcl.errors import DataError

    check_image_file(path, max_bytes)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"{path}: is not a regular image file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{path}: image is over {max_bytes} bytes (serve.max_image_bytes)")
    return data


def _single(question: str, image: Path | None, serve):
    """The one request of --question [--image], its image read and decoded with serve's limits."""
    from mllmcl.continual.inference import Request, load_request
    from mllmcl.errors import DataError
    from mllmcl.serving.images import decode_image
    from mllmcl.serving.requests import RequestError

    if image is None or not check_image_file(image, serve.max_image_bytes):  # no file: the pack-aware reader's turn
        return load_request({"question": question, "image": str(image) if image else None}, Path("."), confine=False)
    request = load_request({"question": question}, Path("."), confine=False)  # the question's own checks
    data = _read_image(image, serve.max_image_bytes)
    try:
        picture = decode_image(
            data,
            max_bytes=serve.max_image_bytes,
            max_pixels=serve.max_image_pixels,
            min_side=serve.min_image_side,
            where=str(image),
        )
    except RequestError as e:
        raise DataError(e.message) from None
    return Request(question=request.question, image=picture)


def _load_model(args):
    from mllmcl.model.compute import set_threads
    from mllmcl.serving.models import load_served

    params = _params(args)
    set_threads(params.compute.threads)
    return load_served(params, args.root, args.model).model  # registry files verified against their checksums


def _predict(args) -> int:
    from mllmcl.continual.inference import load_request, prediction_json
    from mllmcl.errors import UserError

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if bool(args.question) == bool(args.input):
        raise UserError("give either --question (single request) or --input FILE.jsonl (batch)")
    params = _params(args)
    if args.question:
        requests = [_single(args.question, args.image, params.serve)]
    else:
        from mllmcl.data.records import read_json_lines

        requests = []
        for r in read_json_lines(args.input):
            image = r.obj.get("image") if isinstance(r.obj, dict) else None
            path = args.input.parent / image if isinstance(image, str) and image else None
            if path is not None and path.resolve().is_relative_to(args.input.parent.resolve()):  # else refused below
                check_image_file(path, params.serve.max_image_bytes, f"line {r.line}: ")
            requests.append(load_request(r.obj, args.input.parent, r.line))
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
