"""The `mllmcl` command line. Each sub-command lives in mllmcl/commands/<name>.py and imports its heavy
dependencies only when it runs, so `mllmcl --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("task", "predict", "registry", "gate", "remote", "drift", "run", "benchmark")


class CommandError(Exception):
    """An expected failure: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mllmcl",
        description="Continual learning for multimodal LLMs: per-task LoRA experts, an MLLM router, "
        "regression gates and a model registry.",
    )
    parser.add_argument("--params", default="params.yaml", help="pipeline configuration (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mllmcl.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"mllmcl.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # expected failures of the library carry a clear message
        if _is_user_error(e):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def _is_user_error(e: Exception) -> bool:
    from mllmcl.errors import UserError

    return isinstance(e, (UserError, CommandError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
