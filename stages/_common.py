"""What every stage shares: argument parsing defaults, quiet offline environment, and turning expected
failures into one clear message and exit status 1 instead of a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "GX_ANALYTICS_ENABLED": "false",
}


def parser(description: str, *, task: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="pipeline configuration (default: params.yaml)")
    p.add_argument("--root", default=".", help="project root holding data/, models/, reports/ (default: .)")
    if task:
        p.add_argument("--task", required=True, help="task name (one of params.yaml `tasks`)")
    return p


def run(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> None:
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    from mllmcl.config import ConfigError
    from mllmcl.errors import UserError
    from mllmcl.records import RecordError

    try:
        code = main(args) or 0
    except (UserError, RecordError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except ModuleNotFoundError as e:  # DVC ran the stage with a `python` that is not the project's venv
        print(f"error: {sys.executable} has no module '{e.name}': run DVC from the project's environment "
              "(`source .venv/bin/activate`, or `make run`)", file=sys.stderr)
        code = 1
    sys.exit(code)


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
