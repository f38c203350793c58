"""`compute.threads: auto` takes the cores other processes leave idle, and never counts this process's own threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mllmcl.model.compute import free_cores, resolve_threads


def test_auto_leaves_a_core_to_a_busy_neighbour_and_ignores_its_own_threads():
    import torch

    cores = len(os.sched_getaffinity(0))
    a = torch.rand(400, 400)
    (a @ a).sum()  # torch's own worker threads may now spin: they are not load
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert free_cores() <= max(1, cores - 1)
    finally:
        busy.kill()
        busy.wait()
    assert resolve_threads(3) == 3 and 1 <= resolve_threads("auto") <= cores
