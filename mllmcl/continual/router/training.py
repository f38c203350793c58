"""The `train_router` stage's work: fit the router, its open-set profiles, measure it on held-out samples and
save adapter, pool and stats into one folder."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from mllmcl.config import Params, RoutingConfig
from mllmcl.continual.embedding_cache import EmbeddingCache, base_key
from mllmcl.continual.open_set import QUESTIONS
from mllmcl.continual.router.cascade import CascadeRouter
from mllmcl.continual.router.evaluation import evaluate_router
from mllmcl.continual.router.features import BaseFeatures
from mllmcl.continual.router.mllm import fit_router
from mllmcl.continual.router.pool import POOL_FILE, STATS_FILE, build_pool, pool_json
from mllmcl.continual.router.profiles import fit_open_set, fit_question_set
from mllmcl.continual.router.prototype import PrototypeRouter
from mllmcl.continual.router.replay import held_out_set
from mllmcl.errors import ModelLoadError
from mllmcl.model.loading import Prompting


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
    """Train the router of `router.kind` (the MLLM router's LoRA for `mllm` and `cascade`; nothing but the profiles
    for `prototype`), fit the open-set profiles on the base's features, measure it on held-out test samples under
    the default routing thresholds, and save it all to `out_dir`. `embedding_cache`: a folder keeping the base's
    image embeddings between runs (`mllmcl/continual/embedding_cache.py`)."""
    from mllmcl.model.loading import base_identity, load_base, resolve_base

    cfg = params.router
    base = resolve_base(params.base, base_dir)
    t0 = time.perf_counter()
    if cfg.kind == "prototype":
        model, processor = load_base(base, trust_remote_code=params.base.trust_remote_code)
        mllm, stats, features = None, {}, BaseFeatures(model, Prompting.for_model(model, processor))
        pool = build_pool(tasks, tasks_dir)
    else:
        mllm, train_stats = fit_router(
            tasks, params, base_dir=base_dir, tasks_dir=tasks_dir, checkpoint_dir=checkpoint_dir, progress=progress
        )
        stats, features, pool = train_stats.to_json(), BaseFeatures(mllm.model, mllm.prompting), mllm.pool
    cache = EmbeddingCache(embedding_cache, base_key(base) if embedding_cache is not None else "")
    images, open_set_stats = fit_open_set(features, tasks, tasks_dir, cfg, cache)
    questions, open_set_stats["questions"] = fit_question_set(features, tasks, tasks_dir, cfg)
    router_seconds = round(time.perf_counter() - t0, 2)
    router = routing_router(cfg.kind, mllm, features, pool, images, questions, RoutingConfig())
    held_out = held_out_set(tasks, tasks_dir, cfg, cfg.eval_samples_per_task)
    result = {**stats, **evaluate_router(router, held_out, tasks_dir), "open_set": open_set_stats}
    result.update(
        kind=cfg.kind,
        router_seconds=router_seconds,  # training and profiles, every kind: what a stage pays for its router
        tasks=list(tasks),
        base=base_identity(params.base, Path(base_dir)),  # evaluate refuses the router on another base
        samples_per_task=cfg.samples_per_task,
        base_samples=cfg.base_samples,
        question_swaps=cfg.question_swaps,
    )
    _save(out_dir, mllm, result, pool_json(pool, cfg), images, questions)
    return result


def routing_router(kind: str, mllm, features, pool, images, questions, routing: RoutingConfig):
    """The router object of `kind` that answers routes, from its parts (what RoutedModel and training both build)."""
    if mllm is not None:
        mllm.open_set, mllm.question_set = images, questions
        mllm.min_confidence, mllm.text_only_to_base = routing.min_confidence, routing.text_only_to_base
    if kind == "mllm":
        return mllm
    if images is None:
        raise ModelLoadError(f"a {kind} router needs the base's image profiles, and these tasks gave none")
    prototype = PrototypeRouter(features, pool, images, questions)
    if kind == "prototype":
        return prototype
    return CascadeRouter(prototype, mllm, confidence=routing.cascade_confidence)


def _save(out_dir: Path, mllm, stats: dict, pool: dict, images, questions) -> None:
    """The router's folder, replaced whole: the adapter (mllm and cascade), stats, pool.json and the profiles."""
    import shutil
    import tempfile

    from mllmcl.model.adapters import save_adapter

    out_dir = Path(out_dir)
    if mllm is not None:
        save_adapter(mllm.model, out_dir, stats, STATS_FILE)
    else:  # no adapter: the same atomic replacement save_adapter does
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    (out_dir / POOL_FILE).write_text(json.dumps(pool, indent=2) + "\n")
    if images is not None:
        images.save(out_dir)
    if questions is not None:
        questions.save(out_dir, QUESTIONS)
