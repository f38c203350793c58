"""What a client may send to `POST /v1/predict`, checked before it reaches the model: one request as JSON
(`{"question", "image_base64"?, "id"?}`), a batch (`{"requests": [...]}`) or a multipart upload (`image` file and
`question` field). Anything else is a RequestError: an HTTP status and a one-line message naming the field."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mllmcl.config import ServeConfig
from mllmcl.continual.inference import Request

FIELDS = {"question", "image_base64", "id"}
STATS_MAX_SIDE = 1024  # image statistics of a larger upload are measured on a shrunk copy


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP status (4xx), the message one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


@dataclass
class Incoming:
    """One accepted request on its way to the model: what the model needs plus what the traffic log records."""

    request: Request
    arrived: float  # time.perf_counter() when the HTTP request arrived
    image_bytes: bytes | None = None
    stats: dict | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


def max_body_bytes(config: ServeConfig) -> int:
    """The largest request body read at all: a full batch of the largest images (base64) and questions."""
    per_request = config.max_image_bytes * 4 // 3 + 4 * config.max_question_chars + 1024
    return config.max_batch * per_request + 65536


def _item(obj, config: ServeConfig, arrived: float, where: str, image_bytes: bytes | None = None) -> Incoming:
    from mllmcl.data.image_stats import image_stats
    from mllmcl.serving.images import decode_image

    if not isinstance(obj, dict):
        raise RequestError(400, f"{where}: a request is a JSON object {{question, image_base64?, id?}}")
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        hint = "; send the image as 'image_base64' or a multipart upload" if "image" in unknown else ""
        raise RequestError(400, f"{where}: unknown field(s) {', '.join(map(repr, unknown))}{hint}")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RequestError(400, f"{where}: 'question' must be a non-empty string")
    if len(question) > config.max_question_chars:
        raise RequestError(
            413, f"{where}: question is {len(question)} characters; at most {config.max_question_chars} are accepted"
        )
    rid = obj.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int) or len(str(rid)) > 200):
        raise RequestError(400, f"{where}: 'id' must be a string or an integer (at most 200 characters)")
    if image_bytes is None and obj.get("image_base64") is not None:
        image_bytes = _b64(obj["image_base64"], config, where)
    image = stats = None
    if image_bytes is not None:
        image = decode_image(image_bytes, max_bytes=config.max_image_bytes, where=f"{where}: image")
        stats = image_stats(image, max_side=STATS_MAX_SIDE)
    request = Request(question=question, image=image, id=None if rid is None else str(rid))
    return Incoming(request, arrived, image_bytes if image is not None else None, stats)


def _b64(value, config: ServeConfig, where: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, f"{where}: 'image_base64' must be a base64 string")
    if value.startswith("data:") and "," in value:  # a data URL: data:image/png;base64,....
        value = value.split(",", 1)[1]
    value = "".join(value.split())
    if len(value) * 3 // 4 > config.max_image_bytes + 3:  # refuse before decoding
        raise RequestError(
            413, f"{where}: image is about {len(value) * 3 // 4} bytes; at most {config.max_image_bytes} are accepted"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where}: 'image_base64' is not valid base64") from None


def parse_json(body: bytes, config: ServeConfig, arrived: float) -> tuple[list[Incoming], bool]:
    """The requests of a JSON body and whether it was the batch form."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:  # also a 5000-digit number or [[[[...]]]] nested too deep
        detail = getattr(e, "msg", None) or (str(e)[:120] if isinstance(e, ValueError) else "nested too deep")
        raise RequestError(400, f"body is not valid JSON ({detail})") from None
    if isinstance(obj, dict) and "requests" in obj:
        items = obj["requests"]
        if set(obj) != {"requests"}:
            raise RequestError(400, 'a batch is {"requests": [...]} and nothing else')
        if not isinstance(items, list) or not items:
            raise RequestError(400, "'requests' must be a non-empty list of requests")
        if len(items) > config.max_batch:
            raise RequestError(413, f"batch of {len(items)} requests; at most {config.max_batch} in one call")
        return [_item(o, config, arrived, f"requests[{i}]") for i, o in enumerate(items)], True
    return [_item(obj, config, arrived, "request")], False


def parse_multipart(body: bytes, content_type: str, config: ServeConfig, arrived: float) -> Incoming:
    """One request from a multipart/form-data upload: the `image` file (optional) and the `question` (and `id`)
    fields."""
    import multipart

    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise RequestError(400, "multipart body without a boundary in its Content-Type")
    fields: dict[str, str] = {}
    image = None
    try:
        parser = multipart.MultipartParser(
            io.BytesIO(body),
            boundary,
            len(body),
            part_limit=8,
            partsize_limit=config.max_image_bytes + 1,
            spool_limit=config.max_image_bytes + 1,
            memory_limit=config.max_image_bytes + 65536,
        )
        for part in parser:
            if part.name == "image" and part.filename is not None:
                image = part.raw
            elif part.name in ("question", "id"):
                fields[part.name] = part.value
            else:
                raise RequestError(400, f"multipart: unknown field {part.name!r} (expected image, question, id)")
    except multipart.ParserLimitReached:
        raise RequestError(
            413, f"multipart: a part is over {config.max_image_bytes} bytes (or too many parts)"
        ) from None
    except multipart.MultipartError as e:
        raise RequestError(400, f"multipart: malformed body ({e})") from None
    if image is not None and not image:
        raise RequestError(400, "multipart: the 'image' file is empty")
    return _item(fields, config, arrived, "request", image_bytes=image)


def now() -> float:
    """The clock that request arrival and answer times are read from (monotonic, seconds)."""
    return time.perf_counter()


def one_line(text: str, limit: int = 300) -> str:
    """An error text as one line of at most `limit` characters (clients and logs read it whole)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
