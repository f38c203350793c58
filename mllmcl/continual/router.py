"""The MLLM-based router of MR-LoRA: a LoRA on the same base that reads the request (image + question) and a
pool of experts (a letter and a description each) and answers with a letter. Trained on a small replay
set of every task so far plus text-only questions labelled "base"; an illegal letter or a low confidence
routes to the base model (open set), never to a random expert."""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.config import Params, RouterConfig
from mllmcl.continual.embedding_cache import EmbeddingCache, base_key
from mllmcl.continual.open_set import QUESTIONS, NoveltyProfile, compact
from mllmcl.data import records as rec_io
from mllmcl.data.images import read_image_bytes
from mllmcl.errors import DataError, ModelLoadError
from mllmcl.model.batching import Encoded, collate, encode, open_image
from mllmcl.model.embeddings import decoder_input_embeddings, image_token_id, pooled_image_embeddings
from mllmcl.model.loading import Prompting

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

    def route(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64) -> list[Route]:
        """requests: (PIL image or None, question) pairs. Each route carries the base's image embedding, read off the
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


def router_vocabulary(tasks: Sequence[tuple[str, str]]) -> list[str]:
    """The router prompt's words for a tokenizer corpus (the tiny base learns them as whole tokens)."""
    pool = [PoolEntry(chr(ord("A") + i), name, desc) for i, (name, desc) in enumerate(tasks)]
    text = router_pool_text(pool + [PoolEntry(BASE_LETTER, BASE, "anything else")]) + router_question(pool, "")
    letters = " ".join(f" {chr(c)}" for c in range(ord("A"), ord("Z") + 1)) + f" {BASE_LETTER}"
    return [text, letters]


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
            images.setdefault(label, []).append((_source_task(label, rec), rec["image"]))
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


def _labelled_sets(tasks, tasks_dir: Path, cfg: RouterConfig, split: str, per_task: int, base_per_split: int):
    labelled = replay_set(tasks, tasks_dir, split, per_task, cfg.seed)
    language = replay_set([cfg.base_suite], tasks_dir, split, base_per_split, cfg.seed)
    labelled += [(BASE, {**rec, "_task": task}) for task, rec in language]
    return labelled


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
    train_set = _labelled_sets(tasks, tasks_dir, cfg, "train", cfg.samples_per_task, cfg.base_samples)
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
    router = Router(
        peft_model,
        prompting,
        pool,
        min_confidence=cfg.min_confidence,
        text_only_to_base=cfg.text_only_to_base,
        adapter="default",
    )
    return router, stats


def held_out_set(tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig, per_task: int) -> list[tuple[str, dict]]:
    """`per_task` test samples of every task and as many text-only ones labelled base: what routing is measured on."""
    return _labelled_sets(tasks, tasks_dir, cfg, "test", per_task, per_task)


