"""The MLLM-based router of MR-LoRA: a LoRA on the same base that reads the request (image + question) and a
pool of experts (a letter and a description each) and answers with a letter. Trained on a small replay
set of every task so far plus text-only questions labelled "base"; an illegal letter or a low confidence
routes to the base model (open set), never to a random expert."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mllmcl.config import Params
from mllmcl.continual.open_set import NoveltyProfile, compact
from mllmcl.continual.router.pool import BASE, PoolEntry, Route, build_pool, router_pool_text, router_question
from mllmcl.continual.router.replay import labelled_request, labelled_sets, question_swaps
from mllmcl.model.batching import Encoded, collate, encode
from mllmcl.model.embeddings import decoder_input_embeddings, image_token_id, pooled_image_embeddings
from mllmcl.model.loading import Prompting


def _letter_of(piece: str, legal: set[str]) -> str | None:
    m = re.search(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", piece)
    return m.group(1) if m and m.group(1) in legal else None


class Router:
    """Routes requests with the 'router' adapter of a PeftModel."""

    def __init__(
        self,
        model,
        prompting: Prompting,
        pool: Sequence[PoolEntry],
        *,
        min_confidence: float = 0.5,
        text_only_to_base: bool = False,
        adapter: str = "router",
        open_set: NoveltyProfile | None = None,
        question_set: NoveltyProfile | None = None,
    ):
        self.model, self.prompting, self.pool = model, prompting, list(pool)
        self.min_confidence, self.text_only_to_base, self.adapter = min_confidence, text_only_to_base, adapter
        self.by_letter = {e.letter: e.task for e in self.pool}
        self.open_set = open_set
        self.question_set = question_set  # known questions keep a novel-looking image with its expert
        self.image_token = image_token_id(model)

    def encode(self, image, question: str) -> Encoded:
        return encode(self.prompting, router_question(self.pool, question), image, prefix=router_pool_text(self.pool))

    def route(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64, encoded=None) -> list[Route]:
        """requests: (PIL image or None, question) pairs (`encoded` is for routers that read the base's plain
        encoding; this one reads its own prompt). Each route carries the base's image embedding, read off the
        same forward pass, and the open-set verdict."""
        import torch

        routes: list[Route | None] = [None] * len(requests)
        todo = []
        for i, (image, _question) in enumerate(requests):
            if image is None and self.text_only_to_base:
                routes[i] = Route(BASE, None, 1.0, "(text-only: sent to base)")
            else:
                todo.append(i)
        if todo:
            self.model.set_adapter(self.adapter)
            tok = self.prompting.tokenizer
            legal = set(self.by_letter)
            device = next(self.model.parameters()).device
            with torch.inference_mode():
                for start in range(0, len(todo), batch_size):
                    idx = todo[start : start + batch_size]
                    batch = collate([self.encode(*requests[i]) for i in idx], tok.pad_token_id)
                    batch.pop("labels")
                    batch = {k: v.to(device) for k, v in batch.items()}
                    out = self.model.generate(
                        **batch,
                        max_new_tokens=3,
                        do_sample=False,
                        output_scores=True,
                        output_hidden_states=True,
                        return_dict_in_generate=True,
                        pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id,
                    )
                    width = batch["input_ids"].shape[1]
                    gen = out.sequences[:, width:]
                    probs = [torch.softmax(s.float(), dim=-1) for s in out.scores]
                    images = pooled_image_embeddings(out.hidden_states[0][0], batch["input_ids"], self.image_token)
                    novelty = self._novelty(images)
                    asked = self._known_questions([requests[i][1] for i in idx], novelty)
                    for row, i in enumerate(idx):
                        routes[i] = self._decide(gen[row], probs, row, legal, images[row], novelty[row], asked[row])
        return routes  # type: ignore[return-value]

    def image_embeddings(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64) -> list:
        """The base's compact image embedding of each request (None for text-only), from one forward pass without
        generating: what the open-set profile is fitted and calibrated on."""
        import torch

        self.model.set_adapter(self.adapter)
        device = next(self.model.parameters()).device
        out: list = []
        with torch.inference_mode():
            for start in range(0, len(requests), batch_size):
                chunk = requests[start : start + batch_size]
                batch = collate([self.encode(*r) for r in chunk], self.prompting.tokenizer.pad_token_id)
                batch.pop("labels")
                batch = {k: v.to(device) for k, v in batch.items()}
                hidden = decoder_input_embeddings(self.model, batch)  # the router's LoRA never changes these
                for e in pooled_image_embeddings(hidden, batch["input_ids"], self.image_token):
                    out.append(None if e is None else compact(e[None, :])[0])
        return out

    def _novelty(self, images: list) -> list[float | None]:
        import numpy as np

        present = [i for i, e in enumerate(images) if e is not None]
        scores: list[float | None] = [None] * len(images)
        if self.open_set is not None and present:
            dist, _ = self.open_set.distances(compact(np.stack([images[i] for i in present])))
            for i, d in zip(present, dist):
                scores[i] = float(d)
        return scores

    def _known_questions(self, questions: list[str], novelty: list[float | None]) -> list[bool]:
        """Whether each question is like those the learned tasks are asked (question profile), looked up only for the
        requests whose image the open set finds novel."""
        from mllmcl.model.embeddings import question_embeddings

        out = [False] * len(questions)
        if self.question_set is None or self.open_set is None:
            return out
        novel = [i for i, d in enumerate(novelty) if d is not None and d > self.open_set.threshold]
        if novel:
            emb = question_embeddings(self.model, self.prompting.tokenizer, [questions[i] for i in novel])
            dist, _ = self.question_set.distances(compact(emb))
            for i, d in zip(novel, dist):
                out[i] = bool(d <= self.question_set.threshold)
        return out

    def _decide(
        self,
        tokens,
        probs,
        row: int,
        legal: set[str],
        image=None,
        novelty: float | None = None,
        known_question: bool = False,
    ) -> Route:
        tok = self.prompting.tokenizer
        raw = tok.decode(tokens, skip_special_tokens=True)
        emb = compact(image[None, :])[0] if image is not None else None
        letter, conf = None, 0.0
        for step, token in enumerate(tokens.tolist()):
            letter = _letter_of(tok.decode([token]), legal)
            if letter:
                conf = float(probs[step][row, token])
                break
        if letter is None or conf < self.min_confidence:
            return Route(BASE, letter, conf, raw, known=False, novelty=novelty, image_embedding=emb)
        task = self.by_letter[letter]
        if novelty is not None and self.open_set is not None and novelty > self.open_set.threshold:
            if known_question and task != BASE:  # a learned task in a new look: its expert answers, drift is flagged
                note = " (novel image, known question)"
                return Route(task, letter, conf, raw + note, known=False, novelty=novelty, image_embedding=emb)
            return Route(BASE, letter, conf, raw + " (novel image)", known=False, novelty=novelty, image_embedding=emb)
        # the base's letter is learned from text-only questions: an image sent there is one the router does not know
        known = not (task == BASE and image is not None)
        return Route(task, letter, conf, raw, known=known, novelty=novelty, image_embedding=emb)


def _encode_labelled(prompting, pool, labelled, tasks_dir: Path, with_answers: bool) -> list[Encoded]:
    letter = {e.task: e.letter for e in pool}
    out = []
    for label, rec in labelled:
        image, _ = labelled_request(label, rec, tasks_dir)
        question = router_question(pool, rec["question"])
        out.append(
            encode(prompting, question, image, letter[label] if with_answers else None, prefix=router_pool_text(pool))
        )
    return out


def fit_router(
    tasks: Sequence[str],
    params: Params,
    *,
    base_dir: Path,
    tasks_dir: Path,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
):
    """The router trained from the base on the replay set of `tasks` (+ question swaps and text-only samples labelled
    base), before any open-set profile: (Router on the adapter "default", its TrainStats)."""
    from mllmcl.model.adapters import lora_config, new_adapter
    from mllmcl.model.loading import load_base, resolve_base
    from mllmcl.model.training import train

    cfg = params.router
    pool = build_pool(tasks, tasks_dir)
    model, processor = load_base(resolve_base(params.base, base_dir), trust_remote_code=params.base.trust_remote_code)
    prompting = Prompting.for_model(model, processor)
    train_set = labelled_sets(tasks, tasks_dir, cfg, "train", cfg.samples_per_task, cfg.base_samples)
    train_set += question_swaps(train_set, cfg.question_swaps, cfg.seed)
    examples = _encode_labelled(prompting, pool, train_set, tasks_dir, with_answers=True)
    peft_model = new_adapter(model, lora_config(cfg, model, role="router"), seed=cfg.seed)  # "default": saved flat
    stats = train(
        peft_model,
        examples,
        cfg,
        pad_id=prompting.tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir,
        desc="router",
        progress=progress,
        fingerprint_extra={"pool": [asdict(e) for e in pool]},
        precision=params.compute.mixed_precision,
    )
    # thresholds are the defaults here: train_router and RoutedModel apply the `routing:` they answer with
    return Router(peft_model, prompting, pool, adapter="default"), stats
