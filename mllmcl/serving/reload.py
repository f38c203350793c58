"""Hot reload: a background thread polls the registry alias being served (`production`) and, when it moves, loads
the new version beside the old one, then swaps it in with one assignment. Requests keep being answered meanwhile
(batches already started finish on the old model); a version that fails to load is logged and the old one keeps
serving (it is tried again after a while, in case the failure was a passing storage error) while /health answers
503 until the alias names a version that loads (or the one served)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mllmcl.serving.models import ModelHolder, Served

log = logging.getLogger("mllmcl.serving")


class ReloadWatcher:
    """Every `interval` seconds: `resolve()` -> the version the alias names now; a new one is `load(version)`ed and
    swapped into `holder`. `last_error` keeps the latest failure for /health."""

    def __init__(
        self,
        holder: ModelHolder,
        resolve: Callable[[], str | None],
        load: Callable[[str], Served],
        interval: float,
        *,
        retry_after: float | None = None,
    ):
        self.holder = holder
        self.resolve = resolve
        self.load = load
        self.interval = interval
        self.retry_after = retry_after if retry_after is not None else max(60.0, 10 * interval)
        self.last_error: str | None = None
        self.reloads = 0
        self._failed: tuple[str, float] | None = None  # (version, when it may be tried again)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ReloadWatcher:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mllmcl-reload", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def unhealthy(self) -> str | None:
        """Why the server should get no traffic (None when it should): the alias names a version that failed to
        load, so what is served is no longer what the registry says production is."""
        failed = self._failed
        if failed is None:
            return None
        return f"registry alias names {failed[0]}, which could not be loaded: {self.last_error}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> bool:
        """One poll; True when a new version was loaded and swapped in."""
        try:
            version = self.resolve()
        except Exception as e:
            self._error(f"cannot read the registry alias: {e}")
            return False
        current = self.holder.current.version
        if not version or version == current:  # e.g. the alias rolled back to what is served: healthy again
            self._failed = None
            if version == current:
                self.last_error = None
            return False
        if self._failed and self._failed[0] == version and time.monotonic() < self._failed[1]:
            return False
        log.info("registry alias moved %s -> %s: loading it in the background", current, version)
        t0 = time.perf_counter()
        try:
            served = self.load(version)
        except Exception as e:
            self._failed = (version, time.monotonic() + self.retry_after)
            self._error(f"could not load {version}; still serving {current}: {type(e).__name__}: {e}")
            return False
        self.holder.swap(served)
        self._failed, self.last_error = None, None
        self.reloads += 1
        log.info("now serving %s (loaded in %.1f s; was %s)", version, time.perf_counter() - t0, current)
        return True

    def _error(self, message: str) -> None:
        self.last_error = " ".join(message.split())
        log.error("%s", self.last_error)
