"""The HTTP API (FastAPI): `POST /v1/predict` (JSON, a JSON batch or a multipart upload), `GET /health`,
`GET /version`. Built by `create_app` from a model holder, the `serve:` params and a traffic log, so a test or a
benchmark can serve any model in-process. Every refusal is a 4xx with `{"error": "<one line>"}`, and the server
keeps serving after it; in a JSON batch, a request that fails alone after the batch was accepted (the model cannot
take it) is `{"id", "error", "status"}` in its place among the others' answers.

Memory is bounded before work is done: a body is refused (413) as soon as it passes its limit while it streams in,
each body being read and each request being decoded, queued or answered holds a place among `serve.max_queue`
(503 when none is left, before decoding), images are decoded within `serve.max_image_pixels`, and at most a few
bodies are parsed and decoded at once."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from mllmcl.config import ServeConfig
from mllmcl.serving.batcher import Busy, MicroBatcher
from mllmcl.serving.models import ModelHolder
from mllmcl.serving.reload import ReloadWatcher
from mllmcl.serving.requests import (
    RequestError,
    decode,
    max_body_bytes,
    now,
    one_line,
    parse_json,
    parse_multipart,
    request_body_bytes,
)
from mllmcl.serving.traffic import TrafficLog

log = logging.getLogger("mllmcl.serving")


def create_app(
    holder: ModelHolder,
    config: ServeConfig,
    traffic: TrafficLog | None = None,
    *,
    watcher: ReloadWatcher | None = None,
) -> FastAPI:
    """The FastAPI app serving `holder`'s model; its lifespan starts and stops the batching worker (and `watcher`,
    the hot reload). `app.state.batcher` exposes the worker's counters."""
    batcher = MicroBatcher(
        holder,
        max_batch=config.max_batch,
        max_wait_ms=config.max_wait_ms,
        on_batch=traffic.write if traffic is not None else None,
        max_queue=config.max_queue,
    )
    json_limit, one_limit = max_body_bytes(config), request_body_bytes(config)
    keep_bytes = traffic is not None and traffic.keep_images  # else the raw upload is dropped once decoded
    decoders = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))  # CPU-bound: more buys no speed

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await run_in_threadpool(watcher.stop)
            await run_in_threadpool(batcher.stop)

    app = FastAPI(
        title="mllmcl",
        description="Routed answers from the continual-learning model: each request goes to its task's LoRA expert "
        "(or the base model for what no expert knows).",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.holder, app.state.watcher, app.state.traffic = batcher, holder, watcher, traffic

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": one_line(message)}, status_code=status)

    @app.exception_handler(RequestError)
    async def _refused(request, exc: RequestError):
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Busy)
    async def _busy(request, exc: Busy):
        return JSONResponse({"error": one_line(str(exc))}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    async def read_body(request: Request, limit: int, places: Places) -> bytes:
        """The body, read as it streams in: refused (413) as soon as it passes `limit`, and before reading when
        Content-Length says so; every `one_limit` bytes received hold one more place in the queue (Busy when none
        is left), so bodies being read count against the memory the queue bounds; a body that does not arrive within
        `serve.body_timeout_s` is a 408."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"body is {declared} bytes; at most {limit} are read")
        body = bytearray()  # grown in place: no second copy of the body when it is complete
        try:
            async with asyncio.timeout(config.body_timeout_s):  # a socket that sends nothing keeps nothing
                async for chunk in request.stream():
                    if len(body) + len(chunk) > limit:
                        raise RequestError(413, f"body is over {limit} bytes; refused")
                    places.hold(1 + (len(body) + len(chunk)) // one_limit)  # places for bytes received, not promised
                    body += chunk
        except TimeoutError:
            raise RequestError(408, f"body not received within {config.body_timeout_s:g} s") from None
        return body

    def parse_and_decode(box: list, content_type: str, places: Places, arrived: float):
        """(items, batch form?, ids) of the body in `box` (taken out, so it is freed once parsed). At most
        `decoders` bodies are parsed and decoded at once: the transient copies (JSON text, base64, raw and
        decoded pixels) of 16 concurrent large requests would otherwise all peak together."""
        with decoders:
            body = box.pop()
            if content_type.lower().startswith("multipart/form-data"):
                parsed, batch = [parse_multipart(body, content_type, config)], False
            else:
                parsed, batch = parse_json(body, config)
            del body
            places.resize(len(parsed))  # one place a request, held before any image is decoded
            ids = [p.id for p in parsed]
            items = []
            while parsed:  # each request's raw bytes are let go as soon as its image is decoded
                items.append(decode(parsed.pop(0), config, arrived, keep_bytes=keep_bytes))
            return items, batch, ids

    @app.post("/v1/predict")
    async def predict(request: Request):
        """Answer one request ({question, image_base64?, id?} or a multipart `image` + `question`) or a batch
        ({"requests": [...]}, at most serve.max_batch)."""
        arrived = now()
        content_type = request.headers.get("content-type", "")
        multipart = content_type.lower().startswith("multipart/form-data")
        if not multipart and content_type and "json" not in content_type.lower():
            raise RequestError(415, f"Content-Type {content_type!r}: send application/json or multipart/form-data")
        with Places(batcher) as places:
            box = [await read_body(request, one_limit if multipart else json_limit, places)]
            items, batch, ids = await run_in_threadpool(parse_and_decode, box, content_type, places, arrived)
            submitted = []
            try:
                for item in items:
                    submitted.append(places.submit(item))
            except Busy:  # shutting down: a batch is all or nothing, so what was queued of it is withdrawn
                for future in submitted:
                    future.cancel()
                raise
        outcomes = await asyncio.gather(*(asyncio.wrap_future(f) for f in submitted), return_exceptions=True)
        if not batch:
            if isinstance(outcomes[0], BaseException):
                raise outcomes[0]
            return outcomes[0].response()
        return batch_response(outcomes, ids)

    def batch_response(outcomes: list, ids: list):
        """A JSON batch's answers in order; a request that failed alone is `{id, error, status}` in its place, and
        only a batch where every request failed is an error as a whole."""
        if all(isinstance(o, BaseException) for o in outcomes):
            raise outcomes[0]
        predictions = []
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                status, message = _failure(outcome)
                predictions.append({"id": ids[i], "error": one_line(f"requests[{i}]: {message}"), "status": status})
            else:
                predictions.append(outcome.response())
        return {"predictions": predictions}

    @app.get("/health")
    async def health():
        """Liveness for a load balancer: 200 while the model the alias names is the one served (or the registry
        merely could not be read), 503 "unhealthy" when the alias names a version that failed to load (the old
        one keeps answering meanwhile). Also the version served, the queue, the last hot-reload error."""
        reason = watcher.unhealthy if watcher is not None else None
        body = {
            "status": "unhealthy" if reason else "ok",
            "reason": reason,
            "version": holder.current.version,
            "queued": batcher.queued,
            "admitted": batcher.admitted,
            "answered": batcher.answered,
            "reload_error": watcher.last_error if watcher is not None else None,
        }
        return JSONResponse(body, status_code=503 if reason else 200)

    @app.get("/version")
    async def version():
        """The version served: registry version id (or "workspace"), what was asked for, its tasks and base."""
        return holder.current.info()

    return app


def _failure(error: BaseException) -> tuple[int, str]:
    """The status and message of one failed request of a batch, as the handlers above would answer it alone."""
    if isinstance(error, RequestError):
        return error.status, error.message
    if isinstance(error, Busy):
        return 503, str(error)
    log.error("internal error on a batched request: %s: %s", type(error).__name__, error)
    return 500, f"internal error ({type(error).__name__}); the server log has the details"


class Places:
    """The queue places one HTTP request holds while its body is read and its images decoded; `submit` hands one
    to each request queued, and leaving the block gives back whatever was not handed on (a refusal, an error)."""

    def __init__(self, batcher: MicroBatcher):
        self.batcher, self.held = batcher, 0

    def __enter__(self) -> Places:
        self.hold(1)  # a full server refuses before reading a byte
        return self

    def hold(self, n: int) -> None:
        """Hold at least `n` places (Busy when the queue has no room for them)."""
        if n > self.held:
            self.batcher.reserve(n - self.held)
            self.held = n

    def resize(self, n: int) -> None:
        """Hold exactly `n` places."""
        if n < self.held:
            self.batcher.release(self.held - n)
            self.held = n
        self.hold(n)

    def submit(self, item):
        future = self.batcher.submit(item, reserved=True)
        self.held -= 1
        return future

    def __exit__(self, *exc) -> None:
        if self.held:
            self.batcher.release(self.held)
            self.held = 0
