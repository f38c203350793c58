"""The server's memory and work are bounded, over real HTTP on 127.0.0.1 with the default `serve:` params and a stub
model: a body over the limit is refused while it streams in (the server never holds it), a decompression bomb is
refused before it is decoded, one bad request in a batch fails alone (the others answered in one model call), a
multipart upload carries one image, `mllmcl predict` refuses files that never end or block, and /health tells a
load balancer to go away when the registry names a version the server cannot load."""

from __future__ import annotations

import io
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from mllmcl.config import ServeConfig
from mllmcl.continual.inference import Request
from mllmcl.errors import DataError, ModelLoadError
from mllmcl.serving.app import create_app
from mllmcl.serving.batcher import MicroBatcher
from mllmcl.serving.models import ModelHolder, Served
from mllmcl.serving.reload import ReloadWatcher
from mllmcl.serving.requests import Incoming, RequestError, max_body_bytes
from mllmcl.serving.server import BackgroundServer
from tests import toy
from tests.serving.conftest import b64

REPO = Path(__file__).resolve().parents[2]


class Stub:
    """Answers at once and records its calls; like an HF image processor it chokes on an image with a side under 8
    pixels, and a question saying "boom" is too long for its context."""

    def __init__(self):
        self.sizes: list[int] = []

    def predict(self, requests, *, batch_size=64):
        self.sizes.append(len(requests))
        if any(r.image is not None and min(r.image.size) < 8 for r in requests):
            raise ValueError("Unable to infer channel dimension format")
        if any("boom" in r.question for r in requests):
            raise DataError("the question is 9000 tokens; the base's context holds 512")
        return [SimpleNamespace(answer="ok", expert="base", confidence=1.0) for _ in requests]


@contextmanager
def serving(config: ServeConfig | None = None, model=None, watcher=None):
    model = model or Stub()
    holder = watcher.holder if watcher else ModelHolder(Served(model, "v1", ["colour"], {"build": "tiny"}))
    app = create_app(holder, config or ServeConfig(), watcher=watcher)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield SimpleNamespace(url=server.url, client=client, model=model, app=app)


def _png(w: int, h: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (w, h), 120).save(buf, "PNG")
    return buf.getvalue()


def _reset_peak_rss() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _peak_rss()


def _peak_rss() -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _one_line_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    message = r.json()["error"]
    assert "\n" not in message and len(message) < 400, message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_a_body_over_the_limit_is_refused_while_it_streams_in():
    config = ServeConfig()
    limit = max_body_bytes(config)
    payload = b'{"question": "q?", "image_base64": "' + b"A" * 150_000_000 + b'"}'
    with serving(config) as s:
        host, port = s.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:  # the length alone is enough to refuse
            sock.sendall(
                f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n".encode()
            )
            head = sock.recv(65536).decode(errors="replace")
        assert head.startswith("HTTP/1.1 413") and f"at most {limit}" in head, head[:300]

        chunks = (payload[i : i + (1 << 20)] for i in range(0, len(payload), 1 << 20))
        before = _reset_peak_rss()
        r = s.client.post("/v1/predict", content=chunks, headers={"content-type": "application/json"})  # chunked
        growth = _peak_rss() - before
        _one_line_error(r, 413, f"over {limit} bytes")
        assert growth < limit + 40_000_000, f"RSS grew {growth / 2**20:.0f} MB for a refused body"
        assert s.client.post("/v1/predict", json={"question": "still there?"}).status_code == 200
    assert limit <= 40_000_000  # a batch of large images, not 171 MB


def test_a_decompression_bomb_is_refused_before_it_is_decoded_and_a_large_jpeg_is_decoded_small():
    from PIL import Image

    from mllmcl.serving.images import decode_image

    bomb = _png(4096, 4096)  # ~50 kB on the wire, 50 MB decoded
    assert len(bomb) < 200_000
    with serving() as s:
        before = _reset_peak_rss()
        r = s.client.post("/v1/predict", json={"question": "what colour?", "image_base64": b64(bomb)})
        _one_line_error(r, 413, "4096x4096", "pixels")
        batch = {"requests": [{"question": "q?", "image_base64": b64(bomb)}] * 16}
        _one_line_error(s.client.post("/v1/predict", json=batch), 413, "requests[0]", "pixels")
        assert _peak_rss() - before < 40_000_000
        assert s.model.sizes == [] and s.app.state.batcher.admitted == 0  # nothing queued, every place given back

    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(buf, "JPEG")  # a phone photo: 12 Mpixels
    image = decode_image(buf.getvalue(), max_bytes=5_000_000, max_pixels=2048 * 2048)
    assert image.size == (2000, 1500) and image.mode == "RGB"  # decoded at half scale, never at full size


