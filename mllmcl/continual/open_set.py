"""Open-set detection for the router: is an image request like any task the experts learned?

The router is trained on the learned tasks only, so it answers an unseen kind of image with some letter, often
confidently. What it cannot fake is distance: the base model's own embedding of the image (the projector's output,
which no adapter trains) is compared with each learned task's mean under one shared, shrunk covariance
(Mahalanobis). A request farther from every task than a high quantile of held-out known requests is novel: it goes
to the plain base and is flagged unknown. The profile is fitted when the router is trained and ships in the router's
folder, so a registry version carries the open set it was calibrated with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mllmcl.errors import ModelLoadError

PROFILE_WEIGHTS = "open_set.safetensors"
PROFILE_META = "open_set.json"
COMPACT_DIM = 64  # embeddings kept in logs and profiles; larger ones are randomly projected down to this
SHRINKAGE = 0.1  # share of the covariance replaced by its mean variance: stable with few samples per task


def compact(vectors, dim: int = COMPACT_DIM, seed: int = 0):
    """Embeddings wider than `dim` are projected with a fixed seeded Gaussian matrix (distances are kept up to a
    small distortion, Johnson-Lindenstrauss), so that logs and profiles stay small for a 4096-wide 7B base."""
    import numpy as np

    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] <= dim:
        return x
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((x.shape[1], dim)).astype(np.float32) / np.sqrt(dim)
    return x @ proj


@dataclass
class NoveltyProfile:
    """Per-task means and one shared precision matrix of image embeddings, and the distance above which a request is
    novel (`threshold`, the `quantile` of held-out known requests' distances)."""

    tasks: list[str]
    means: object  # (tasks, dim) float32
    precision: object  # (dim, dim) float32
    threshold: float = float("inf")
    quantile: float = 1.0

    @classmethod
    def fit(cls, embeddings: Mapping[str, object]) -> NoveltyProfile:
        """Means per task and the pooled within-task covariance, shrunk towards its mean variance."""
        import numpy as np

        tasks = [t for t, x in embeddings.items() if len(x)]
        if not tasks:
            raise ValueError("no embeddings to fit an open-set profile on")
        groups = [np.asarray(embeddings[t], dtype=np.float64) for t in tasks]
        means = np.stack([g.mean(axis=0) for g in groups])
        centred = np.concatenate([g - m for g, m in zip(groups, means)])
        cov = centred.T @ centred / max(1, len(centred) - len(groups))
        dim = cov.shape[0]
        cov = (1 - SHRINKAGE) * cov + SHRINKAGE * (np.trace(cov) / dim + 1e-6) * np.eye(dim)
        return cls(tasks, means.astype(np.float32), np.linalg.inv(cov).astype(np.float32))

    def distances(self, x):
        """Distance of each row to its nearest task (Mahalanobis); the nearest task's index as well."""
        import numpy as np

        x = np.asarray(x, dtype=np.float32)
        diff = x[:, None, :] - self.means[None, :, :]  # (n, tasks, dim)
        d2 = np.einsum("ntd,de,nte->nt", diff, self.precision, diff)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0)), d2.argmin(axis=1)

    def calibrate(self, known, quantile: float) -> NoveltyProfile:
        """Set the threshold at `quantile` of held-out known requests' distances (1.0: nothing is ever novel)."""
        import numpy as np

        self.quantile = float(quantile)
        if quantile >= 1.0 or not len(known):
            self.threshold = float("inf")
        else:
            self.threshold = float(np.quantile(self.distances(known)[0], quantile))
        return self

    def save(self, folder: Path) -> None:
        import torch
        from safetensors.torch import save_file

        folder = Path(folder)
        save_file(
            {"means": torch.from_numpy(self.means), "precision": torch.from_numpy(self.precision)},
            str(folder / PROFILE_WEIGHTS),
        )
        meta = {"tasks": self.tasks, "threshold": self.threshold, "quantile": self.quantile, "shrinkage": SHRINKAGE}
        (folder / PROFILE_META).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> NoveltyProfile | None:
        """The profile saved beside a router, or None for a router trained before open-set profiles existed."""
        folder = Path(folder)
        if not (folder / PROFILE_META).exists():
            return None
        try:
            from safetensors.numpy import load_file

            arrays = load_file(str(folder / PROFILE_WEIGHTS))
            meta = json.loads((folder / PROFILE_META).read_text())
        except Exception as e:  # a damaged profile is a broken model folder, named as such
            raise ModelLoadError(f"{folder / PROFILE_WEIGHTS}: unreadable open-set profile ({e})") from None
        return cls(meta["tasks"], arrays["means"], arrays["precision"], float(meta["threshold"]), meta["quantile"])
