"""The `mllmcl` command line. Each sub-command lives in mllmcl/cli/commands/<name>.py and imports its heavy
dependencies only when it runs, so `mllmcl --help` stays fast. Exit status: 0 ok, 1 a negative decision
(gate failed, drift found), 2 a user error (one line), 3 an internal error (with its traceback)."""

from __future__ import annotations

import argparse
import importlib

from mllmcl.entry import add_common_options, run

COMMAND_MODULES = (
    "params",
    "base",
    "task",
    "predict",
    "registry",
    "gate",
    "remote",
    "drift",
    "run",
    "benchmark",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    """The whole `mllmcl` parser; --root/--params are accepted before or after the sub-command."""
    parser = argparse.ArgumentParser(
        prog="mllmcl",
        description="Continual learning for multimodal LLMs: per-task LoRA experts, an MLLM router, "
        "regression gates and a model registry.",
        epilog="Every command takes --root (the project folder) and --params (relative to it). "
        "Exit status: 0 ok, 1 a negative decision, 2 a user error, 3 an internal error.",
    )
    add_common_options(parser)  # before the command ...
    common = add_common_options(argparse.ArgumentParser(add_help=False), inherited=True)  # ... or after it
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mllmcl.cli.commands.{name}").register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv) and run the chosen command under the exit-code policy; no command prints the
    help and returns 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "help_parser", None) or parser).print_help()
        return 0
    return run(handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
