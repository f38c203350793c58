"""Adding a task: the start of a continual stage. Puts the raw input under data/raw/<name>/, tracks
imported data with DVC, and appends the name to `tasks` in params.yaml keeping the file's comments."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from mllmcl.config import load_params
from mllmcl.config.schema import RESERVED_TASKS, TASK_NAME
from mllmcl.data.ingest import SPEC_FILE
from mllmcl.errors import DataError, UserError
from mllmcl.paths import ProjectPaths


def check_name(name: str, params_path: Path) -> None:
    """A new task's name: the schema's rule, not reserved, not learned yet."""
    if not TASK_NAME.fullmatch(name):
        raise UserError(f"task name {name!r}: use 1-32 lowercase letters, digits or '_', starting with a letter")
    if name in RESERVED_TASKS:
        raise UserError(f"task name {name!r} is reserved ({', '.join(sorted(RESERVED_TASKS))})")
    if name in load_params(params_path).tasks:
        raise UserError(f"task '{name}' is already in {params_path} `tasks`")


def add_synthetic(name: str, generator: str, *, root: Path, params_path: Path, description: str | None = None) -> Path:
    """Write data/raw/<name>/spec.yaml for a benchmark generator and append the task; a shipped spec for the same
    generator is only appended."""
    from mllmcl.data.benchmark import GENERATORS

    check_name(name, params_path)
    if generator not in GENERATORS:
        raise DataError(f"unknown generator '{generator}' (have: {', '.join(sorted(GENERATORS))})")
    raw = ProjectPaths(root).raw(name)
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


def add_llava(
    name: str,
    train: Path,
    test: Path,
    images: Path,
    *,
    root: Path,
    params_path: Path,
    description: str | None = None,
    track: Callable[[Path], None] | None = None,
) -> Path:
    """Copy LLaVA-format files into data/raw/<name>/ (atomically), let `track` version them (the CLI passes
    `dvc add`; a failure removes the copy), then register the task in params.yaml."""
    check_name(name, params_path)
    for path, what in ((train, "--train"), (test, "--test")):
        if not Path(path).is_file():
            raise UserError(f"{what} {path}: file not found")
    if not Path(images).is_dir():
        raise UserError(f"--images {images}: folder not found")
    _refuse_links_out(Path(images))
    raw = ProjectPaths(root).raw(name)
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
    if track is not None:
        try:
            track(raw)
        except BaseException:
            shutil.rmtree(raw, ignore_errors=True)
            raise
    append_task(params_path, name)
    return raw


def _refuse_links_out(images: Path) -> None:
    """A symlink that leads out of --images would make `dvc add` copy its target into the cache and the remote."""
    root = images.resolve()
    for path in sorted(images.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise DataError(
                f"--images {path}: a symlink to {path.resolve()}, outside {images}; copy the file in instead"
            )


def append_task(params_path: Path, name: str) -> None:
    """Append `name` to params.yaml `tasks`, keeping comments; no checks (check_name does them)."""
    edit_params(params_path, lambda data: _replace_list(data["tasks"], [*data["tasks"], name]))


def set_tasks(params_path: Path, names: list[str]) -> None:
    """Replace the learned task list (switching tracks), keeping the file's comments."""
    edit_params(params_path, lambda data: _replace_list(data["tasks"], names))


def _replace_list(tasks, names: list[str]) -> None:
    """ruamel hangs the comment block after a list (the next section's heading) on its last item: it moves to the
    new last item, so a task added lands above that heading, not under it."""
    trailing = tasks.ca.items.pop(len(tasks) - 1, None) if tasks else None
    names = list(names)
    tasks.clear()
    tasks.extend(names)
    if trailing and names:
        tasks.ca.items[len(names) - 1] = trailing


def edit_params(params_path: Path, edit: Callable[[dict], None]) -> None:
    """Change params.yaml in place through `edit(data)`: a round-trip with ruamel, so every comment and the key order
    survive; written atomically."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096  # keep flow-style lines whole
    y.representer.add_representer(  # `key: null` stays `null` (ruamel would write an empty value)
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    data = y.load(Path(params_path).read_text(encoding="utf-8"))
    edit(data)
    tmp = Path(params_path).with_suffix(".yaml.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        y.dump(data, f)
    tmp.replace(params_path)


def add_labelled_batch(
    name: str,
    batch: Path,
    *,
    root: Path,
    params_path: Path,
    test_share: float = 0.2,
    seed: int = 0,
    description: str | None = None,
    track: Callable[[Path], None] | None = None,
) -> Path:
    """A labelled production batch (`requests.jsonl`: {id, image, question, answer} a line, images relative to it)
    becomes a new task: split into train/test with a fixed seed, converted to MLLM-CL's LLaVA formats and added like
    `task add --train/--test/--images` (which validates, copies atomically and tracks it)."""
    import json
    import random

    from mllmcl.data.records import read_json_lines

    check_name(name, params_path)  # before anything is written: the name becomes folder and file names below
    batch = Path(batch)
    source = batch / "requests.jsonl"
    if not source.is_file():
        raise DataError(f"{source}: file not found (a labelled batch is a folder with requests.jsonl and its images)")
    rows = []
    for line in read_json_lines(source):
        obj = line.obj
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k] for k in ("question", "answer")):
            raise DataError(f"{source}: line {line.line}: a labelled request needs string 'question' and 'answer'")
        rows.append(obj)
    if len(rows) < 2:
        raise DataError(f"{source}: {len(rows)} labelled request(s); a new task needs at least 2 (train and test)")
    # split by image, not by line: several questions about one image must not end up on both sides (validation's
    # no_leakage rule would refuse the task, and the gate would measure memory)
    groups: dict[str, list[dict]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("image") or f"text-{i}", []).append(r)
    keys = sorted(groups)
    if len(keys) < 2:
        raise DataError(f"{source}: every request shows the same image; a new task needs at least 2 images")
    random.Random(f"{seed}:{name}").shuffle(keys)
    n_test = min(len(keys) - 1, max(1, round(len(keys) * test_share)))
    test = [r for k in keys[:n_test] for r in groups[k]]
    train = [r for k in keys[n_test:] for r in groups[k]]
    with tempfile.TemporaryDirectory(prefix=f".{name}-batch-") as tmp:
        tmp = Path(tmp)
        train_items = [
            {
                "id": str(r.get("id") or f"{name}-train-{i}"),
                "image": r.get("image"),
                "conversations": [
                    {"from": "human", "value": ("<image>\n" if r.get("image") else "") + r["question"]},
                    {"from": "gpt", "value": r["answer"]},
                ],
            }
            for i, r in enumerate(train)
        ]
        test_items = [
            {
                "question_id": str(r.get("id") or f"{name}-test-{i}"),
                "image": r.get("image"),
                "text": r["question"],
                "answer": r["answer"],
            }
            for i, r in enumerate(test)
        ]
        (tmp / "train.json").write_text(json.dumps(train_items))
        (tmp / "test.json").write_text(json.dumps(test_items))
        return add_llava(
            name,
            tmp / "train.json",
            tmp / "test.json",
            batch,
            root=root,
            params_path=params_path,
            description=description or f"{name} (learned from production batch {batch.name})",
            track=track,
        )
