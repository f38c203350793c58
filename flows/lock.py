"""A project-wide lock so that two continual stages never run DVC stages at the same time. An OS file lock
(flock) dies with its holder, so a crashed run never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from mllmcl.errors import UserError
from mllmcl.paths import ProjectPaths

LOCK_NAME = "continual_stage.lock"


class StageBusy(UserError):
    """Another continual stage holds the lock for longer than this run was willing to wait."""


@contextmanager
def stage_lock(root: Path, *, wait_seconds: float = 0.0, poll: float = 0.2, holder: str = ""):
    """Hold the project's continual-stage lock for the `with` block, writing `holder` into the lock file; raises
    StageBusy when it is still taken after `wait_seconds`."""
    path = ProjectPaths(Path(root)).state / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    other = path.read_text(encoding="utf-8", errors="replace").strip() or "another run"
                    raise StageBusy(
                        f"a continual stage is already running ({other}); waited {wait_seconds:.0f} s for {path}"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{holder or 'pid ' + str(os.getpid())}\n".encode())
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
