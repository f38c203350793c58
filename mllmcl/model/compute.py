"""How many CPU threads torch may use. Oversubscribing a busy machine (more threads than free cores) made a
training step about ten times slower here, so `auto` takes only the cores that are idle when a stage starts."""

from __future__ import annotations

import os


def free_cores() -> int:
    """Cores this process may use minus the other runnable tasks right now (from /proc/loadavg)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0]) - 1  # this process is one of them
    except (OSError, ValueError, IndexError):
        running = 0
    return max(1, min(cores, cores - max(0, running)))


def resolve_threads(threads: int | str) -> int:
    """`compute.threads` as a number: 'auto' is the cores idle right now (free_cores), anything else is taken as
    given."""
    return free_cores() if threads == "auto" else int(threads)


def set_threads(threads: int | str) -> int:
    """Apply `compute.threads` to torch; returns the number chosen (recorded in training stats)."""
    import torch

    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n
