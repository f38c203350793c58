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
    `on_batch` (the traffic log) sees every answered batch before its clients do.

    At most `max_queue` requests are admitted at once, from the moment the server starts reading one (`reserve`)
    until it is answered: a body being read, an image being decoded, a request waiting and a batch in the model all
    hold memory, so all of them count, and a request that does not fit is refused (Busy) before any of that work."""

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
        self.capacity = max_queue or max_batch * 8
        self._queue: queue.Queue = queue.Queue()  # bounded by `capacity`, through reserve()
        self._admitted = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0  # model calls made (a failed batch split and retried counts each call)
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

    @property
    def admitted(self) -> int:
        """Requests holding a place now (being read or decoded, queued, or in the model)."""
        return self._admitted

    def reserve(self, n: int = 1) -> None:
        """Hold `n` places for requests about to be read and decoded; raises Busy when they do not fit."""
        if self._stopping or self._thread is None:
            raise Busy("the server is not accepting requests (starting or shutting down)")
        with self._lock:
            if self._admitted + n > self.capacity:
                raise Busy(f"{self._admitted} requests are already admitted (at most {self.capacity}); retry shortly")
            self._admitted += n

    def release(self, n: int = 1) -> None:
        """Give back `n` places (a request refused, or answered)."""
        with self._lock:
            self._admitted -= n

    def submit(self, item: Incoming, *, reserved: bool = False) -> Future:
        """Queue one request (`reserved`: its place was taken with `reserve`); its place is given back when its
        Future is done. Raises Busy when the queue is full or the server is shutting down."""
        if not reserved:
            self.reserve(1)
        if self._stopping or self._thread is None:
            if not reserved:  # a reserved place stays with its holder, who gives it back (Places.__exit__)
                self.release(1)
            raise Busy("the server is not accepting requests (starting or shutting down)")
        future: Future = Future()
        future.add_done_callback(lambda _: self.release(1))
        self._queue.put_nowait((item, future, time.perf_counter()))
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
                self._answer(live, self.holder.current)  # once per batch: a swap during the batch does not touch it
        while True:  # shutting down: nothing may wait forever
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is not _STOP and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(Busy("the server is shutting down"))

    def _answer(self, batch: list[tuple[Incoming, Future]], served) -> None:
        try:
            self.batches += 1
            predictions = served.model.predict([item.request for item, _ in batch], batch_size=len(batch))
        except Exception as e:
            self._failed(batch, served, e)
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

    def _failed(self, batch: list[tuple[Incoming, Future]], served, error: Exception) -> None:
        """A model call failed: fail only the requests that must. An error about the input (or memory) is narrowed
        down: the requests the model's own encoder refuses fail alone and the rest is answered in one more call;
        when no request can be blamed that way the batch is split in halves (about 2*log2(n) calls, not n). Any
        other error is the model's, not a request's: the whole batch fails with it."""
        if not _narrowable(error):
            log.error("model call failed for a batch of %d: %s: %s", len(batch), type(error).__name__, error)
            for _, fut in batch:
                fut.set_exception(error)
            return
        if len(batch) == 1:
            message = f"the model cannot take this request: {error}"
            batch[0][1].set_exception(RequestError(422, message) if _is_input(error) else error)
            return
        culprits = _culprits(batch, served)
        for i, reason in culprits.items():
            batch[i][1].set_exception(RequestError(422, f"the model cannot take this request: {reason}"))
        rest = [one for i, one in enumerate(batch) if i not in culprits]
        if culprits and rest:
            self._answer(rest, served)
        elif not culprits:
            half = len(batch) // 2
            self._answer(batch[:half], served)
            self._answer(batch[half:], served)


def _is_input(error: Exception) -> bool:
    """An error about a request's content: a UserError (too long for the context) or a processor's ValueError."""
    return isinstance(error, UserError | ValueError)


def _narrowable(error: Exception) -> bool:
    """Errors a smaller batch may not raise: the input's, or memory (a batch too big for the device)."""
    return _is_input(error) or isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def _culprits(batch: list[tuple[Incoming, Future]], served) -> dict[int, str]:
    """The requests the model's encoder refuses on their own (index -> reason), when the model exposes its
    `prompting` (a RoutedModel does); encoding is cheap next to a forward pass."""
    prompting = getattr(served.model, "prompting", None)
    if prompting is None:
        return {}
    from mllmcl.model.batching import encode

    culprits = {}
    for i, (item, _) in enumerate(batch):
        try:
            encode(prompting, item.request.question, item.request.image)
        except Exception as e:  # whatever the encoder raises for this request alone is this request's fault
            if _is_input(e):
                culprits[i] = " ".join(str(e).split())
    return culprits
