"""How much memory `mllmcl serve`'s HTTP layer takes under hostile but legal-looking load: the peak RSS of a real
uvicorn server on 127.0.0.1 (a child process serving `create_app` with the `serve:` params of params.yaml and a stub
model that answers at once, so what is measured is reading, parsing and decoding, not the model) above its RSS at
rest. Each scenario gets a fresh server, so its peak is its own:

- max_single: 16 concurrent requests, each the largest image accepted (noise PNG just under serve.max_image_bytes);
- max_pixels_concurrent: 16 concurrent requests, each a solid PNG of serve.max_image_pixels (2048x2048, 12 MB RGB);
- bombs_concurrent: 16 concurrent requests, each a solid 4096x4096 PNG (a few kB on the wire, 50 MB decoded);
- bomb_batch: one JSON batch of 16 such PNGs;
- body_150mb: one 150 MB JSON body with its Content-Length; body_150mb_chunked: the same, chunked (no length).

Usage: python scripts/bench_serve_memory.py --out reports/benchmark/serve_memory.json"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = 16
TIMEOUT = 120.0


class Stub:
    """A model that answers every request at once: the benchmark measures the HTTP layer."""

    def predict(self, requests, *, batch_size=64):
        from types import SimpleNamespace

        return [SimpleNamespace(answer="ok", expert="base", confidence=1.0) for _ in requests]


def serve_config():
    """The `serve:` section of this checkout's params.yaml."""
    import yaml

    from mllmcl.config import ServeConfig

    raw = yaml.safe_load((ROOT / "params.yaml").read_text()).get("serve") or {}
    return ServeConfig(**raw)


def child(port_file: Path) -> None:
    """Serve the stub on a free loopback port; write the port to `port_file`; run until killed."""
    from mllmcl.serving.app import create_app
    from mllmcl.serving.models import ModelHolder, Served
    from mllmcl.serving.server import BackgroundServer

    app = create_app(ModelHolder(Served(Stub(), "bench", ["bench"], {"build": "stub"})), serve_config())
    with BackgroundServer(app) as server:
        port_file.write_text(server.url)
        threading.Event().wait()


def _status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


class Server:
    """A fresh server process for one scenario."""

    def __enter__(self):
        self.port_file = Path(tempfile.gettempdir()) / f"bench-serve-memory-{os.getpid()}-{time.monotonic_ns()}.url"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(self.port_file)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 120
        while not (self.port_file.exists() and self.port_file.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.1)
        self.url = self.port_file.read_text()
        import httpx

        httpx.post(f"{self.url}/v1/predict", json={"question": "warm up?"}, timeout=TIMEOUT)
        self.rest = _status(self.proc.pid)["VmRSS"]
        return self

    def peak(self) -> int:
        return _status(self.proc.pid)["VmHWM"] - self.rest

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.port_file.unlink(missing_ok=True)


def noise_png(max_bytes: int) -> bytes:
    """A random-noise RGB PNG (incompressible) as close under `max_bytes` as a square side gives."""
    import numpy as np
    from PIL import Image

    side = int((max_bytes / 3.05) ** 0.5)
    while True:
        pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
        side -= 16


def solid_png(side: int = 4096) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _concurrent(url: str, bodies: list[bytes]) -> list[int]:
    import httpx

    barrier, statuses = threading.Barrier(len(bodies)), [0] * len(bodies)

    def one(i: int) -> None:
        with httpx.Client(timeout=TIMEOUT) as c:
            barrier.wait()
            try:
                r = c.post(f"{url}/v1/predict", content=bodies[i], headers={"content-type": "application/json"})
                statuses[i] = r.status_code
            except httpx.HTTPError as e:
                statuses[i] = type(e).__name__

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 10)
    return statuses


def _chunks(body: bytes, size: int = 1 << 20):
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _one(url: str, body: bytes, chunked: bool) -> list[int | str]:
    import httpx

    content = _chunks(body) if chunked else body
    try:
        r = httpx.post(
            f"{url}/v1/predict", content=content, headers={"content-type": "application/json"}, timeout=TIMEOUT
        )
        return [r.status_code]
    except httpx.HTTPError as e:  # a server that refuses early may close the connection while the client still sends
        return [type(e).__name__]


def scenarios(config, image_bytes: int | None = None) -> dict:
    """Scenario name -> (description, function(url) -> statuses)."""
    q = "what colour is the square?"
    big = base64.b64encode(noise_png(image_bytes or config.max_image_bytes)).decode()
    bomb = base64.b64encode(solid_png()).decode()
    single = json.dumps({"question": q, "image_base64": big}).encode()
    bomb_one = json.dumps({"question": q, "image_base64": bomb}).encode()
    side = int(getattr(config, "max_image_pixels", 2048 * 2048) ** 0.5)
    widest = json.dumps({"question": q, "image_base64": base64.b64encode(solid_png(side)).decode()}).encode()
    bomb_batch = json.dumps({"requests": [{"question": q, "image_base64": bomb}] * N}).encode()
    huge = json.dumps({"question": q, "image_base64": "A" * 150_000_000}).encode()
    return {
        "max_single": (
            f"{N} concurrent requests, each a {len(single)}-byte body",
            lambda u: _concurrent(u, [single] * N),
        ),
        "bombs_concurrent": (
            f"{N} concurrent requests, each a solid 4096x4096 PNG ({len(bomb_one)}-byte body)",
            lambda u: _concurrent(u, [bomb_one] * N),
        ),
        "max_pixels_concurrent": (
            f"{N} concurrent requests, each a solid {side}x{side} PNG (the most pixels accepted)",
            lambda u: _concurrent(u, [widest] * N),
        ),
        "bomb_batch": (
            f"one batch of {N} solid 4096x4096 PNGs ({len(bomb_batch)} bytes)",
            lambda u: _one(u, bomb_batch, False),
        ),
        "body_150mb": (f"one {len(huge)}-byte JSON body, Content-Length given", lambda u: _one(u, huge, False)),
        "body_150mb_chunked": (f"one {len(huge)}-byte JSON body, chunked", lambda u: _one(u, huge, True)),
    }


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mllmcl/serving"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("+dirty(mllmcl/serving)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="JSON report (default: print only)")
    ap.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    ap.add_argument("--image-bytes", type=int, help="image size of max_single (default: serve.max_image_bytes)")
    ap.add_argument("--before", type=Path, help="an earlier run's JSON, embedded as 'before' (old code vs new)")
    ap.add_argument("--label", default="", help="free text kept in the report (e.g. which code was measured)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    config = serve_config()
    results = {}
    for name, (what, run) in scenarios(config, args.image_bytes).items():
        if args.only and name not in args.only:
            continue
        with Server() as server:
            t0 = time.perf_counter()
            statuses = run(server.url)
            seconds = time.perf_counter() - t0
            alive = _status(server.proc.pid) is not None and server.proc.poll() is None
            results[name] = {
                "what": what,
                "statuses": sorted({str(s): statuses.count(s) for s in statuses}.items()),
                "seconds": round(seconds, 2),
                "rest_rss_mb": round(server.rest / 2**20, 1),
                "peak_rss_growth_mb": round(server.peak() / 2**20, 1),
                "server_alive": alive,
            }
        print(
            f"{name:20s} +{results[name]['peak_rss_growth_mb']:8.1f} MB peak RSS  {seconds:6.2f} s  {results[name]['statuses']}"
        )
    report = {
        "commit": commit(),
        "label": args.label,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "serve": config.model_dump(),
        "model": "stub (answers at once): the HTTP layer's memory only",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": results,
    }
    if args.before:
        report["before"] = json.loads(args.before.read_text())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
