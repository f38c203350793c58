"""What every stage shares: the common `--root`/`--params` options, path arguments whose defaults are the
project's paths (dvc.yaml passes them explicitly), threads from `compute:`, and the exit-code policy of
mllmcl.entry (2 = bad input in one line, 3 = a bug with its traceback)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mllmcl.entry import add_common_options
from mllmcl.entry import load_params as _load_params
from mllmcl.entry import run as _run
from mllmcl.paths import ProjectPaths


def parser(description: str, *, task: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    add_common_options(p)
    if task:
        p.add_argument("--task", required=True, help="task name (one of params.yaml `tasks`)")
    return p


def path_arg(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A path the stage reads or writes; dvc.yaml names it, the default is the project's layout (mllmcl.paths)."""
    p.add_argument(flag, type=Path, default=None, help=f"{help} (default: the project's layout)")


def context(args: argparse.Namespace):
    """(params, paths) of the project, with torch threads set from `compute.threads`."""
    from mllmcl.model.compute import set_threads

    params = _load_params(args)
    set_threads(params.compute.threads)
    return params, ProjectPaths(Path(args.root))


def data_parallel(params, module: str) -> int | None:
    """`compute.gpus` > 1: run this stage again under `accelerate launch`, one process per GPU, and return its exit
    code; None when this process should train itself (one GPU, or already one rank of a launched run)."""
    import subprocess

    from mllmcl.errors import ConfigError
    from mllmcl.model.compute import launch_command, mixed_precision, world

    gpus = params.compute.gpus
    if gpus <= 1 or world()[1] > 1:
        return None
    import torch

    found = torch.cuda.device_count()
    if found < gpus:
        raise ConfigError(f"compute.gpus: {gpus}, but torch sees {found} CUDA device(s) here; set compute.gpus: 1")
    cmd = launch_command(gpus, module, sys.argv[1:], mixed_precision(params.compute.mixed_precision))
    print("data parallel:", " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def run(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> None:
    sys.exit(_run(main, args))


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
