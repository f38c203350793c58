"""What a client may send to `POST /v1/predict`, checked before it reaches the model: one request as JSON
(`{"question", "image_base64"?, "id"?}`), a batch (`{"requests": [...]}`) or a multipart upload (`image` file and
`question` field). Anything else is a RequestError: an HTTP status and a one-line message naming the field.
Checking and decoding are two steps (`parse_json`/`parse_multipart`, then `decode`) so that the server can hold a
request's place in its queue before the costly one, and bodies are bounded by what the image limits allow."""

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


@dataclass
class Parsed:
    """A request whose fields are checked but whose image is not decoded yet: decoding is the costly step, so it
    waits until the request holds its place in the server's queue."""

    question: str
    id: str | None
    image_bytes: bytes | None
    where: str


def request_body_bytes(config: ServeConfig) -> int:
    """The largest body of ONE request: the largest image in base64, the longest question in JSON escapes (6 bytes
    a character at worst), 4 kB for the rest. Also bounds a multipart upload (raw bytes are fewer than base64)."""
    return -(-config.max_image_bytes // 3) * 4 + 6 * config.max_question_chars + 4096


def max_body_bytes(config: ServeConfig) -> int:
    """The largest JSON body read at all: a batch of max_batch requests, capped at serve.max_body_bytes (but never
    below one largest request)."""
    one = request_body_bytes(config)
    return max(one, min(config.max_batch * one, config.max_body_bytes))


def _fields(obj, config: ServeConfig, where: str, image_bytes: bytes | None = None) -> Parsed:
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
    if image_bytes is not None and len(image_bytes) > config.max_image_bytes:
        raise RequestError(
            413, f"{where}: image is {len(image_bytes)} bytes; at most {config.max_image_bytes} are accepted"
        )
    return Parsed(question, None if rid is None else str(rid), image_bytes, where)


def decode(parsed: Parsed, config: ServeConfig, arrived: float, *, keep_bytes: bool = True) -> Incoming:
    """The Incoming of a checked request: its image decoded within the pixel limits and measured. `keep_bytes`
    False drops the raw upload once decoded (only a traffic log that keeps images needs it)."""
    from mllmcl.data.image_stats import image_stats
    from mllmcl.serving.images import decode_image

    image = stats = None
    if parsed.image_bytes is not None:
        image = decode_image(
            parsed.image_bytes,
            max_bytes=config.max_image_bytes,
            max_pixels=config.max_image_pixels,
            min_side=config.min_image_side,
            where=f"{parsed.where}: image",
        )
        stats = image_stats(image, max_side=STATS_MAX_SIDE)
    request = Request(question=parsed.question, image=image, id=parsed.id)
    return Incoming(request, arrived, parsed.image_bytes if image is not None and keep_bytes else None, stats)


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


def parse_json(body: bytes, config: ServeConfig) -> tuple[list[Parsed], bool]:
    """The checked requests of a JSON body (images still encoded) and whether it was the batch form."""
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
        return [_fields(o, config, f"requests[{i}]") for i, o in enumerate(items)], True
    return [_fields(obj, config, "request")], False


def parse_multipart(body: bytes, content_type: str, config: ServeConfig) -> Parsed:
    """One request from a multipart/form-data upload: ONE `image` file (optional) and the `question` (and `id`)
    fields, each at most once (a second image would otherwise be silently dropped)."""
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
            name = part.name
            if name == "image" and part.filename is not None:
                if image is not None:
                    raise RequestError(400, "multipart: more than one 'image' file; send one image per request")
                image = part.raw
            elif name in ("question", "id"):
                if name in fields:
                    raise RequestError(400, f"multipart: field {name!r} given more than once")
                fields[name] = part.value
            else:
                raise RequestError(400, f"multipart: unknown field {name!r} (expected image, question, id)")
    except multipart.ParserLimitReached:
        raise RequestError(
            413, f"multipart: a part is over {config.max_image_bytes} bytes (or too many parts)"
        ) from None
    except multipart.MultipartError as e:
        raise RequestError(400, f"multipart: malformed body ({e})") from None
    if image is not None and not image:
        raise RequestError(400, "multipart: the 'image' file is empty")
    return _fields(fields, config, "request", image_bytes=image)


def now() -> float:
    """The clock that request arrival and answer times are read from (monotonic, seconds)."""
    return time.perf_counter()


def one_line(text: str, limit: int = 300) -> str:
    """An error text as one line of at most `limit` characters (clients and logs read it whole)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
