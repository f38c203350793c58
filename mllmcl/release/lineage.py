"""Where a candidate came from: the git commit, whether the tree was dirty, and the hashes dvc.lock records for
every stage. Read from files and `git`, never through DVC's Python API (the library does not import DVC)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def git_commit(root: Path) -> str | None:
    """HEAD of the repository at `root`, or None when it is no git checkout or git is missing."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_dirty(root: Path) -> bool | None:
    """Whether tracked files differ from HEAD (untracked files do not count); None when git cannot tell."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def dvc_lock_hashes(dvc_lock: Path) -> dict[str, dict]:
    """Per stage: the md5 of every dep and out that dvc.lock records (the candidate's data state)."""
    path = Path(dvc_lock)
    if not path.exists():
        return {}
    lock = yaml.safe_load(path.read_text()) or {}
    out = {}
    for stage, entry in (lock.get("stages") or {}).items():
        out[stage] = {d["path"]: d.get("md5") for kind in ("deps", "outs") for d in entry.get(kind, []) or []}
    return out


def params_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params trees."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += params_diff(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out
