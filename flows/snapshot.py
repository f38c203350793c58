"""A worker's checkout of the coordinating workspace, without git or a shared disk: the files git would carry
(tracked and untracked-but-not-ignored, as they are on disk, so uncommitted params and code travel too) plus the
named uncached stage outputs a stage reads (validation reports), packed into one gzip'd tar. DVC-tracked data and
models never travel here: workers pull them from the DVC remote."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

MAX_BYTES = 256 * 1024 * 1024  # a snapshot beyond this means large files live in git, not in DVC


class SnapshotError(RuntimeError):
    """The workspace cannot be packed for workers (not a git repo, or too large)."""


def workspace_files(root: Path) -> list[str]:
    """Paths git would commit now (tracked files still on disk plus untracked files it does not ignore)."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SnapshotError(f"{root}: workers need a git workspace to copy ({proc.stderr.strip()})")
    return sorted({p for p in proc.stdout.split("\0") if p and (root / p).is_file()})


def pack(root: Path, extra: list[str] = ()) -> bytes:
    """The workspace's files plus `extra` (relative paths of files or folders) as gzip'd tar bytes."""
    root = Path(root)
    names = workspace_files(root)
    for rel in extra:
        path = root / rel
        if path.is_dir():
            names += [str(p.relative_to(root)) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            names.append(rel)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name in dict.fromkeys(names):
            tar.add(root / name, arcname=name, recursive=False)
            if buf.tell() > MAX_BYTES:
                raise SnapshotError(
                    f"{root}: the files git carries exceed {MAX_BYTES >> 20} MiB at {name}; track large files with "
                    "DVC so that workers pull them from the remote"
                )
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    """Extract a snapshot into an empty folder (tar's data filter: no absolute paths, links or devices)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
