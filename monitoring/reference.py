"""Reference profiles: what each learned task looks like to the production model. A fixed-seed sample of every
learned task's training records is passed through the model once (the same features as traffic) and cached as
`reports/drift/reference/<version>.parquet`; a new production version has another id, so its profile is computed
afresh. A batch is then compared with a reference drawn in the same task mix as the batch's routing, so that a batch
of one learned task is not "drifted" merely for not being the average of all tasks."""

from __future__ import annotations

import random
from pathlib import Path

from mllmcl.errors import DataError

CACHE_SUFFIX = ".parquet"


def workspace_version(params, paths) -> str:
    """A stable id for an unregistered workspace model (models/): the content address promotion would give it, so
    that retraining changes it and the cached profile is recomputed."""
    from mllmcl.release.candidate import candidate_files
    from mllmcl.release.registry import candidate_id

    return "workspace-" + candidate_id(candidate_files(params, paths)).removeprefix("v-")


def sample_records(tasks: list[str], tasks_dir: Path, rows: int, seed: int) -> list[tuple[str, dict, Path]]:
    """(task, record, task folder) for `rows // len(tasks)` training records of each task, drawn with `seed`."""
    from mllmcl.data.records import read_records

    picked = []
    per_task = max(1, rows // max(1, len(tasks)))
    for task in tasks:
        folder = Path(tasks_dir) / task
        if not (folder / "train.jsonl").is_file():
            raise DataError(f"{folder / 'train.jsonl'}: no training records for learned task '{task}' (run ingest)")
        items = read_records(folder / "train.jsonl")
        picked += [(task, r, folder) for r in random.Random(f"{seed}:{task}").sample(items, min(per_task, len(items)))]
    return picked


def build_reference(
    model,
    tasks: list[str],
    tasks_dir: Path,
    rows: int,
    seed: int,
    *,
    base_suite: str | None = None,
    batch_size: int = 64,
):
    """The reference frame: features of a fixed sample of each task's training records, with a `task` column;
    `base_suite` (the router's text-only suite) joins as task "base", the profile of what the base should answer."""
    from mllmcl.continual.inference import load_request
    from monitoring.features import BASE, model_view, to_frame

    picked = sample_records(tasks, tasks_dir, rows, seed)
    if base_suite:
        per_task = max(1, rows // max(1, len(tasks)))
        picked += [(BASE, r, folder) for _, r, folder in sample_records([base_suite], tasks_dir, per_task, seed)]
    requests = [load_request(r, folder, confine=False) for _, r, folder in picked]
    feats = model_view(model, requests, batch_size=batch_size)
    for (task, _, _), row in zip(picked, feats):
        row["task"] = task
    return to_frame(feats)


def cached_reference(cache_dir: Path, version: str, compute):
    """The profile of `version` from `cache_dir/<version>.parquet`, or `compute()`d and cached (written atomically)."""
    import pandas as pd

    path = Path(cache_dir) / f"{version}{CACHE_SUFFIX}"
    if path.is_file():
        return pd.read_parquet(path)
    frame = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return frame


def assign_tasks(reference, current) -> list[str]:
    """The reference task each request is compared with: the expert the router chose; "base" for a text-only request
    the router sent to the base (the base suite's profile); for an image the router did not know (sent to the base),
    the learned task of the reference question nearest to its question (question embeddings), so that a learned
    task's requests whose images moved are still compared with that task."""

    from monitoring.features import BASE, embedding_columns

    tasks = [t for t in dict.fromkeys(reference["task"]) if t != BASE]
    cols = embedding_columns(reference, "question")
    usable = bool(tasks and cols and set(cols) <= set(current.columns))
    if usable:
        learned = reference[reference["task"] != BASE]
        ref_q = learned[cols].to_numpy(float)
        d2 = ((current[cols].to_numpy(float)[:, None, :] - ref_q[None, :, :]) ** 2).sum(axis=2)
        labels = learned["task"].to_numpy()
        nearest = [labels[i] for i in d2.argmin(axis=1)]
    out = []
    for i, (expert, known, has_image) in enumerate(zip(current["expert"], current["known"], current["has_image"])):
        if expert != BASE and known == "yes":
            out.append(expert)
        elif has_image == "no":
            out.append(BASE)
        else:
            out.append(nearest[i] if usable else BASE)
    return out


def matched_reference(reference, tasks: list[str], seed: int = 0):
    """Reference rows in the batch's task mix: each task of the reference (the learned tasks, and "base" for the
    base suite) gets the share of the batch's requests assigned to it (`assign_tasks`), as many rows as the mix
    allows without repeating one (a repeated row would let a classifier recognise the reference). With no request on
    a task of the reference the whole reference is returned."""
    import pandas as pd

    known = set(reference["task"])
    counts = pd.Series([t for t in tasks if t in known], dtype=object).value_counts()
    if counts.empty:
        return reference.reset_index(drop=True)
    by_task = {task: reference[reference["task"] == task] for task in counts.index}
    scale = min(len(by_task[task]) / count for task, count in counts.items())
    parts = [by_task[task].sample(max(1, int(scale * count)), random_state=seed) for task, count in counts.items()]
    return pd.concat(parts).reset_index(drop=True)
