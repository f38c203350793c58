"""Routed inference: the base loaded once, every expert and the router attached as named adapters, never reloaded.
A batch is routed in one pass (router adapter), then answered in one more: PEFT's mixed-adapter batches give each
row its own expert (or the plain base), so a batch costs two passes whatever the mix of experts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mllmcl.config import RoutingConfig
from mllmcl.continual.open_set import QUESTIONS, NoveltyProfile, compact
from mllmcl.continual.router import BASE, BaseFeatures, Router, load_pool, routing_router
from mllmcl.errors import DataError
from mllmcl.model.adapters import attach_adapters, mixed_batches
from mllmcl.model.batching import encode, open_image
from mllmcl.model.embeddings import question_embeddings
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
    """The answer to one Request: the expert that gave it ("base" for the plain model), the router's confidence and
    open-set verdict (`known`, `novelty`), the base's compact image/question embeddings (what drift monitoring
    compares), and the batch's wall time shared out per request (ms)."""

    id: str | None
    answer: str
    expert: str
    confidence: float
    latency_ms: float
    known: bool = True
    novelty: float | None = None
    image_embedding: list[float] | None = None
    question_embedding: list[float] | None = None
    routed_by: str = "mllm"  # which router decided ("prototype" or "mllm"): a cascade's share of MLLM passes


BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


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
        routing: RoutingConfig | None = None,
    ):
        pool, meta = load_pool(router_dir)
        self.kind = meta.get("kind", "mllm")
        experts = {e.task: Path(experts_dir) / e.task for e in pool if e.task != BASE}
        base, processor = load_base(base_path, trust_remote_code=trust_remote_code)
        adapters = {**({} if self.kind == "prototype" else {"router": Path(router_dir)}), **experts}
        self.model = attach_adapters(base, adapters)
        self.prompting = Prompting.for_model(base, processor)
        self.experts = list(experts)
        self.routing = routing or legacy_routing(meta)
        images = NoveltyProfile.load(Path(router_dir))
        questions = NoveltyProfile.load(Path(router_dir), QUESTIONS)
        for profile in (images, questions):
            if profile is not None and profile.calibration is not None:  # older profiles keep their threshold
                profile.at_quantile(self.routing.novelty_quantile)
        mllm = None if self.kind == "prototype" else Router(self.model, self.prompting, pool)
        features = BaseFeatures(self.model, self.prompting)
        self.router = routing_router(self.kind, mllm, features, pool, images, questions, self.routing)

    @classmethod
    def from_dir(cls, model_dir: Path, base_path: str | None = None, **kw) -> "RoutedModel":
        """A folder laid out like the workspace or a registry version: base/, experts/<task>/, router/."""
        model_dir = Path(model_dir)
        return cls(base_path or str(model_dir / "base"), model_dir / "experts", model_dir / "router", **kw)

    def encode(self, requests: Sequence[Request]) -> list:
        """Each request through the base's processor and prompt (what answering and the base's features read)."""
        return [encode(self.prompting, r.question, r.image) for r in requests]

    def _check_expert(self, expert: str) -> None:
        if expert != BASE and expert not in self.experts:
            raise DataError(f"no expert named '{expert}' (have: {', '.join(self.experts)})")

    def answer_with(self, expert: str, requests: Sequence[Request], *, batch_size: int = 64) -> list[str]:
        """Answers from one expert (or the base) for every request."""
        self._check_expert(expert)
        return self.answer_mixed([expert] * len(requests), requests, batch_size=batch_size)

    def answer_mixed(
        self, experts: Sequence[str], requests: Sequence[Request], *, batch_size: int = 64, encoded=None
    ) -> list[str]:
        """Each request answered by its own expert ("base": no adapter), in shared forward passes: one for the image
        requests and one for the text-only ones. PEFT dispatches per row, so an expert's own projector (trained in
        full, `modules_to_save`) must see exactly one image tensor per row; an architecture that splits an image into
        several tiles or patches rows falls back to one pass per expert for its image requests. `encoded`: the
        requests already through the processor (predict shares them with the prototype router)."""
        for expert in set(experts):
            self._check_expert(expert)
        enc = encoded if encoded is not None else self.encode(requests)
        names = [BASE_ADAPTER if e == BASE else e for e in experts]
        answers: list[str] = [""] * len(requests)
        image_rows = [i for i, e in enumerate(enc) if e.extras]
        text_rows = [i for i, e in enumerate(enc) if not e.extras]
        passes = [text_rows]
        if all(_one_row_per_image(enc[i]) for i in image_rows):
            passes.append(image_rows)
        else:
            by_expert: dict[str, list[int]] = {}
            for i in image_rows:
                by_expert.setdefault(names[i], []).append(i)
            passes.extend(by_expert.values())
        for rows in passes:
            if rows:
                texts = self._answer_rows([enc[i] for i in rows], [names[i] for i in rows], batch_size)
                for i, text in zip(rows, texts):
                    answers[i] = text
        return answers

    def _answer_rows(self, enc, names: list[str], batch_size: int) -> list[str]:
        tok = self.prompting.tokenizer
        if len(set(names)) > 1:
            with mixed_batches(self.model, names):
                return generate_texts(self.model, tok, enc, batch_size=batch_size, adapter_names=names)
        if names[0] == BASE_ADAPTER:  # one adapter for all: the plain path, no per-row dispatch
            with self.model.disable_adapter():
                return generate_texts(self.model, tok, enc, batch_size=batch_size)
        self.model.set_adapter(names[0])
        return generate_texts(self.model, tok, enc, batch_size=batch_size)

    def predict(self, requests: Sequence[Request], *, batch_size: int = 64, mixed: bool = True) -> list[Prediction]:
        """Route and answer a batch: one routing pass, then one mixed-adapter pass (`mixed=False`: one pass per
        expert, the older way, kept to measure what mixing buys)."""
        t0 = time.perf_counter()
        # the processor runs once per request: a router that reads the base's features (prototype, cascade) takes the
        # same encoded inputs the answering pass does
        encoded = self.encode(requests) if self.kind != "mllm" else None
        routes = self.router.route([(r.image, r.question) for r in requests], batch_size=batch_size, encoded=encoded)
        experts = [route.task for route in routes]
        if mixed:
            answers = self.answer_mixed(experts, requests, batch_size=batch_size, encoded=encoded)
        else:
            answers = [""] * len(requests)
            groups: dict[str, list[int]] = {}
            for i, expert in enumerate(experts):
                groups.setdefault(expert, []).append(i)
            for expert, idx in groups.items():
                for i, a in zip(idx, self.answer_with(expert, [requests[i] for i in idx], batch_size=batch_size)):
                    answers[i] = a
        questions = compact(question_embeddings(self.model, self.prompting.tokenizer, [r.question for r in requests]))
        # batched work: the latency reported is the batch's wall time shared out per request
        per_item_ms = (time.perf_counter() - t0) * 1000 / max(1, len(requests))
        return [
            Prediction(
                r.id,
                answers[i] or "",
                routes[i].task,
                round(routes[i].confidence, 4),
                round(per_item_ms, 2),
                known=routes[i].known,
                novelty=None if routes[i].novelty is None else round(routes[i].novelty, 4),
                image_embedding=_rounded(routes[i].image_embedding),
                question_embedding=_rounded(questions[i]),
                routed_by=routes[i].by,
            )
            for i, r in enumerate(requests)
        ]

    def predict_grouped(self, requests: Sequence[Request], *, batch_size: int = 64) -> list[Prediction]:
        """`predict` with one answering pass per expert (for benchmarks against mixed-adapter batches)."""
        return self.predict(requests, batch_size=batch_size, mixed=False)


def legacy_routing(pool_meta: dict) -> RoutingConfig:
    """The routing thresholds of a router saved when they were part of its training (pool.json), else the defaults:
    a registry version published before `routing:` existed answers as it was gated."""
    kept = {k: pool_meta[k] for k in ("min_confidence", "text_only_to_base") if k in pool_meta}
    return RoutingConfig(**kept)


def _one_row_per_image(item) -> bool:
    import torch

    # (1, 3, H, W) is one image in one row; (1, tiles, 3, H, W) (LLaVA-NeXT, Idefics3/SmolVLM) or (patches, dim)
    # (Qwen-VL) give the projector several rows per request
    return all(not torch.is_tensor(v) or (v.shape[0] == 1 and v.dim() <= 4) for v in item.extras.values())


def _rounded(vector) -> list[float] | None:
    return None if vector is None else [round(float(v), 5) for v in vector]


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
    """One JSONL line of `mllmcl predict` output: id, answer, expert, routing confidence, open-set verdict (known,
    novelty), latency_ms."""
    return json.dumps(
        {
            "id": p.id,
            "answer": p.answer,
            "expert": p.expert,
            "confidence": p.confidence,
            "known": p.known,
            "novelty": p.novelty,
            "latency_ms": p.latency_ms,
        }
    )
