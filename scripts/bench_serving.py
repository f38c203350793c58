"""Benchmark of `mllmcl serve` on loopback, against the embedded model (the workspace's models/ or a registry
version): p50/p99 latency and requests/s at concurrency 1 and 16 through the real HTTP stack (micro-batching
included), and the speed-up of one mixed-adapter pass per batch (`RoutedModel.predict`) over one pass per expert
(`RoutedModel.predict_grouped`) on the same request mix. Printed and written to reports/benchmark/serving.json.
The HTTP clients run in the same process as the server (threads): numbers include their share of the CPU."""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path


def _mix(params, paths, n: int) -> list[dict]:
    """n requests taken in turn from every learned task's test set (JSON bodies, images inline)."""
    from mllmcl.data.images import read_image_bytes
    from mllmcl.data.records import read_records

    per_task = []
    for task in params.tasks:
        folder = paths.task_data(task)
        rows = read_records(folder / "test.jsonl")[:n]
        bodies = []
        for r in rows:
            body = {"question": r["question"], "id": r["id"]}
            if r.get("image"):
                body["image_base64"] = base64.b64encode(read_image_bytes(folder / r["image"])).decode()
            bodies.append(body)
        per_task.append(bodies)
    out = []
    while len(out) < n and any(per_task):
        for bodies in per_task:
            if bodies and len(out) < n:
                out.append(bodies.pop(0))
    return out


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _load(url: str, bodies: list[dict], concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    next_i = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post("/v1/predict", json=bodies[i])
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    (latencies.append(ms) if r.status_code == 200 else failures.append(f"{r.status_code} {r.text}"))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "failed": len(failures),
        "p50_ms": round(_percentile(latencies, 0.5), 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99), 1) if latencies else None,
        "requests_per_s": round(len(latencies) / wall, 2),
        "wall_s": round(wall, 2),
    }


def _mixed_vs_grouped(model, bodies: list[dict], batch: int, repeats: int) -> dict:
    from mllmcl.continual.inference import Request
    from mllmcl.serving.images import decode_image

    requests = [
        Request(
            b["question"],
            decode_image(base64.b64decode(b["image_base64"]), max_bytes=1 << 30) if b.get("image_base64") else None,
            b["id"],
        )
        for b in bodies[:batch]
    ]
    experts = [p.expert for p in model.predict(requests, batch_size=batch)]  # warm-up, and the routes of the mix
    times = {"mixed": [], "grouped": []}
    for _ in range(repeats):  # interleaved, so a change of machine load hits both alike
        t0 = time.perf_counter()
        model.predict(requests, batch_size=batch)
        times["mixed"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.predict_grouped(requests, batch_size=batch)
        times["grouped"].append(time.perf_counter() - t0)
    mixed, grouped = statistics.median(times["mixed"]), statistics.median(times["grouped"])
    return {
        "batch": len(requests),
        "repeats": repeats,
        "routes": {e: experts.count(e) for e in sorted(set(experts))},
        "mixed_ms": round(mixed * 1000, 1),
        "grouped_ms": round(grouped * 1000, 1),
        "speedup": round(grouped / mixed, 2),
    }


def main(a) -> int:
    from mllmcl.entry import load_params
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths
    from mllmcl.serving.app import create_app
    from mllmcl.serving.models import ModelHolder, load_served
    from mllmcl.serving.server import BackgroundServer
    from mllmcl.serving.traffic import TrafficLog

    params = load_params(a)
    paths = ProjectPaths(a.root)
    threads = set_threads(params.compute.threads)
    served = load_served(params, a.root, a.model)
    bodies = _mix(params, paths, max(a.requests, params.serve.max_batch))
    out = a.out or paths.benchmark_reports / "serving.json"
    print(f"model {served.version} ({', '.join(served.tasks)}), {threads} torch threads, {len(bodies)} requests")

    holder = ModelHolder(served)
    levels = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(holder, params.serve, TrafficLog(Path(tmp)))
        with BackgroundServer(app) as server:
            _load(server.url, bodies[:4], 1)  # warm-up
            for concurrency in (1, 16):
                before = app.state.batcher.batches
                row = _load(server.url, bodies[: a.requests], concurrency)
                row["model_calls"] = app.state.batcher.batches - before
                levels.append(row)
                print(
                    f"concurrency {concurrency:2d}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"{row['requests_per_s']} req/s, {row['model_calls']} model calls for {row['requests']} requests"
                    + (f", {row['failed']} FAILED" if row["failed"] else "")
                )
    batching = _mixed_vs_grouped(served.model, bodies, params.serve.max_batch, a.repeats)
    print(
        f"one batch of {batching['batch']} (routes {batching['routes']}): mixed adapters {batching['mixed_ms']} ms, "
        f"one pass per expert {batching['grouped_ms']} ms: speed-up x{batching['speedup']}"
    )
    result = {
        "model": served.version,
        "tasks": served.tasks,
        "torch_threads": threads,
        "serve": {"max_batch": params.serve.max_batch, "max_wait_ms": params.serve.max_wait_ms},
        "http": levels,
        "mixed_vs_grouped": batching,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if not any(row["failed"] for row in levels) else 1


if __name__ == "__main__":
    from mllmcl.entry import add_common_options, main_of

    parser = add_common_options(argparse.ArgumentParser(description=__doc__))
    parser.add_argument(
        "--model", default="workspace", help="'workspace' (models/, default), 'production' or a registry version id"
    )
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level (default: 48)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of mixed vs grouped (default: 5)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON to write (default: reports/benchmark/serving.json)"
    )
    main_of(main, parser)
