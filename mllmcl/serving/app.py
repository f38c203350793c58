"""The HTTP API (FastAPI): `POST /v1/predict` (JSON, a JSON batch or a multipart upload), `GET /health`,
`GET /version`. Built by `create_app` from a model holder, the `serve:` params and a traffic log, so a test or a
benchmark can serve any model in-process. Every refusal is a 4xx with `{"error": "<one line>"}`, and the server
keeps serving after it."""

from __future__ import annotations

import asyncio
import logging
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
from mllmcl.serving.requests import RequestError, max_body_bytes, now, one_line, parse_json, parse_multipart
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
    )
    body_limit = max_body_bytes(config)

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

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > body_limit:
            raise RequestError(413, f"body is {declared} bytes; at most {body_limit} are read")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > body_limit:
                raise RequestError(413, f"body is over {body_limit} bytes; refused")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/v1/predict")
    async def predict(request: Request):
        """Answer one request ({question, image_base64?, id?} or a multipart `image` + `question`) or a batch
        ({"requests": [...]}, at most serve.max_batch)."""
        arrived = now()
        body = await read_body(request)
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            items, batch = [await run_in_threadpool(parse_multipart, body, content_type, config, arrived)], False
        elif content_type and "json" not in content_type.lower():
            raise RequestError(415, f"Content-Type {content_type!r}: send application/json or multipart/form-data")
        else:
            items, batch = await run_in_threadpool(parse_json, body, config, arrived)
        submitted = []
        try:
            for item in items:
                submitted.append(batcher.submit(item))
        except Busy:  # a batch is all or nothing: what was queued of it is withdrawn, so a retry does no work twice
            for future in submitted:
                future.cancel()
            raise
        answers = await asyncio.gather(*(asyncio.wrap_future(f) for f in submitted))
        if batch:
            return {"predictions": [a.response() for a in answers]}
        return answers[0].response()

    @app.get("/health")
    async def health():
        """Liveness: the version served, the queue length, the last hot-reload error (null when none)."""
        return {
            "status": "ok",
            "version": holder.current.version,
            "queued": batcher.queued,
            "answered": batcher.answered,
            "reload_error": watcher.last_error if watcher is not None else None,
        }

    @app.get("/version")
    async def version():
        """The version served: registry version id (or "workspace"), what was asked for, its tasks and base."""
        return holder.current.info()

    return app