def test_one_bad_request_among_concurrent_ones_fails_alone_and_the_model_runs_once():
    n = 8
    with serving(ServeConfig(max_batch=n, max_wait_ms=2000)) as s:
        barrier, results = threading.Barrier(n), [None] * n

        def client(i: int) -> None:
            image = _png(5, 1) if i == 3 else _png(16, 16)
            with httpx.Client(base_url=s.url, timeout=60) as c:
                barrier.wait()
                results[i] = c.post("/v1/predict", json={"question": f"q{i}?", "image_base64": b64(image), "id": i})

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        _one_line_error(results[3], 400, "5x1", "at least 8")
        assert all(r.status_code == 200 for i, r in enumerate(results) if i != 3), [r.text for r in results]
        assert s.model.sizes == [n - 1]  # refused before batching: the others shared ONE model call


def test_a_request_the_model_refuses_in_a_json_batch_fails_alone():
    with serving() as s:
        batch = {"requests": [{"question": "a?", "id": "a"}, {"question": "boom?", "id": "b"}, {"question": "c?"}]}
        r = s.client.post("/v1/predict", json=batch)
        assert r.status_code == 200, r.text
        a, b, c = r.json()["predictions"]
        assert a["answer"] == "ok" and c["answer"] == "ok"
        assert b["id"] == "b" and b["status"] == 422 and "requests[1]" in b["error"] and "context" in b["error"]


def _batch(batcher: MicroBatcher, questions: list[str]) -> list:
    return [batcher.submit(Incoming(Request(q), arrived=0.0)) for q in questions]


def test_a_failed_model_call_is_narrowed_down_not_rerun_one_by_one(monkeypatch):
    questions = [f"q{i}?" for i in range(8)]
    questions[5] = "boom?"

    model = Stub()  # nothing tells which request failed: halves, about 2*log2(n) calls instead of n + 1
    batcher = MicroBatcher(ModelHolder(Served(model, "v", [], {})), max_batch=8, max_wait_ms=1000)
    futures = _batch(batcher.start(), questions)
    try:
        with pytest.raises(RequestError, match="context"):
            futures[5].result(30)
        assert all(f.result(30).prediction.answer == "ok" for i, f in enumerate(futures) if i != 5)
    finally:
        batcher.stop()
    assert model.sizes[0] == 8 and len(model.sizes) <= 1 + 2 * 3, model.sizes

    def encode(prompting, question, image=None):  # what the model's own encoder says about one request
        if "boom" in question:
            raise DataError("the question is 9000 tokens; the base's context holds 512")

    monkeypatch.setattr("mllmcl.model.batching.encode", encode)
    model = Stub()
    model.prompting = object()  # a RoutedModel exposes its encoder: the culprit is found without a model call
    batcher = MicroBatcher(ModelHolder(Served(model, "v", [], {})), max_batch=8, max_wait_ms=1000)
    futures = _batch(batcher.start(), questions)
    try:
        with pytest.raises(RequestError, match="context"):
            futures[5].result(30)
        assert all(f.result(30).prediction.answer == "ok" for i, f in enumerate(futures) if i != 5)
    finally:
        batcher.stop()
    assert model.sizes == [8, 7]


def test_a_multipart_upload_with_two_images_is_refused():
    with serving() as s:
        files = [("image", ("a.png", _png(16, 16), "image/png")), ("image", ("b.png", _png(32, 32), "image/png"))]
        r = s.client.post("/v1/predict", data={"question": "which one?"}, files=files)
        _one_line_error(r, 400, "more than one 'image'")
        r = s.client.post("/v1/predict", data={"question": "this one?"}, files=files[:1])
        assert r.status_code == 200, r.text


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (4 << 30, 4 << 30))  # an unbounded read fails instead of eating the host


def _predict(tmp_path: Path, image: str, timeout: float = 60) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(toy.raw_params(), sort_keys=False))
    command = [sys.executable, "-m", "mllmcl.cli.main", "--root", str(tmp_path), "predict", "--question", "q?"]
    return subprocess.run(
        [*command, "--image", image],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,  # the old code blocked on a FIFO for ever
        preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "too large"])
