"""Hot reload against a real local registry: while clients keep sending requests, promoting a new version swaps the
served model without a single failed request and /version follows; promoting a version that cannot be loaded
(a corrupted file: checksum mismatch) keeps the old one serving and makes /health 503. Also `mllmcl serve` refuses,
in one line, a registry whose production alias was never set."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest

from mllmcl.paths import ProjectPaths
from mllmcl.release.candidate import candidate_files
from mllmcl.release.registry import Registry, candidate_id
from mllmcl.serving.app import create_app
from mllmcl.serving.models import ModelHolder, load_served, resolve_ref
from mllmcl.serving.reload import ReloadWatcher
from mllmcl.serving.server import BackgroundServer
from mllmcl.serving.traffic import TrafficLog
from tests.serving.conftest import b64, png


def _publish(registry: Registry, files: dict, params) -> str:
    version = candidate_id(files)
    registry.publish(version, files, {"tasks": list(params.tasks), "base": {"build": "tiny", "name_or_path": None}})
    return version


def _variant(root, files: dict, tag: str, min_confidence: float) -> dict:
    """The workspace's files with a router whose pool.json differs (another content id, still loadable)."""
    router = root / f"router-{tag}"
    shutil.copytree(ProjectPaths(root).router, router)
    pool = json.loads((router / "pool.json").read_text())
    (router / "pool.json").write_text(json.dumps({**pool, "min_confidence": min_confidence}))
    return {rel: (router / rel.split("/", 1)[1] if rel.startswith("router/") else p) for rel, p in files.items()}


def _wait_for(check, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_promoting_a_version_swaps_the_model_without_failing_a_request(serving_project):
    root, params = serving_project
    registry = Registry.from_params(params, root)
    files = candidate_files(params, ProjectPaths(root))
    v1 = _publish(registry, files, params)
    v2 = _publish(registry, _variant(root, files, "two", 0.45), params)
    v3 = _publish(registry, _variant(root, files, "three", 0.4), params)
    registry.store.put_bytes(f"m/versions/{v3}/router/pool.json", b'{"corrupted": true}')  # v3 fails its checksum
    registry.promote(v1)

    holder = ModelHolder(load_served(params, root, "production"))
    assert holder.current.version == v1
    watcher = ReloadWatcher(
        holder,
        lambda: resolve_ref(params, root, "production"),
        lambda version: load_served(params, root, "production", version=version),
        interval=0.2,
    )
    app = create_app(holder, params.serve, TrafficLog(root / "traffic-reload"), watcher=watcher)
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client(i: int) -> None:
        body = {"question": "what colour is the square?", "image_base64": b64(png(root, "colour", i))}
        with httpx.Client(base_url=server.url, timeout=120) as c:
            while not stop.is_set():
                r = c.post("/v1/predict", json=body)
                results.append((r.status_code, r.json().get("version")))

    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/version").json()["version"] == v1
        clients = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in clients:
            t.start()
        try:
            _wait_for(lambda: len(results) >= 5)
            registry.promote(v2, reason="test")
            _wait_for(lambda: c.get("/version").json()["version"] == v2)
            n = len(results)
            _wait_for(lambda: len(results) >= n + 5)

            registry.promote(v3, reason="broken on purpose")
            _wait_for(lambda: c.get("/health").json()["reload_error"] is not None)
            n = len(results)
            _wait_for(lambda: len(results) >= n + 5)
        finally:
            stop.set()
            for t in clients:
                t.join(120)
        r = c.get("/health")  # a load balancer stops sending traffic here; the old version keeps answering
        health = r.json()
        assert r.status_code == 503 and health["status"] == "unhealthy" and v3 in health["reason"], health
        assert health["version"] == v2 and v3 in health["reload_error"] and "checksum" in health["reload_error"]
        assert c.get("/version").json()["version"] == v2  # the broken version never replaced the working one
        version = c.get("/version").json()
        assert version["tasks"] == ["colour", "where"] and version["ref"] == "production"

    assert results and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    versions = [v for _, v in results]
    assert v1 in versions and v2 in versions and v3 not in versions
    assert versions.index(v2) > versions.index(v1)
    assert watcher.reloads == 1


def test_serve_without_a_production_version_is_a_one_line_user_error(serving_project, tmp_path, capsys):
    from mllmcl.cli.main import main

    root, _ = serving_project
    other = tmp_path / "params.yaml"
    other.write_text((root / "params.yaml").read_text().replace("uri: registry", f"uri: {tmp_path / 'empty'}"))
    assert main(["--root", str(root), "--params", str(other), "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "alias 'production' is not set" in err and "\n" not in err


def test_serve_help_names_the_endpoints(capsys):
    from mllmcl.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "/v1/predict" in out and "--model" in out and "127.0.0.1" in out
