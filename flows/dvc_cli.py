"""DVC as a subprocess, for orchestration only (the library never runs or imports DVC): the project's remote,
configured from params.yaml `storage:` (a local folder or s3://bucket/prefix, with an endpoint for S3-compatible
servers), push/pull of data, models and DVC's run-cache, `dvc add` of imported data, and `dvc repro`.
Credentials never pass through here: DVC reads them from the standard AWS chain (env, profile)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import UserError

REMOTE = "storage"
DVC_ENV = {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class DvcError(UserError):
    """A dvc command failed; the message carries the tail of its output."""


def env() -> dict[str, str]:
    """The environment for dvc: offline, and `python` in stage commands is this interpreter."""
    out = {**os.environ, **DVC_ENV}
    bin_dir = str(Path(sys.executable).parent)
    if not out.get("PATH", "").startswith(bin_dir):
        out["PATH"] = bin_dir + os.pathsep + out.get("PATH", "")
    return out


def argv(*args: str) -> list[str]:
    """The command line of `dvc ARGS` run by this interpreter (its venv's DVC)."""
    return [sys.executable, "-m", "dvc", *args]


def dvc(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m dvc ARGS` in `root` with the offline environment, output captured; `check=True` raises DvcError
    (with the output's tail) on a non-zero exit."""
    proc = subprocess.run(argv(*args), cwd=root, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{tail(proc)}")
    return proc


def tail(proc: subprocess.CompletedProcess, lines: int = 40) -> str:
    """The last `lines` lines of a finished process's stdout then stderr, for error messages."""
    text = (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def remote_url(params: Params, root: Path) -> str | None:
    """storage.dvc_remote as DVC wants it: s3:// URLs as they are; a local folder relative to the project root
    (DVC rewrites it relative to .dvc/config, so the committed config holds no machine-specific path)."""
    return params.storage.dvc_remote or None  # the schema already refused other URL schemes


def configure(params: Params, root: Path) -> str | None:
    """Make `storage.dvc_remote` the project's default DVC remote (in .dvc/config, which git tracks: no
    secrets there). Returns the URL, or None when no remote is configured."""
    url = remote_url(params, root)
    if url is None:
        return None
    dvc(root, "remote", "add", "--default", "--force", REMOTE, url, check=True)
    s3 = params.storage.s3
    if url.startswith("s3://"):
        if s3.endpoint_url:
            dvc(root, "remote", "modify", REMOTE, "endpointurl", s3.endpoint_url, check=True)
        if s3.region:
            dvc(root, "remote", "modify", REMOTE, "region", s3.region, check=True)
    return url


def has_remote(root: Path) -> bool:
    """Whether the project has any DVC remote (one configured by hand counts); False when `dvc remote list` fails."""
    proc = dvc(root, "remote", "list")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def push(root: Path) -> str:
    """Every cached output of dvc.lock (data, models) plus the run-cache, so a clone can skip re-training."""
    return dvc(root, "push", "--run-cache", check=True).stdout


def pull(root: Path, allow_missing: bool = True) -> str:
    """Cached outputs plus the run-cache from the remote; `allow_missing` tolerates outputs the remote lacks. Raises
    DvcError when dvc fails."""
    args = ["pull", "--run-cache"] + (["--allow-missing"] if allow_missing else [])
    return dvc(root, *args, check=True).stdout


def add(path: Path, root: Path) -> None:
    """`dvc add` imported data so that it is versioned and pushed like every other input."""
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    if not (Path(root) / ".dvc").is_dir():
        return
    try:
        proc = dvc(root, "add", str(rel))
    except OSError as e:
        raise DvcError(f"dvc add {rel} could not run: {e}") from None
    if proc.returncode != 0:
        raise DvcError(f"dvc add {rel} failed: {tail(proc, 5)}")


def outputs_pushed(root: Path) -> bool | None:
    """Whether every output dvc.lock records is in the DVC remote (None: no remote to ask)."""
    if not has_remote(root):
        return None
    proc = dvc(root, "status", "--cloud", "--json")
    if proc.returncode != 0:
        return False
    import json

    try:
        return not json.loads(proc.stdout.strip() or "{}")
    except json.JSONDecodeError:
        return False
