"""The router's vocabulary: the pool of experts (a letter and a description each, Z for the plain base), the route
a request gets, the prompt text, and pool.json, which ships beside every router so inference knows its pool."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.config import RouterConfig
from mllmcl.errors import DataError, ModelLoadError

POOL_FILE = "pool.json"
STATS_FILE = "router_stats.json"
BASE = "base"
BASE_LETTER = "Z"


@dataclass(frozen=True)
class PoolEntry:
    """One line of the router's pool: the letter the router answers with, the task it stands for, and the description it
    reads."""

    letter: str
    task: str
    description: str


@dataclass(frozen=True)
class Route:
    """The router's decision for one request: the task ("base" on no legal letter or a low confidence), the letter read,
    its probability and the raw output."""

    task: str  # an expert's task name, or "base"
    letter: str | None
    confidence: float
    raw: str
    known: bool = True  # False: open set (novel image, illegal letter, low confidence, or an image sent to base)
    novelty: float | None = None  # distance to the nearest learned task (image requests with a profile)
    image_embedding: object = None  # the base's compact image embedding (numpy), None for text-only
    by: str = "mllm"  # which router decided: "mllm" or "prototype" (a cascade reports the share of each)


def task_description(tasks_dir: Path, task: str) -> str:
    """The task's one-line description (its meta.json), shown to the router next to the expert's letter."""
    meta = Path(tasks_dir) / task / "meta.json"
    if meta.exists():
        desc = json.loads(meta.read_text()).get("description")
        if desc:
            return str(desc)
    return task


def build_pool(tasks: Sequence[str], tasks_dir: Path) -> list[PoolEntry]:
    """Letters A, B, ... for the experts in learned order, and Z for the plain base."""
    if len(tasks) >= 26:
        raise DataError(f"the router's pool holds at most 25 experts, got {len(tasks)} tasks")
    entries = [PoolEntry(string.ascii_uppercase[i], t, task_description(tasks_dir, t)) for i, t in enumerate(tasks)]
    return entries + [PoolEntry(BASE_LETTER, BASE, "anything else, and questions without an image")]


def router_pool_text(pool: Sequence[PoolEntry]) -> str:
    """The pool, shown before the image so that the image stays close to the letter the router answers."""
    return "Models: " + " ; ".join(f"{e.letter}: {e.description}" for e in pool) + " ."


def router_question(pool: Sequence[PoolEntry], question: str) -> str:
    """The question the router is trained and asked on; `pool` is not repeated here (it is the prompt's prefix,
    router_pool_text)."""
    return f"Request: {question} Which model? Answer with its letter."


def router_vocabulary(tasks: Sequence[tuple[str, str]]) -> list[str]:
    """The router prompt's words for a tokenizer corpus (the tiny base learns them as whole tokens)."""
    pool = [PoolEntry(chr(ord("A") + i), name, desc) for i, (name, desc) in enumerate(tasks)]
    text = router_pool_text(pool + [PoolEntry(BASE_LETTER, BASE, "anything else")]) + router_question(pool, "")
    letters = " ".join(f" {chr(c)}" for c in range(ord("A"), ord("Z") + 1)) + f" {BASE_LETTER}"
    return [text, letters]


def pool_json(pool: Sequence[PoolEntry], cfg: RouterConfig) -> dict:
    """pool.json, saved in the router's folder: the pool and the router's kind (its thresholds are read at answer
    time from `routing:`, so changing them never retrains it)."""
    return {
        "experts": [asdict(e) for e in pool],
        "base_letter": BASE_LETTER,
        "kind": cfg.kind,
        "fallback": "base model on an illegal letter, a confidence below routing.min_confidence, or a novel image",
    }


def load_pool(router_dir: Path) -> tuple[list[PoolEntry], dict]:
    """The pool and settings a router was trained with; raises ModelLoadError when `router_dir` has no pool.json."""
    path = Path(router_dir) / POOL_FILE
    if not path.exists():
        raise ModelLoadError(f"{path}: router pool not found (train the router first)")
    data = json.loads(path.read_text())
    return [PoolEntry(**e) for e in data["experts"]], data
