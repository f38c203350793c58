"""MLLM-CL-mini: the embedded, procedurally generated benchmark. Deterministic given a seed: the same
(task, sizes, seed, image size) gives byte-identical manifests and images on any machine."""

from __future__ import annotations

import hashlib
import shutil
import time
import zlib
from pathlib import Path

import numpy as np

from mllmcl.data.benchmark import ability, domain, text
from mllmcl.data.benchmark.core import Generator, Item
from mllmcl.data.records import write_records

GENERATORS: dict[str, Generator] = {g.name: g for g in [*domain.GENERATORS, *ability.GENERATORS, *text.GENERATORS]}
DOMAIN_TRACK = ["rs", "med", "ad", "sci", "fin"]
ABILITY_TRACK = ["ocr", "math", "count", "gui"]

__all__ = ["GENERATORS", "DOMAIN_TRACK", "ABILITY_TRACK", "Generator", "Item", "generate_task"]

MAX_RETRIES = 50


def _rng(seed: int, name: str, split: str) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), zlib.crc32(split.encode())])
    )


def _png_bytes(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def generate_task(
    name: str,
    out_dir: Path,
    *,
    train_size: int,
    test_size: int,
    seed: int,
    image_size: int = 64,
    progress: bool = False,
) -> dict:
    """Write out_dir/{train,test}.jsonl and out_dir/images/<split>_<index>.png. Question types are assigned
    round-robin (balanced); an item whose image (or, text-only, question) repeats one of the train split is
    redrawn from the same stream, so test never leaks train."""
    from tqdm.auto import tqdm

    gen = GENERATORS[name]
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / "images", ignore_errors=True)
    t0 = time.perf_counter()
    seen: set[str] = set()  # train keys: image hash, or question for text-only items
    summary: dict = {"name": name}
    for split, n in (("train", train_size), ("test", test_size)):
        rng = _rng(seed, name, split)
        rows, counts = [], {}
        bar = tqdm(range(n), desc=f"generate {name}/{split}", disable=not progress, leave=False)
        for i in bar:
            qtype = gen.question_types[i % len(gen.question_types)]
            for _ in range(MAX_RETRIES):
                item = gen.make(rng, split, image_size, qtype)
                data = _png_bytes(item.image) if item.image is not None else None
                key = hashlib.sha256(data).hexdigest() if data is not None else "q:" + item.question.strip().lower()
                if split == "train" or key not in seen:
                    break
            else:
                raise RuntimeError(f"{name}: could not draw a test item unlike train in {MAX_RETRIES} tries")
            if split == "train":
                seen.add(key)
            rid = f"{name}-{split}-{i:05d}"
            image_rel = None
            if data is not None:
                image_rel = f"images/{split}_{i:05d}.png"
                (out_dir / "images").mkdir(parents=True, exist_ok=True)
                (out_dir / image_rel).write_bytes(data)
            row = {
                "id": rid,
                "image": image_rel,
                "question": item.question,
                "answer": item.answer,
                "answer_type": item.answer_type,
                "choices": item.choices,
                "question_type": item.question_type,
            }
            if item.render:
                row["render"] = item.render
            rows.append(row)
            counts[qtype] = counts.get(qtype, 0) + 1
        write_records(out_dir / f"{split}.jsonl", rows)
        summary[split] = len(rows)
        summary[f"{split}_question_types"] = counts
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary
