"""The `train_router` stage's work: fit the router, its open-set profiles, measure it on held-out samples and
save adapter, pool and stats into one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mllmcl.config import Params
from mllmcl.continual.embedding_cache import EmbeddingCache, base_key
from mllmcl.continual.open_set import QUESTIONS
from mllmcl.continual.router.evaluation import evaluate_router
from mllmcl.continual.router.mllm import fit_router
from mllmcl.continual.router.pool import POOL_FILE, STATS_FILE, pool_json
from mllmcl.continual.router.profiles import fit_open_set, fit_question_set
from mllmcl.continual.router.replay import held_out_set


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
