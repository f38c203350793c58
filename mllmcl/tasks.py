"""Adding a task: the start of a continual stage. Puts the raw input under data/raw/<name>/, tracks
imported data with DVC, and appends the name to `tasks` in params.yaml keeping the file's comments."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mllmcl.errors import UserError
from mllmcl.ingest import SPEC_FILE

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED = {"base", "general", "language"}


def check_name(name: str, params_path: Path) -> None:
    if not _NAME.match(name):
        raise UserError(f"task name '{name}': use 1-32 lowercase letters, digits or '_', starting with a letter")
    if name in RESERVED:
        raise UserError(f"task name '{name}' is reserved")
    from mllmcl.config import load_params, tasks

    if name in tasks(load_params(params_path)):
        raise UserError(f"task '{name}' is already in {params_path} `tasks`")


def add_synthetic(name: str, generator: str, *, root: Path, params_path: Path, description: str | None = None) -> Path:
    from mllmcl.benchmark import GENERATORS

    check_name(name, params_path)
    if generator not in GENERATORS:
        raise UserError(f"unknown generator '{generator}' (have: {', '.join(sorted(GENERATORS))})")
    raw = root / "data" / "raw" / name
    if raw.exists():
        existing = yaml.safe_load((raw / SPEC_FILE).read_text()) if (raw / SPEC_FILE).is_file() else None
        if not (isinstance(existing, dict) and existing.get("generator") == generator and not description):
            raise UserError(f"{raw} already exists")
        append_task(params_path, name)  # the embedded benchmark ships this spec: only learn it
        return raw
    spec = {"generator": generator}
    if description:
        spec["description"] = description
    raw.mkdir(parents=True)
    (raw / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    append_task(params_path, name)
    return raw


def add_llava(name: str, train: Path, test: Path, images: Path, *, root: Path, params_path: Path,
              description: str | None = None, dvc: bool = True) -> Path:
    """Copy LLaVA-format files into data/raw/<name>/ (atomically), `dvc add` them, then register the task."""
    check_name(name, params_path)
    for path, what in ((train, "--train"), (test, "--test")):
        if not Path(path).is_file():
            raise UserError(f"{what} {path}: file not found")
    if not Path(images).is_dir():
        raise UserError(f"--images {images}: folder not found")
    raw = root / "data" / "raw" / name
    if raw.exists():
        raise UserError(f"{raw} already exists")
    raw.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=raw.parent))
    try:
        shutil.copyfile(train, tmp / "train.json")
        shutil.copyfile(test, tmp / "test.json")
        shutil.copytree(images, tmp / "images", symlinks=True)
        spec = {"format": "llava", "description": description or name}
        (tmp / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
        tmp.rename(raw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if dvc and (root / ".dvc").is_dir():
        dvc_add(raw, root)
    append_task(params_path, name)
    return raw


def dvc_add(path: Path, root: Path) -> None:
    rel = path.resolve().relative_to(root.resolve())
    try:
        proc = subprocess.run([sys.executable, "-m", "dvc", "add", str(rel)], cwd=root, capture_output=True, text=True)
    except OSError as e:
        shutil.rmtree(path, ignore_errors=True)
        raise UserError(f"dvc add {rel} could not run: {e}") from None
    if proc.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        raise UserError(f"dvc add {rel} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def append_task(params_path: Path, name: str) -> None:
    _edit_tasks(params_path, lambda tasks: tasks.append(name))


def set_tasks(params_path: Path, names: list[str]) -> None:
    """Replace the learned task list (switching tracks), keeping the file's comments."""
    def replace(tasks) -> None:
        trailing = tasks.ca.items.pop(len(tasks) - 1, None) if tasks else None  # the comment block after the list
        tasks.clear()
        tasks.extend(names)
        if trailing and names:
            tasks.ca.items[len(names) - 1] = trailing

    _edit_tasks(params_path, replace)


def _edit_tasks(params_path: Path, edit) -> None:
    """Round-trip edit with ruamel so every comment and the key order survive; written atomically."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096  # keep flow-style lines whole
    data = y.load(Path(params_path).read_text(encoding="utf-8"))
    edit(data["tasks"])
    tmp = Path(params_path).with_suffix(".yaml.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        y.dump(data, f)
    tmp.replace(params_path)
