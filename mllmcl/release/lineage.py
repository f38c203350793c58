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


RECIPE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", "data/raw")


def reproducibility_problems(root: Path, *, pushed: bool | None) -> list[str]:
    """Why `git checkout <commit> && dvc pull && dvc repro` would NOT rebuild this workspace's candidate (empty when
    it would): no commit, a recipe file missing from or changed since the commit, or outputs not on the remote.
    `pushed` is the orchestration's answer to "is every output in the DVC remote?" (None: not checked)."""
    problems = []
    commit = git_commit(root)
    if commit is None:
        return ["not a git checkout with a commit: the recipe has no commit to start from"]
    if not (Path(root) / "dvc.lock").is_file():
        problems.append("no dvc.lock: nothing records the data and model hashes")
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *RECIPE_FILES],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
        changed = sorted({line[3:].strip() for line in out.stdout.splitlines() if line.strip()})
    except (OSError, subprocess.SubprocessError):
        changed = ["(git status failed)"]
    if changed:
        shown = ", ".join(changed[:5]) + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else "")
        problems.append(f"not committed at {commit[:12]}: {shown}")
    if pushed is False:
        problems.append("data or models are not in the DVC remote (run `mllmcl remote push`)")
    elif pushed is None:
        problems.append("not checked that data and models are in the DVC remote")
    return problems
