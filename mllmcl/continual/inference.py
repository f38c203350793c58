"""Routed inference: the base loaded once, every expert and the router attached as named adapters;
each request is routed, then answered by the chosen expert (or the plain base). Adapters are switched
with `set_adapter`, never reloaded."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mllmcl.continual.router import BASE, Router, load_pool
from mllmcl.errors import DataError
from mllmcl.model.adapters import attach_adapters
from mllmcl.model.batching import encode, open_image
from mllmcl.model.generation import generate_texts
from mllmcl.model.loading import Prompting, load_base


@dataclass(frozen=True)
class Request:
    """One request to answer: a question, an optional PIL image (None: text-only) and the caller's id, echoed back."""

    question: str
    image: object = None  # PIL image or None
    id: str | None = None


@dataclass(frozen=True)
class Prediction:
    """The answer to one Request: the expert that gave it ("base" for the plain model), the router's confidence, and the
    batch's wall time shared out per request (ms)."""

    id: str | None
    answer: str
    expert: str
    confidence: float
    latency_ms: float


class RoutedModel:
    """The base with every expert and the router attached as named adapters, loaded once; raises ModelLoadError when the
    base or the router's pool cannot be loaded."""

    def __init__(
        self,
        base_path: str,
        experts_dir: Path,
        router_dir: Path,
        *,
        trust_remote_code: bool = False,
        min_confidence: float | None = None,
    ):
        pool, meta = load_pool(router_dir)
        experts = {e.task: Path(experts_dir) / e.task for e in pool if e.task != BASE}
        base, processor = load_base(base_path, trust_remote_code=trust_remote_code)
        self.model = attach_adapters(base, {"router": Path(router_dir), **experts})
        self.prompting = Prompting.for_model(base, processor)
        self.experts = list(experts)
        self.router = Router(
            self.model,
            self.prompting,
            pool,
            min_confidence=meta["min_confidence"] if min_confidence is None else min_confidence,
            text_only_to_base=meta.get("text_only_to_base", False),
        )

    @classmethod
    def from_dir(cls, model_dir: Path, base_path: str | None = None, **kw) -> "RoutedModel":
        """A folder laid out like the workspace or a registry version: base/, experts/<task>/, router/."""
        model_dir = Path(model_dir)
        return cls(base_path or str(model_dir / "base"), model_dir / "experts", model_dir / "router", **kw)

    def answer_with(self, expert: str, requests: Sequence[Request], *, batch_size: int = 64) -> list[str]:
        """Answers from one expert (or the base) for every request."""
        enc = [encode(self.prompting, r.question, r.image) for r in requests]
        if expert == BASE:
            with self.model.disable_adapter():
                return generate_texts(self.model, self.prompting.tokenizer, enc, batch_size=batch_size)
        if expert not in self.experts:
            raise DataError(f"no expert named '{expert}' (have: {', '.join(self.experts)})")
        self.model.set_adapter(expert)
        return generate_texts(self.model, self.prompting.tokenizer, enc, batch_size=batch_size)

    def predict(self, requests: Sequence[Request], *, batch_size: int = 64) -> list[Prediction]:
        t0 = time.perf_counter()
        routes = self.router.route([(r.image, r.question) for r in requests], batch_size=batch_size)
        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, route in enumerate(routes):
            groups.setdefault(route.task, []).append(i)
        for expert, idx in groups.items():
            for i, a in zip(idx, self.answer_with(expert, [requests[i] for i in idx], batch_size=batch_size)):
                answers[i] = a
        # batched work: the latency reported is the batch's wall time shared out per request
        per_item_ms = (time.perf_counter() - t0) * 1000 / max(1, len(requests))
        return [
            Prediction(r.id, answers[i] or "", routes[i].task, round(routes[i].confidence, 4), round(per_item_ms, 2))
            for i, r in enumerate(requests)
        ]


MAX_QUESTION_CHARS = 4000  # a cheap first bound; the exact one is the base's context, checked when encoding


def load_request(obj: dict, base_dir: Path, line: int | None = None, *, confine: bool = True) -> Request:
    """A JSONL request {"id"?, "image"?, "question"}; image paths are relative to the JSONL's folder and, with `confine`,
    must stay inside it (a batch file cannot make the server read /etc/passwd)."""
    where = f"line {line}: " if line else ""
    question = obj.get("question") if isinstance(obj, dict) else None
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}request needs a non-empty 'question'")
    if len(question) > MAX_QUESTION_CHARS:
        raise DataError(f"{where}question is {len(question)} characters; at most {MAX_QUESTION_CHARS} are accepted")
    image = None
    if obj.get("image"):
        if not isinstance(obj["image"], str):
            raise DataError(f"{where}'image' must be a path string")
        path = Path(base_dir) / obj["image"]
        if confine and not path.resolve().is_relative_to(Path(base_dir).resolve()):
            raise DataError(f"{where}image {obj['image']!r} is outside the requests' folder {base_dir}")
        image = open_image(path, where=where.rstrip(": "))
    return Request(question=question, image=image, id=str(obj["id"]) if obj.get("id") is not None else None)


def prediction_json(p: Prediction) -> str:
    """One JSONL line of `mllmcl predict` output: id, answer, expert, confidence, latency_ms."""
    return json.dumps(
        {"id": p.id, "answer": p.answer, "expert": p.expert, "confidence": p.confidence, "latency_ms": p.latency_ms}
    )