def test_predict_refuses_an_image_that_is_not_a_bounded_regular_file(tmp_path, kind):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "pipe.png", "directory": tmp_path / "dir.png"}.get(
        kind, tmp_path / "big.png"
    )
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "too large":
        path.write_bytes(_png(16, 16) + b"\0" * ServeConfig().max_image_bytes)
    done = _predict(tmp_path, str(path))
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    err = done.stderr.strip()
    assert "\n" not in err and str(path) in err and "Traceback" not in err, err
    assert ("bytes" if kind == "too large" else "not a regular") in err, err


def test_health_is_503_while_the_alias_names_a_version_that_cannot_be_loaded():
    holder = ModelHolder(Served(Stub(), "v1", ["colour"], {"build": "tiny"}))
    alias = {"production": "v1"}

    def load(version: str) -> Served:
        raise ModelLoadError(f"{version}: router/pool.json: checksum mismatch (the registry's copy is corrupted)")

    watcher = ReloadWatcher(holder, lambda: alias["production"], load, interval=3600)  # polled by hand below
    with serving(watcher=watcher) as s:
        assert s.client.get("/health").status_code == 200
        alias["production"] = "v2"
        assert watcher.check_once() is False
        r = s.client.get("/health")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unhealthy" and "v2" in body["reason"] and "checksum" in body["reason"], body
        assert body["version"] == "v1"
        r = s.client.post("/v1/predict", json={"question": "still answering?"})
        assert r.status_code == 200 and r.json()["version"] == "v1"  # the old model keeps serving meanwhile
        alias["production"] = "v1"  # rolled back to what is served
        watcher.check_once()
        assert s.client.get("/health").status_code == 200 and s.client.get("/health").json()["status"] == "ok"


class Blocking(Stub):
    """Holds its first call until released, so that the server fills up behind it."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def predict(self, requests, *, batch_size=64):
        self.release.wait(30)
        return super().predict(requests, batch_size=batch_size)


def test_a_full_server_refuses_before_decoding(monkeypatch):
    from mllmcl.serving import app as app_module

    decoded = []

    def counting(parsed, *args, **kwargs):
        decoded.append(parsed.image_bytes is not None)
        return decode(parsed, *args, **kwargs)

    decode = app_module.decode
    monkeypatch.setattr(app_module, "decode", counting)
    model = Blocking()
    with serving(ServeConfig(max_batch=1, max_wait_ms=0, max_queue=2), model) as s:

        def ask(question: str) -> None:
            with httpx.Client(base_url=s.url, timeout=60) as c:
                c.post("/v1/predict", json={"question": question})

        waiting = [threading.Thread(target=ask, args=(f"{i}?",)) for i in range(2)]
        try:
            for t in waiting:
                t.start()
            deadline = time.monotonic() + 30
            while s.app.state.batcher.admitted < 2:  # one in the model, one queued: full
                assert time.monotonic() < deadline, "the server never filled up"
                time.sleep(0.01)
            r = s.client.post("/v1/predict", json={"question": "q?", "image_base64": b64(_png(64, 64))})
            _one_line_error(r, 503, "retry")
            assert r.headers["retry-after"] == "1" and not any(decoded)  # refused before its image was decoded
        finally:
            model.release.set()
            for t in waiting:
                t.join(30)


def test_idle_sockets_that_promise_big_bodies_hold_no_places_and_time_out():
    """Eight connections declare a 30 MB body and send nothing: places are held for bytes received, not promised, so
    a real request is still answered, and each idle one gets a 408 when serve.body_timeout_s runs out."""
    config = ServeConfig(body_timeout_s=2.0)
    with serving(config) as s:
        host, port = s.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(8)]
        try:
            for sock in idle:
                sock.sendall(
                    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 30000000\r\n\r\n"
                )
            time.sleep(0.3)  # the server has read every head and is waiting for the bodies
            r = s.client.post("/v1/predict", json={"question": "still there?"})
            assert r.status_code == 200, r.text
            head = idle[0].recv(65536).decode(errors="replace")
            assert head.startswith("HTTP/1.1 408") and "within 2 s" in head, head[:300]
        finally:
            for sock in idle:
                sock.close()
