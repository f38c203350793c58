"""Micro-batching: concurrent HTTP requests wait (at most `max_wait_ms` after the first one arrived) in one queue,
and a single worker thread answers up to `max_batch` of them with ONE `RoutedModel.predict` call, where requests
for different experts share a forward pass. The worker is the only caller of the model (a torch model is not
safe to call from two threads at once here), and it reads the served model once per batch, so a hot reload never
changes the model under a batch in flight."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from mllmcl.errors import UserError
from mllmcl.serving.models import ModelHolder
from mllmcl.serving.requests import Incoming, RequestError

log = logging.getLogger("mllmcl.serving")
_STOP = object()


class Busy(Exception):
    """The queue is full or the worker has stopped: the client should retry later (HTTP 503)."""


@dataclass
class Answer:
    """A request answered: the prediction, the version that gave it and the latency from arrival to answer."""

    item: Incoming
    prediction: object  # mllmcl.continual.inference.Prediction
    version: str
    latency_ms: float
    batch_size: int

    def response(self) -> dict:
        """The JSON object returned to the client."""
        p = self.prediction
        return {
            "id": self.item.request.id,
            "request_id": self.item.request_id,
            "answer": p.answer,
            "expert": p.expert,
            "confidence": p.confidence,
            "known": bool(getattr(p, "known", p.expert != "base")),
            "novelty": getattr(p, "novelty", None),
            "latency_ms": round(self.latency_ms, 2),
            "version": self.version,
        }


class MicroBatcher:
    """One worker thread answering queued requests in batches; `submit` returns a Future of the request's Answer.
    `on_batch` (the traffic log) sees every answered batch before its clients do."""

    def __init__(
        self,
        holder: ModelHolder,
        *,
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[list[Answer]], None] | None = None,
        max_queue: int | None = None,
    ):
        self.holder = holder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue or max_batch * 8)  # decoded images wait here: bounded
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0  # model calls made (a batch retried one by one counts each call)
        self.answered = 0

    def start(self) -> MicroBatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mllmcl-batcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then end the worker."""
        self._stopping = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, item: Incoming) -> Future:
        """Queue one request; raises Busy when the queue is full or the server is shutting down."""
        if self._stopping or self._thread is None:
            raise Busy("the server is not accepting requests (starting or shutting down)")
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future, time.perf_counter()))
        except queue.Full:
            raise Busy(f"{self._queue.maxsize} requests are already waiting; retry shortly") from None
        return future

    # --- the worker ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = first[2] + self.max_wait  # a request that already waited its share is not held any longer
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stop = True
                    break
                batch.append(entry)
            live = [(item, fut) for item, fut, _ in batch if fut.set_running_or_notify_cancel()]
            if live:
                self._answer(live)
        while True:  # shutting down: nothing may wait forever
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is not _STOP and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(Busy("the server is shutting down"))

    def _answer(self, batch: list[tuple[Incoming, Future]]) -> None:
        served = self.holder.current  # once per batch: a swap during the batch does not touch it
        try:
            self.batches += 1
            predictions = served.model.predict([item.request for item, _ in batch], batch_size=len(batch))
        except Exception as e:
            if len(batch) > 1:  # one request the model refuses (longer than the context, an image the processor
                for one in batch:  # cannot read) must not fail the others: answer them one by one
                    self._answer([one])
                return
            if isinstance(e, (UserError, ValueError)):  # the processor's ValueError is about this request's input
                batch[0][1].set_exception(RequestError(422, f"the model cannot take this request: {e}"))
                return
            log.exception("model call failed for a request")
            batch[0][1].set_exception(e)
            return
        done = time.perf_counter()
        answers = [
            Answer(item, p, served.version, (done - item.arrived) * 1000, len(batch))
            for (item, _), p in zip(batch, predictions)
        ]
        if self.on_batch is not None:
            try:
                self.on_batch(answers)
            except Exception:  # a full disk must not take the answers down with it
                log.exception("could not write the traffic log for a batch of %d requests", len(batch))
        self.answered += len(answers)
        for (_, fut), answer in zip(batch, answers):
            fut.set_result(answer)
