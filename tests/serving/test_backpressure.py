"""A full queue over real HTTP on 127.0.0.1: a JSON batch is all or nothing. When only part of it fits, none of it is
queued (its places are taken before any image is decoded), so the client's retry after the 503 does no work twice
(and logs no traffic twice)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

from mllmcl.config import ServeConfig
from mllmcl.serving.app import create_app
from mllmcl.serving.models import ModelHolder, Served
from mllmcl.serving.server import BackgroundServer


class Slow:
    """The first call blocks until released, so that the queue behind it fills up."""

    def __init__(self):
        self.release, self.seen = threading.Event(), []

    def predict(self, requests, *, batch_size=64):
        if not self.seen:
            self.release.wait(30)
        self.seen.extend(r.question for r in requests)
        return [SimpleNamespace(answer="ok", expert="base", confidence=1.0) for _ in requests]


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_batch_that_does_not_fit_is_withdrawn_whole():
    model = Slow()
    config = ServeConfig(max_batch=2, max_wait_ms=0, max_queue=17)  # one running, 15 waiting: one place left
    app = create_app(ModelHolder(Served(model, "v1", ["colour"], {"build": "tiny"})), config)
    with BackgroundServer(app) as server:
        url = f"{server.url}/v1/predict"
        statuses: list[int] = []
        first = threading.Thread(target=lambda: statuses.append(_post(url, {"question": "running"})))
        first.start()
        while not app.state.batcher.batches:  # the worker has taken it and is blocked in the model
            time.sleep(0.01)
        waiting = [
            threading.Thread(target=lambda i=i: statuses.append(_post(url, {"question": f"queued {i}"})))
            for i in range(15)
        ]
        for t in waiting:
            t.start()
        while app.state.batcher.queued < 15:
            time.sleep(0.01)
        batch = {"requests": [{"question": "batch 0"}, {"question": "batch 1"}]}  # one slot left, two items
        assert _post(url, batch) == 503
        model.release.set()
        for t in [first, *waiting]:
            t.join(60)
    assert statuses.count(200) == 16
    assert "batch 0" not in model.seen and "batch 1" not in model.seen
