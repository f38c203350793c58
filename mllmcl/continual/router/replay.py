"""What routers learn from and are measured on: a fixed replay sample of every learned task (the router's memory),
text-only requests labelled base, question swaps, and the held-out test samples."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from mllmcl.config import RouterConfig
from mllmcl.continual.router.pool import BASE
from mllmcl.data import records as rec_io
from mllmcl.model.batching import open_image


def replay_set(tasks: Sequence[str], tasks_dir: Path, split: str, per_task: int, seed: int) -> list[tuple[str, dict]]:
    """A fixed sample of each task's records (the router's replay memory), as (label, record)."""
    out = []
    for task in tasks:
        records = rec_io.read_records(Path(tasks_dir) / task / f"{split}.jsonl")
        rng = random.Random(f"{seed}-{task}-{split}")
        picked = rng.sample(records, min(per_task, len(records)))
        out.extend((task, r) for r in picked)
    return out


def question_swaps(labelled: Sequence[tuple[str, dict]], copies: float, seed: int) -> list[tuple[str, dict]]:
    """`copies` more of each image request whose wording only one task of `labelled` asks, each shown with an image of
    another task and still labelled with the asking task. On the replay alone, a task's images and its questions
    predict its letter equally well, so the router leans on both; on images in a look it never saw (another palette,
    theme or source) the image cue moves and drags the letter with it. Where the question alone tells the task, these
    copies teach that it decides; a question several tasks ask gets none, so the image still tells those apart. A
    fractional `copies` gives its fraction of the requests one more copy (0.25: a quarter get one), drawn by `seed`."""
    whole, part = int(copies), copies - int(copies)
    askers: dict[str, set[str]] = {}
    images: dict[str, list[tuple[str, str]]] = {}
    for label, rec in labelled:
        if rec.get("image"):
            askers.setdefault(rec["question"], set()).add(label)
            images.setdefault(label, []).append((source_task(label, rec), rec["image"]))
    others = {label: sorted(t for t in images if t != label) for label in images}
    rng = random.Random(f"{seed}-question-swaps")
    out = []
    for label, rec in labelled:
        if not rec.get("image") or askers[rec["question"]] != {label} or not others[label]:
            continue
        for k in range(whole + (part > 0 and rng.random() < part)):
            folder, image = rng.choice(images[rng.choice(others[label])])
            out.append((label, {**rec, "id": f"{rec.get('id')}~swap{k}", "image": image, "_task": folder}))
    return out


def labelled_sets(tasks, tasks_dir: Path, cfg: RouterConfig, split: str, per_task: int, base_per_split: int):
    """`per_task` records of every task of `split` and `base_per_split` text-only ones labelled base."""
    labelled = replay_set(tasks, tasks_dir, split, per_task, cfg.seed)
    language = replay_set([cfg.base_suite], tasks_dir, split, base_per_split, cfg.seed)
    labelled += [(BASE, {**rec, "_task": task}) for task, rec in language]
    return labelled


def held_out_set(tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig, per_task: int) -> list[tuple[str, dict]]:
    """`per_task` test samples of every task and as many text-only ones labelled base: what routing is measured on."""
    return labelled_sets(tasks, tasks_dir, cfg, "test", per_task, per_task)


def source_task(label: str, rec: dict) -> str:
    """The task folder a labelled record's image lies in: its label's, or the one `_task` names (a base-labelled suite
    record, a question swap's image)."""
    return rec.get("_task", label)


def source_folder(label: str, rec: dict, tasks_dir: Path) -> Path:
    """Where a labelled record's images are (`_source_task`)."""
    return Path(tasks_dir) / source_task(label, rec)


def labelled_request(label: str, rec: dict, tasks_dir: Path) -> tuple:
    """(image or None, question) of a labelled record."""
    folder = source_folder(label, rec, tasks_dir)
    return (open_image(folder / rec["image"]) if rec.get("image") else None, rec["question"])
