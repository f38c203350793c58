"""Running the app with uvicorn: in the foreground for `mllmcl serve`, or in a background thread on a free loopback
port for tests and the benchmark (started and stopped by a context manager)."""

from __future__ import annotations

import threading
import time


class BackgroundServer:
    """uvicorn serving `app` from a thread; `with BackgroundServer(app) as s:` gives `s.url` once it accepts
    connections and shuts it down (lifespan included) on exit."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="mllmcl-uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(60)


def serve_forever(app, host: str, port: int) -> None:
    """Serve `app` until interrupted (Ctrl-C / SIGTERM end it cleanly: queued requests are answered first)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")
