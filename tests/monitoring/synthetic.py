"""Synthetic feature rows (no model): requests of a few 'tasks', each with its own image statistics, embeddings and
question templates, and the same requests shifted (darker images, moved embeddings) or of an unseen kind."""

from __future__ import annotations

import numpy as np

from monitoring.features import feature_row, to_frame

TASKS = {
    "colour": {"bright": 0.35, "emb": 0, "questions": ["what colour is the square?", "which colour is shown?"]},
    "where": {"bright": 0.45, "emb": 1, "questions": ["is the square left or right?", "where is the square?"]},
}
DIM = 16


def rows(task: str, n: int, seed: int, *, shift: float = 0.0, novel: bool = False) -> list[dict]:
    """n feature rows of `task`; `shift` darkens images and moves image embeddings; `novel` = an unseen kind the
    router sends to the base, flagged unknown."""
    rng = np.random.default_rng(seed)
    spec = TASKS[task]
    centre = np.zeros(DIM)
    centre[spec["emb"]] = 3.0
    out = []
    for i in range(n):
        b = float(np.clip(rng.normal(spec["bright"] - shift, 0.05), 0, 1))
        img = centre + rng.normal(0, 1, DIM)
        img[2] += 8 * shift
        if novel:
            img[3] += 5.0
        question = spec["questions"][i % 2] if not novel else f"what number is written {i % 3}?"
        out.append(
            feature_row(
                rid=f"{task}-{seed}-{i}",
                question=question,
                stats={
                    "brightness": b,
                    "red": b + rng.normal(0, 0.02),
                    "green": b + rng.normal(0, 0.02),
                    "blue": b + rng.normal(0, 0.02),
                    "contrast": abs(rng.normal(0.2, 0.03)),
                    "edges": abs(rng.normal(0.05, 0.01)),
                    "width": 64.0,
                    "height": 64.0,
                },
                expert="base" if novel else task,
                confidence=float(rng.uniform(0.2, 0.5)) if novel else float(rng.uniform(0.9, 1.0)),
                known=not novel,
                novelty=float(rng.normal(9 if novel else 3, 0.5)),
                image_embedding=img.tolist(),
                question_embedding=(_question_vector(question) + rng.normal(0, 0.1, DIM)).tolist(),
            )
        )
    return out


def _question_vector(question: str):
    """A fixed vector per question text (as a base's mean token embedding would be)."""
    import zlib

    return np.random.default_rng(zlib.crc32(question.encode())).normal(0, 1, DIM)


def reference(n_per_task: int = 120, seed: int = 0):
    """A reference frame: `n_per_task` rows of every task, with the `task` column."""
    all_rows = []
    for k, task in enumerate(TASKS):
        for row in rows(task, n_per_task, seed + k):
            all_rows.append({**row, "task": task})
    return to_frame(all_rows)


def batch(parts: list[tuple[str, int]], seed: int, **kw):
    """A current batch made of (task, n) parts."""
    out = []
    for k, (task, n) in enumerate(parts):
        out += rows(task, n, seed + 100 * k, **kw)
    return to_frame(out)
