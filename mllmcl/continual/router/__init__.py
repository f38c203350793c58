"""Routers: which expert answers a request (or the plain base). One module per job: the pool and routes (`pool`),
the replay memory (`replay`), the base's own features (`features`), one module per kind (`mllm`: MR-LoRA's router;
`prototype`: per-task Gaussians of those features; `cascade`: the prototype first), the open-set profiles
(`profiles`), training (`training`) and measuring (`evaluation`). Callers import from here."""

from mllmcl.continual.router.cascade import CascadeRouter
from mllmcl.continual.router.evaluation import evaluate_router
from mllmcl.continual.router.features import BaseFeatures
from mllmcl.continual.router.mllm import Router, fit_router
from mllmcl.continual.router.pool import (
    BASE,
    BASE_LETTER,
    POOL_FILE,
    STATS_FILE,
    PoolEntry,
    Route,
    build_pool,
    load_pool,
    pool_json,
    router_pool_text,
    router_question,
    router_vocabulary,
    task_description,
)
from mllmcl.continual.router.profiles import fit_open_set, fit_question_set, labelled_image_embeddings
from mllmcl.continual.router.prototype import PrototypeRouter
from mllmcl.continual.router.replay import (
    held_out_set,
    labelled_request,
    labelled_sets,
    question_swaps,
    replay_set,
    source_folder,
    source_task,
)
from mllmcl.continual.router.training import routing_router, train_router

__all__ = [
    "BASE",
    "BASE_LETTER",
    "BaseFeatures",
    "CascadeRouter",
    "POOL_FILE",
    "STATS_FILE",
    "PoolEntry",
    "PrototypeRouter",
    "Route",
    "Router",
    "build_pool",
    "evaluate_router",
    "fit_open_set",
    "fit_question_set",
    "fit_router",
    "held_out_set",
    "labelled_image_embeddings",
    "labelled_request",
    "labelled_sets",
    "load_pool",
    "pool_json",
    "question_swaps",
    "replay_set",
    "router_pool_text",
    "router_question",
    "router_vocabulary",
    "routing_router",
    "source_folder",
    "source_task",
    "task_description",
    "train_router",
]
