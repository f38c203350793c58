"""The open-set profiles a router ships with: Gaussians of the base's image embeddings and of its question
embeddings per learned task, fitted on training samples and calibrated on others (mllmcl.continual.open_set)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from mllmcl.config import RouterConfig, RoutingConfig
from mllmcl.continual.embedding_cache import EmbeddingCache
from mllmcl.continual.open_set import NoveltyProfile
from mllmcl.continual.router.features import BaseFeatures
from mllmcl.continual.router.replay import labelled_request, replay_set, source_folder
from mllmcl.data.images import read_image_bytes

# Profiles keep their calibration distances and answer time applies `routing.novelty_quantile`; the thresholds in a
# router's stats are at the default quantile, so that training never depends on a routing setting.
TRAINING_QUANTILE = RoutingConfig().novelty_quantile


def labelled_image_embeddings(router, labelled, tasks_dir: Path, cache: EmbeddingCache) -> list[tuple]:
    """(label, base image embedding or None) of each labelled record that has an image, through `cache` (keyed by
    the image's bytes), so only images it has not seen are opened and embedded. `router`: anything with
    `image_embeddings(requests)` (BaseFeatures, or an MLLM Router)."""
    rows = [(label, rec) for label, rec in labelled if rec.get("image")]

    def compute(indices):
        return router.image_embeddings([labelled_request(*rows[i], tasks_dir) for i in indices])

    items = [
        (label, hashlib.sha256(read_image_bytes(source_folder(label, rec, tasks_dir) / rec["image"])).hexdigest())
        for label, rec in rows
    ]
    return [(label, v) for (label, _), v in zip(rows, cache.embed(items, compute))]


def fit_open_set(features: BaseFeatures, tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig, cache=None):
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
    fit_emb = labelled_image_embeddings(features, fit, tasks_dir, cache)
    cal_emb = [e for _, e in labelled_image_embeddings(features, calibration, tasks_dir, cache)]
    by_task: dict[str, list] = {}
    for label, emb in fit_emb:
        if emb is not None:
            by_task.setdefault(label, []).append(emb)
    by_task = {t: v for t, v in by_task.items() if len(v) >= 2}
    if not by_task:
        return None, {"enabled": False, "reason": "no image embeddings (text-only tasks or no image tokens)"}
    profile = NoveltyProfile.fit({t: np.stack(v) for t, v in by_task.items()})
    known = [e for e in cal_emb if e is not None]
    profile.calibrate(np.stack(known) if known else np.zeros((0, profile.means.shape[1])), TRAINING_QUANTILE)
    return profile, {
        "enabled": profile.threshold != float("inf"),
        "threshold": round(profile.threshold, 4) if profile.threshold != float("inf") else None,
        "quantile": TRAINING_QUANTILE,
        "fit_images": sum(len(v) for v in by_task.values()),
        "calibration_images": len(known),
        "embeddings_cached": cache.hits,
        "embeddings_computed": cache.misses,
    }


def fit_question_set(features: BaseFeatures, tasks: Sequence[str], tasks_dir: Path, cfg: RouterConfig):
    """The questions' profile: Gaussians of the base's question embeddings per image task, fitted on training questions
    and calibrated, at the images' quantile, on other training questions. Returns (profile or None, stats)."""
    import numpy as np

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

    embed = features.question_embeddings

    profile = NoveltyProfile.fit({t: embed(q) for t, q in fit.items()})
    # tasks asked in a handful of fixed wordings put every known question at distance ~0: a floor keeps float noise
    # from turning one of them novel
    profile.floor = 1e-3
    profile.calibrate(embed(calibration) if calibration else np.zeros((0, 1)), TRAINING_QUANTILE)
    return profile, {
        "enabled": True,
        "threshold": round(profile.threshold, 4) if profile.threshold != float("inf") else None,
        "fit_questions": sum(len(q) for q in fit.values()),
        "calibration_questions": len(calibration),
    }
