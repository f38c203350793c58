"""Routing accuracy on held-out requests: per task, for the base fallback, and the confusion counts."""

from __future__ import annotations

import time
from pathlib import Path

from mllmcl.continual.router.pool import BASE
from mllmcl.continual.router.replay import labelled_request


def evaluate_router(router, labelled: list[tuple[str, dict]], tasks_dir: Path) -> dict:
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
    by_mllm = sum(r.by == "mllm" for r in routes)
    return {
        "accuracy": round(acc, 4),
        "mllm_share": round(by_mllm / max(1, len(routes)), 4),  # requests that paid an MLLM router pass
        "base_routing_accuracy": per_task.get(BASE, 0.0),
        "per_task_accuracy": per_task,
        "confusion": confusion,
        "eval_seconds": round(time.perf_counter() - t0, 2),
    }
