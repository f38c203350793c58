"""The frozen base's image embeddings, computed once per image and reused by every later router retraining.

The router's open-set profile is fitted on the base's compact image embeddings of a few hundred training images per
task (`router.fit_open_set`). The router's LoRA sits in the decoder, after these embeddings, so an image's embedding
depends only on the base and the image: a continual stage that adds a 6th task needs the new task's embeddings, not
all six again (10.6 s of a 6-task router stage went to re-embedding 3,600 images).

Entries live in `<folder>/<base key>/<shard>.npz` (keys: sha256 of the image bytes; vectors: float32), written
atomically. The base key hashes the base's files; as a second guard, every lookup recomputes a few cached entries and
drops the whole base key's cache when one differs (a router setting that trains a module before the decoder, or a
base changed in place), so a stale entry can never reach a profile."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SPOT_CHECKS = 4  # cached entries recomputed on every lookup


def base_key(name_or_path: str) -> str:
    """A short digest of the base: its files' contents for a local folder (loading.folder_digest), its name for a hub
    id."""
    from mllmcl.model.loading import folder_digest

    if Path(name_or_path).is_dir():
        return folder_digest(Path(name_or_path))[:16]
    return hashlib.sha256(f"hub:{name_or_path}".encode()).hexdigest()[:16]


class EmbeddingCache:
    """Image embeddings of one base, by the sha256 of the image's bytes. `folder=None` caches nothing. The shards are
    read once per instance and checked against the model once (a router retraining asks twice: fit, calibration)."""

    def __init__(self, folder: Path | None, key: str):
        self.folder = None if folder is None else Path(folder) / key
        self.hits = 0
        self.misses = 0
        self._shards: dict[str, dict[str, object]] | None = None  # shard -> image sha256 -> vector
        self._checked = False

    def _entries(self) -> dict[str, dict[str, object]]:
        import numpy as np

        if self._shards is None:
            self._shards = {}
            for shard in sorted(self.folder.glob("*.npz")) if self.folder is not None else []:
                try:
                    with np.load(shard, allow_pickle=False) as z:
                        self._shards[shard.stem] = dict(zip(z["keys"].tolist(), z["vectors"]))
                except (OSError, ValueError, KeyError) as e:  # a damaged shard is recomputed, never trusted
                    log.warning("embedding cache %s unreadable (%s); recomputing its entries", shard, e)
        return self._shards

    def _save(self, shard: str) -> None:
        import numpy as np

        if self.folder is None:
            return
        entries = self._entries()[shard]
        keys = sorted(entries)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{shard}.npz"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # benchmark workers may save the same shard
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys), vectors=np.stack([np.asarray(entries[k], np.float32) for k in keys]))
        tmp.replace(path)

    def _trusted(self, cached: dict, items, hit: list[int], compute) -> bool:
        """Recompute a few cached entries; any that differs condemns the whole cache of this base key."""
        import numpy as np

        checks = hit[:: max(1, len(hit) // SPOT_CHECKS)][:SPOT_CHECKS]
        fresh = compute(checks)
        self._checked = True
        return all(
            f is not None and np.allclose(f, cached[items[i][1]], rtol=1e-4, atol=1e-5) for i, f in zip(checks, fresh)
        )

    def embed(self, items: Sequence[tuple[str, str]], compute: Callable[[list[int]], list]) -> list:
        """Embeddings of `items` ((shard, image sha256) each), in order. `compute(indices)` embeds the items at those
        indices (None for an item without one); only misses and the spot checks are computed."""
        cached = {key: v for entries in self._entries().values() for key, v in entries.items()}
        hit = [i for i, (_, key) in enumerate(items) if key in cached]
        if hit and not self._checked and not self._trusted(cached, items, hit, compute):
            log.warning("embedding cache %s disagrees with the model; recomputing every embedding", self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)
            self._shards, cached, hit = {}, {}, []
        hit_set = set(hit)
        missing = [i for i in range(len(items)) if i not in hit_set]
        out: list = [cached[items[i][1]] if i in hit_set else None for i in range(len(items))]
        changed = set()
        for i, vector in zip(missing, compute(missing) if missing else []):
            out[i] = vector
            if vector is not None:
                shard, key = items[i]
                self._entries().setdefault(shard, {})[key] = vector
                changed.add(shard)
        for shard in sorted(changed):
            self._save(shard)
        self.hits += len(hit)
        self.misses += len(missing)
        return out