def train_router(
    tasks: Sequence[str],
    params: Params,
    *,
    base_dir: Path,
    tasks_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    embedding_cache: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train the router (fit_router), measure it on held-out test samples, and save adapter, pool and stats to
    `out_dir`. `embedding_cache`: a folder keeping the base's image embeddings for the open-set profile between runs
    (`mllmcl/continual/embedding_cache.py`)."""
    from mllmcl.model.adapters import save_adapter
    from mllmcl.model.loading import base_identity, resolve_base

    cfg = params.router
    base = resolve_base(params.base, base_dir)
    router, stats = fit_router(
        tasks, params, base_dir=base_dir, tasks_dir=tasks_dir, checkpoint_dir=checkpoint_dir, progress=progress
    )
    peft_model, pool = router.model, router.pool
    cache = EmbeddingCache(embedding_cache, base_key(base) if embedding_cache is not None else "")
    router.open_set, open_set_stats = fit_open_set(router, tasks, tasks_dir, cfg, cache)
    router.question_set, open_set_stats["questions"] = fit_question_set(router, tasks, tasks_dir, cfg)
    held_out = held_out_set(tasks, tasks_dir, cfg, cfg.eval_samples_per_task)
    result = {**stats.to_json(), **evaluate_router(router, held_out, tasks_dir), "open_set": open_set_stats}
    result.update(
        tasks=list(tasks),
        base=base_identity(params.base, Path(base_dir)),  # evaluate refuses the router on another base
        samples_per_task=cfg.samples_per_task,
        base_samples=cfg.base_samples,
        question_swaps=cfg.question_swaps,
    )
    save_adapter(peft_model, out_dir, result, STATS_FILE)
    (Path(out_dir) / POOL_FILE).write_text(json.dumps(pool_json(pool, cfg), indent=2) + "\n")
    if router.open_set is not None:
        router.open_set.save(Path(out_dir))
    if router.question_set is not None:
        router.question_set.save(Path(out_dir), QUESTIONS)
    return result


def _source_task(label: str, rec: dict) -> str:
    """The task folder a labelled record's image lies in: its label's, or the one `_task` names (a base-labelled suite
    record, a question swap's image)."""
    return rec.get("_task", label)


def _folder(label: str, rec: dict, tasks_dir: Path) -> Path:
    """Where a labelled record's images are (`_source_task`)."""
    return Path(tasks_dir) / _source_task(label, rec)


def labelled_request(label: str, rec: dict, tasks_dir: Path) -> tuple:
    """(image or None, question) of a labelled record."""
    folder = _folder(label, rec, tasks_dir)
    return (open_image(folder / rec["image"]) if rec.get("image") else None, rec["question"])


def labelled_image_embeddings(router: Router, labelled, tasks_dir: Path, cache: EmbeddingCache) -> list[tuple]:
    """(label, base image embedding or None) of each labelled record that has an image, through `cache` (keyed by
    the image's bytes), so only images it has not seen are opened and embedded."""
    rows = [(label, rec) for label, rec in labelled if rec.get("image")]

    def compute(indices):
        return router.image_embeddings([labelled_request(*rows[i], tasks_dir) for i in indices])

    items = [
        (label, hashlib.sha256(read_image_bytes(_folder(label, rec, tasks_dir) / rec["image"])).hexdigest())
        for label, rec in rows
    ]
    return [(label, v) for (label, _), v in zip(rows, cache.embed(items, compute))]


def fit_open_set(router: Router, tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig, cache=None):
    """The open-set profile of `tasks`: one Gaussian per task fitted on `novelty_samples_per_task` of its training
    images, the threshold calibrated on as many other training images (the test split stays unseen for evaluation).
    Returns (profile or None when there are no image tasks, stats for router_stats.json). `cache`: an
    EmbeddingCache the base's image embeddings are read from and added to (default: none kept)."""
    import numpy as np

    cache = cache or EmbeddingCache(None, "")

    n = cfg.novelty_samples_per_task
    picked = replay_set(tasks, tasks_dir, "train", 2 * n, cfg.seed + 1)
    fit, calibration = [], []
    for task in tasks:
        rows = [(t, r) for t, r in picked if t == task]
        half = min(n, len(rows) // 2)  # a small task: half to fit, half to calibrate
        fit += rows[:half]
        fitted = {r.get("image") for _, r in rows[:half]}  # the embedding ignores the question: disjoint by image
        calibration += [(t, r) for t, r in rows[half : 2 * half] if r.get("image") not in fitted]
    fit_emb = labelled_image_embeddings(router, fit, tasks_dir, cache)
    cal_emb = [e for _, e in labelled_image_embeddings(router, calibration, tasks_dir, cache)]
    by_task: dict[str, list] = {}
    for label, emb in fit_emb:
        if emb is not None:
            by_task.setdefault(label, []).append(emb)
    by_task = {t: v for t, v in by_task.items() if len(v) >= 2}
    if not by_task:
        return None, {"enabled": False, "reason": "no image embeddings (text-only tasks or no image tokens)"}
    profile = NoveltyProfile.fit({t: np.stack(v) for t, v in by_task.items()})
    known = [e for e in cal_emb if e is not None]
    profile.calibrate(np.stack(known) if known else np.zeros((0, profile.means.shape[1])), cfg.novelty_quantile)
    return profile, {
        "enabled": profile.threshold != float("inf"),
        "threshold": round(profile.threshold, 4) if profile.threshold != float("inf") else None,
        "quantile": cfg.novelty_quantile,
        "fit_images": sum(len(v) for v in by_task.values()),
        "calibration_images": len(known),
        "embeddings_cached": cache.hits,
        "embeddings_computed": cache.misses,
    }


def fit_question_set(router: Router, tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig):
    """The questions' profile: Gaussians of the base's question embeddings per image task, fitted on training questions
    and calibrated, at the images' quantile, on other training questions. Returns (profile or None, stats)."""
    import numpy as np

    from mllmcl.model.embeddings import question_embeddings

    n = cfg.novelty_samples_per_task
    picked = [(t, r) for t, r in replay_set(tasks, tasks_dir, "train", 2 * n, cfg.seed + 2) if r.get("image")]
    fit: dict[str, list[str]] = {}
    calibration: list[str] = []
    for task in tasks:
        questions = [r["question"] for t, r in picked if t == task]
        half = len(questions) // 2
        if half >= 2:
            fit[task], calibration = questions[:half], calibration + questions[half:]
    if not fit:
        return None, {"enabled": False, "reason": "no image task with questions to fit"}

    def embed(questions):
        return compact(question_embeddings(router.model, router.prompting.tokenizer, questions))

    profile = NoveltyProfile.fit({t: embed(q) for t, q in fit.items()}).calibrate(
        embed(calibration) if calibration else np.zeros((0, 1)), cfg.novelty_quantile
    )
    # tasks asked in a handful of fixed wordings put every known question at distance ~0: a floor keeps float noise
    # from turning one of them novel
    profile.threshold = max(profile.threshold, 1e-3)
    return profile, {
        "enabled": True,
        "threshold": round(profile.threshold, 4) if profile.threshold != float("inf") else None,
        "fit_questions": sum(len(q) for q in fit.values()),
        "calibration_questions": len(calibration),
    }


def pool_json(pool: Sequence[PoolEntry], cfg: RouterConfig) -> dict:
    """pool.json, saved next to the router adapter: the pool plus the fallback settings inference must apply."""
    return {
        "experts": [asdict(e) for e in pool],
        "base_letter": BASE_LETTER,
        "min_confidence": cfg.min_confidence,
        "text_only_to_base": cfg.text_only_to_base,
        "fallback": "base model on an illegal letter or a confidence below min_confidence",
    }


def load_pool(router_dir: Path) -> tuple[list[PoolEntry], dict]:
    """The pool and settings a router was trained with; raises ModelLoadError when `router_dir` has no pool.json."""
    path = Path(router_dir) / POOL_FILE
    if not path.exists():
        raise ModelLoadError(f"{path}: router pool not found (train the router first)")
    data = json.loads(path.read_text())
    return [PoolEntry(**e) for e in data["experts"]], data


def evaluate_router(router: Router, labelled: list[tuple[str, dict]], tasks_dir: Path) -> dict:
    """Held-out routing accuracy per task, for the base fallback, and the confusion counts."""
    t0 = time.perf_counter()
    routes = router.route([labelled_request(label, rec, tasks_dir) for label, rec in labelled])
    confusion: dict[str, dict[str, int]] = {}
    for (label, _), route in zip(labelled, routes):
        row = confusion.setdefault(label, {})
        row[route.task] = row.get(route.task, 0) + 1
    per_task = {t: round(row.get(t, 0) / sum(row.values()), 4) for t, row in confusion.items()}
    expert_labels = [(lab, r) for (lab, _), r in zip(labelled, routes) if lab != BASE]
    acc = sum(r.task == lab for lab, r in expert_labels) / max(1, len(expert_labels))
    return {
        "accuracy": round(acc, 4),
        "base_routing_accuracy": per_task.get(BASE, 0.0),
        "per_task_accuracy": per_task,
        "confusion": confusion,
        "eval_seconds": round(time.perf_counter() - t0, 2),
    }
