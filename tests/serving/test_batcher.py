"""The micro-batcher with a fake model (no HTTP, no torch): batches never exceed max_batch, one request the model
refuses fails alone, a batch in flight finishes on the model it started with when another is swapped in, and a full
queue or a stopped worker refuses instead of hanging."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from mllmcl.continual.inference import Request
from mllmcl.errors import DataError
from mllmcl.serving.batcher import Busy, MicroBatcher
from mllmcl.serving.models import ModelHolder, Served
from mllmcl.serving.requests import Incoming, RequestError


class Fake:
    def __init__(self, name: str, delay: float = 0.0, started: threading.Event | None = None):
        self.name, self.delay, self.started, self.sizes = name, delay, started, []

    def predict(self, requests, *, batch_size=64):
        self.sizes.append(len(requests))
        if self.started is not None:
            self.started.set()
        time.sleep(self.delay)
        if any("boom" in r.question for r in requests):
            raise DataError("question longer than the model's context")
        if any("odd" in r.question for r in requests):  # what an HF image processor raises on a 5x1-pixel image
            raise ValueError("Unable to infer channel dimension format")
        return [SimpleNamespace(answer=self.name, expert="colour", confidence=1.0) for _ in requests]


def _item(q: str = "q?") -> Incoming:
    return Incoming(Request(q), arrived=time.perf_counter())


def _served(model) -> Served:
    return Served(model, model.name, ["colour"], {"build": "tiny"})


def test_batches_are_bounded_and_a_refused_request_fails_alone():
    model = Fake("v1", delay=0.05)
    batcher = MicroBatcher(ModelHolder(_served(model)), max_batch=4, max_wait_ms=50).start()
    try:
        futures = [batcher.submit(_item("boom" if i == 2 else f"q{i}?")) for i in range(10)]
        with pytest.raises(RequestError) as refused:
            futures[2].result(30)
        assert refused.value.status == 422 and "context" in refused.value.message
        answers = [f.result(30) for i, f in enumerate(futures) if i != 2]
    finally:
        batcher.stop()
    assert all(a.prediction.answer == "v1" and a.version == "v1" for a in answers)
    assert max(model.sizes) <= 4 and model.sizes[0] > 1
    assert all(a.latency_ms > 0 for a in answers)


def test_a_batch_in_flight_finishes_on_its_model_when_another_is_swapped_in():
    started = threading.Event()
    old, new = Fake("old", delay=0.5, started=started), Fake("new")
    holder = ModelHolder(_served(old))
    batcher = MicroBatcher(holder, max_batch=8, max_wait_ms=0).start()
    try:
        first = batcher.submit(_item())
        assert started.wait(10)
        holder.swap(_served(new))  # while `old` is answering
        second = batcher.submit(_item())
        assert first.result(10).version == "old" and first.result().prediction.answer == "old"
        assert second.result(10).version == "new"
    finally:
        batcher.stop()


def test_a_full_queue_or_a_stopped_worker_refuses():
    started = threading.Event()
    batcher = MicroBatcher(ModelHolder(_served(Fake("v", delay=0.3, started=started))), max_batch=1, max_wait_ms=0)
    with pytest.raises(Busy):
        batcher.submit(_item())  # not started
    batcher = MicroBatcher(
        ModelHolder(_served(Fake("v", delay=0.3, started=started))), max_batch=1, max_wait_ms=0, max_queue=3
    ).start()
    try:
        batcher.submit(_item())
        assert started.wait(10)  # the one in the model still holds its place; two more fill the queue
        batcher.submit(_item())
        batcher.submit(_item())
        with pytest.raises(Busy, match="already admitted"):
            batcher.submit(_item())
    finally:
        batcher.stop()
    with pytest.raises(Busy):
        batcher.submit(_item())


def test_an_input_the_processor_chokes_on_fails_alone_as_a_422():
    model = Fake("v1", delay=0.05)
    batcher = MicroBatcher(ModelHolder(_served(model)), max_batch=4, max_wait_ms=50).start()
    try:
        futures = [batcher.submit(_item("odd" if i == 1 else f"q{i}?")) for i in range(4)]
        with pytest.raises(RequestError) as refused:
            futures[1].result(30)
        assert refused.value.status == 422 and "channel dimension" in refused.value.message
        assert all(f.result(30).prediction.answer == "v1" for i, f in enumerate(futures) if i != 1)
    finally:
        batcher.stop()
