"""What every entry point shares (the `mllmcl` CLI, `python -m stages.*`, `python -m flows.*`, `scripts/`): the
`--root`/`--params` options with one meaning, a quiet offline environment, and the exit-code policy of
mllmcl.errors (0 ok, 1 a negative decision, 2 a user error in one line, 3 an internal error with its traceback)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from mllmcl.errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, UserError

QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def add_common_options(parser: argparse.ArgumentParser, *, inherited: bool = False) -> argparse.ArgumentParser:
    """`--root` (the project folder) and `--params` (relative to the root unless absolute). `inherited`: for a
    sub-command's copy of the options, which must not overwrite what was given before the sub-command."""
    parser.add_argument(
        "--root",
        type=Path,
        default=argparse.SUPPRESS if inherited else Path("."),
        help="project root holding params.yaml, data/, models/ (default: .)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=argparse.SUPPRESS if inherited else Path("params.yaml"),
        help="pipeline configuration, relative to --root unless absolute (default: params.yaml)",
    )
    return parser


def params_path(args: argparse.Namespace) -> Path:
    """The params file the options name: --params as given when absolute, else under --root."""
    return args.params if args.params.is_absolute() else args.root / args.params


def load_params(args: argparse.Namespace):
    """The typed params of the project the options name."""
    from mllmcl.config import load_params as load

    return load(params_path(args))


def quiet_environment() -> None:
    """Offline, no telemetry, no tokenizer fork warnings; a variable the user has already set wins."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def local_state_environment(root: Path) -> None:
    """Prefect's home (its database, profiles) and matplotlib's font cache inside the project (`.prefect/`,
    `.cache/matplotlib`, both git-ignored), not under the user's home: a project keeps its state in its own folder.
    A PREFECT_HOME or MPLCONFIGDIR the user set wins. Call it before prefect or matplotlib is imported: both read
    these once, on import."""
    root = Path(root).resolve()
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / ".cache" / "matplotlib"))


def root_from_argv(argv: list[str]) -> Path:
    """The `--root` an entry point was given (default: the current folder), read before its parser runs: a module
    that imports prefect at its top needs the project's PREFECT_HOME before that import."""
    root = "."
    for i, arg in enumerate(argv):
        if arg == "--root" and i + 1 < len(argv):
            root = argv[i + 1]
        elif arg.startswith("--root="):
            root = arg.split("=", 1)[1]
    return Path(root or ".")


def exit_code_for(error: BaseException) -> int:
    """Print what a user needs to see for `error` and return the exit status."""
    if isinstance(error, UserError):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    if (
        isinstance(error, ModuleNotFoundError)
        and error.name
        and not error.name.startswith(("mllmcl", "stages", "flows"))
    ):
        print(
            f"error: {sys.executable} has no module '{error.name}': run from the project's environment "
            "(`source .venv/bin/activate`, or `make run`)",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    traceback.print_exception(error)
    print(f"internal error ({type(error).__name__}): this is a bug; the traceback above says where", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def run(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call `main(args)` under the exit-code policy; returns the status (callers `sys.exit` it)."""
    quiet_environment()
    local_state_environment(getattr(args, "root", Path(".")))
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        return exit_code_for(error)


def main_of(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser) -> None:
    """`if __name__ == "__main__": main_of(main, parser)` for a module with a parser of its own."""
    sys.exit(run(main, parser.parse_args()))
