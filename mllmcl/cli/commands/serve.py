"""`mllmcl serve`: the HTTP endpoint answering with the registry's `production` version (hot-reloaded when the alias
moves), micro-batched, every request written to the traffic log."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add `mllmcl serve`: host, port and the model to serve (default: the registry's production alias)."""
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the production model over HTTP (batched, hot-reloaded, traffic logged)",
        description="Serve routed answers over HTTP: POST /v1/predict takes JSON {question, image_base64?, id?}, "
        'a batch {"requests": [...]}, or a multipart upload (image file + question field) and answers '
        "{answer, expert, confidence, known, latency_ms, version}; GET /health and GET /version. Concurrent requests "
        "are answered together (serve.max_batch, serve.max_wait_ms). With --model production (the default) the "
        "registry alias is polled every serve.reload_seconds and a promoted version replaces the served one without "
        "dropping requests. Every answered request is appended to serve.traffic_dir/<UTC date>.jsonl for the drift "
        "monitor. Memory is bounded: bodies by serve.max_image_bytes (one request) and serve.max_body_bytes (a batch), "
        "checked while they stream in; images by serve.max_image_pixels, checked before decoding; requests in flight "
        "by serve.max_queue (503 beyond). GET /health is 503 while the alias names a version that cannot be loaded "
        "(the old one keeps answering). Defaults come from the `serve:` section of params.yaml.",
    )
    p.add_argument("--host", help="bind address (default: serve.host, 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default: serve.port; 0 = any free port)")
    p.add_argument(
        "--model",
        default="production",
        help="'production' (default: the registry alias, reloaded when it moves) or another alias, "
        "a registry version id (pinned), or 'workspace' (models/ of this project, no reload)",
    )
    p.set_defaults(handler=_serve)


def _serve(args) -> int:
    import logging

    from mllmcl.entry import load_params
    from mllmcl.errors import UserError
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths
    from mllmcl.serving.app import create_app
    from mllmcl.serving.models import WORKSPACE, ModelHolder, load_served, resolve_ref
    from mllmcl.serving.reload import ReloadWatcher
    from mllmcl.serving.server import serve_forever
    from mllmcl.serving.traffic import TrafficLog

    params = load_params(args)
    config = params.serve
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 0 and 65535")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threads = set_threads(params.compute.threads)
    paths = ProjectPaths(args.root)
    served = load_served(params, args.root, args.model)
    holder = ModelHolder(served)
    watcher = None
    if args.model != WORKSPACE and served.version != args.model:  # an alias: follow it
        from mllmcl.release.registry import Registry

        registry = Registry.from_params(params, root=args.root)  # one client, polled every reload_seconds
        watcher = ReloadWatcher(
            holder,
            lambda: resolve_ref(params, args.root, args.model, registry),
            lambda version: load_served(params, args.root, args.model, version=version),
            config.reload_seconds,
        )
    traffic = TrafficLog(paths.traffic(config.traffic_dir), keep_images=config.keep_images)
    app = create_app(holder, config, traffic, watcher=watcher)
    follow = f", following '{args.model}' every {config.reload_seconds:g} s" if watcher else ""
    print(
        f"serving {served.version} (tasks: {', '.join(served.tasks)}){follow} on http://{host}:{port} "
        f"with {threads} torch threads; traffic log: {traffic.folder}"
        + (" (port 0: uvicorn names the port)" if not port else ""),
        flush=True,
    )
    serve_forever(app, host, port)
    return 0
