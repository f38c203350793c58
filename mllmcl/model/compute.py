"""How many CPU threads torch may use. Oversubscribing a busy machine (more threads than free cores) made a
training step about ten times slower here, so `auto` takes only the cores that other processes leave idle when a
stage starts."""

from __future__ import annotations

import os
import time


def _own_running_threads() -> int:
    """This process's threads in state R (torch's OpenMP workers spin after parallel work: they are ours, not load)."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)


def _others_running() -> int | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - _own_running_threads())


def free_cores(samples: int = 5, interval: float = 0.05) -> int:
    """Cores this process may use minus what other processes keep busy, from a few looks at /proc/loadavg (the least
    busy look wins: a transient spike, such as DVC hashing, is not load)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    looks = []
    for i in range(samples):
        others = _others_running()
        if others is None:
            return cores
        looks.append(others)
        if i + 1 < samples:
            time.sleep(interval)
    return max(1, min(cores, cores - min(looks)))


def resolve_threads(threads: int | str) -> int:
    """`compute.threads` as a number: `auto` = the free cores now (see `free_cores`)."""
    return free_cores() if threads == "auto" else int(threads)


def set_threads(threads: int | str) -> int:
    """Apply `compute.threads` to torch; returns the number chosen (recorded in training stats)."""
    import torch

    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n


def world() -> tuple[int, int]:
    """(rank, processes) of this training process: (0, 1) unless started by `accelerate launch`/torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 evaluates and writes models and stats; the other ranks only help train."""
    return world()[0] == 0


def mixed_precision(setting: str) -> str:
    """`compute.mixed_precision` for Accelerate: `auto` = bf16 where the CUDA device supports it, else full precision."""
    if setting != "auto":
        return setting
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def launch_command(gpus: int, module: str, argv: list[str], precision: str, *, cpu: bool = False) -> list[str]:
    """`accelerate launch` of `python -m module argv` on `gpus` processes (data parallel, one GPU each). `cpu`: the same
    ranks on CPU through torchrun (gloo), which Accelerate picks up as multi-CPU: how tests check the path on a
    machine without GPUs (`accelerate launch --cpu` starts only one process)."""
    import sys

    if cpu:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={gpus}",
            "-m",
            module,
            *argv,
        ]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus)]
    cmd += ["--num_machines", "1", "--mixed_precision", precision, "--dynamo_backend", "no"]
    return [*cmd, "--module", module, *argv]
