"""Open-set detection for the router: is an image request like any task the experts learned?

The router is trained on the learned tasks only, so it answers an unseen kind of image with some letter, often
confidently. What it cannot fake is distance: the base model's own embedding of the image (the projector's output,
which no adapter trains) is compared with each learned task's Gaussian: its mean and its own covariance, shrunk by
Ledoit-Wolf (Mahalanobis). A request farther from every task than a high quantile of held-out known requests is novel: it goes
to the plain base and is flagged unknown, unless its question is one the learned tasks are asked: a second profile, of
the base's question embeddings, keeps a known task shown in a new look (the ability track's shifted test renders,
a darker camera) with its expert, still flagged unknown for drift monitoring. Measured on the ability track, images
alone sent 43% of the shifted test requests to the base (gui: all of them) where the router's letters were right for
99.3%. The profiles are fitted when the router is trained and ship in the router's folder, so a registry version
carries the open set it was calibrated with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mllmcl.errors import ModelLoadError

PROFILE_WEIGHTS = "open_set.safetensors"
PROFILE_META = "open_set.json"
QUESTIONS = "open_set_questions"  # the questions' profile: <QUESTIONS>.safetensors / .json beside the images' one
COMPACT_DIM = 64  # embeddings kept in logs and profiles; larger ones are randomly projected down to this


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


MAX_COMPONENTS = 4  # Gaussians per task at most: a task's images often come in a few looks (plots, diagrams...)
MIN_PER_COMPONENT = 40  # images per Gaussian at least: fewer give a covariance that is mostly shrinkage


@dataclass
class NoveltyProfile:
    """A few Gaussians per task (mean and precision, i.e. inverse covariance, of its image embeddings), which task each
    belongs to, and the distance above which a request is novel (`threshold`, the `quantile` of held-out known
    requests' distances)."""

    tasks: list[str]  # the task of each component
    means: object  # (components, dim) float32
    precisions: object  # (components, dim, dim) float32
    threshold: float = float("inf")
    quantile: float = 1.0
    calibration: object = None  # sorted distances of the held-out known requests: any quantile can be read later
    floor: float = 0.0  # the threshold never goes below this (float noise on tasks asked in fixed wordings)

    @classmethod
    def fit(cls, embeddings: Mapping[str, object], seed: int = 0) -> NoveltyProfile:
        """Per task, its images split by k-means into up to MAX_COMPONENTS looks, each a Gaussian whose covariance
        Ledoit-Wolf shrinks. Tasks differ in how much their images vary (a chart against a photo) and a task can
        have several looks: one covariance shared by all tasks separated unseen kinds badly on the embedded benchmark
        (AUROC 0.84), one per task well (0.997) but with a heavy tail of known `sci` images; four looks per task kept
        the AUROC and flagged 0.8% of known test images instead of 1.6%, at the same 0.99 quantile."""
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.covariance import LedoitWolf

        owners, means, precisions = [], [], []
        for task, x in embeddings.items():
            x = np.asarray(x, dtype=np.float64)
            if len(x) < 2:
                continue
            k = max(1, min(MAX_COMPONENTS, len(x) // MIN_PER_COMPONENT))
            labels = np.zeros(len(x), dtype=int) if k == 1 else KMeans(k, n_init=4, random_state=seed).fit_predict(x)
            for c in range(k):
                part = x[labels == c]
                if len(part) < 2:
                    continue
                # a hundred samples in 64 dimensions give a near-singular sample covariance whose inverse would blow
                # up rarely varying directions: Ledoit-Wolf picks the shrinkage towards a scaled identity from the data
                cov = LedoitWolf().fit(part).covariance_
                cov += 1e-6 * (np.trace(cov) / cov.shape[0] + 1e-12) * np.eye(cov.shape[0])
                owners.append(task)
                means.append(part.mean(axis=0))
                precisions.append(np.linalg.inv(cov))
        if not owners:
            raise ValueError("an open-set profile needs at least 2 image embeddings of a task")
        return cls(owners, np.stack(means).astype(np.float32), np.stack(precisions).astype(np.float32))

    def distances(self, x):
        """Distance of each row to its nearest Gaussian (Mahalanobis under that Gaussian's covariance), and the task
        that Gaussian belongs to."""
        import numpy as np

        x = np.asarray(x, dtype=np.float32)
        diff = x[:, None, :] - self.means[None, :, :]  # (n, components, dim)
        d2 = np.einsum("ntd,tde,nte->nt", diff, self.precisions, diff)
        nearest = [self.tasks[i] for i in d2.argmin(axis=1)]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0)), nearest

    def calibrate(self, known, quantile: float) -> NoveltyProfile:
        """Keep the held-out known requests' distances and set the threshold at their `quantile` (1.0: nothing is
        ever novel)."""
        import numpy as np

        self.calibration = np.sort(self.distances(known)[0]).astype(np.float32) if len(known) else None
        return self.at_quantile(quantile)

    def at_quantile(self, quantile: float) -> NoveltyProfile:
        """The threshold at another quantile of the kept calibration distances: what answer time applies
        (`routing.novelty_quantile`), so that changing it never refits or retrains anything."""
        import numpy as np

        self.quantile = float(quantile)
        if quantile >= 1.0 or self.calibration is None or not len(self.calibration):
            self.threshold = float("inf")
        else:
            self.threshold = max(float(np.quantile(self.calibration, quantile)), self.floor)
        return self

    def task_distances(self, x):
        """(n, tasks) distance of each row to each task's nearest Gaussian, with the task names in column order:
        what the prototype router classifies by."""
        import numpy as np

        x = np.asarray(x, dtype=np.float32)
        diff = x[:, None, :] - self.means[None, :, :]
        d2 = np.maximum(np.einsum("ntd,tde,nte->nt", diff, self.precisions, diff), 0.0)
        names = list(dict.fromkeys(self.tasks))
        cols = [d2[:, [i for i, t in enumerate(self.tasks) if t == name]].min(axis=1) for name in names]
        return np.sqrt(np.stack(cols, axis=1)), names

    def save(self, folder: Path, stem: str | None = None) -> None:
        """Into `folder` as open_set.safetensors/.json (images), or `stem`.safetensors/.json (the questions')."""
        import torch
        from safetensors.torch import save_file

        weights, meta_file = _files(Path(folder), stem)
        tensors = {"means": torch.from_numpy(self.means), "precisions": torch.from_numpy(self.precisions)}
        if self.calibration is not None:
            tensors["calibration"] = torch.from_numpy(self.calibration)
        save_file(tensors, str(weights))
        meta = {"tasks": self.tasks, "threshold": self.threshold, "quantile": self.quantile, "floor": self.floor}
        meta_file.write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, stem: str | None = None) -> NoveltyProfile | None:
        """The profile saved beside a router, or None for a router trained before such profiles existed."""
        weights, meta_file = _files(Path(folder), stem)
        if not meta_file.exists():
            return None
        try:
            from safetensors.numpy import load_file

            arrays = load_file(str(weights))
            meta = json.loads(meta_file.read_text())
            return cls(
                meta["tasks"],
                arrays["means"],
                arrays["precisions"],
                float(meta["threshold"]),
                meta["quantile"],
                arrays.get("calibration"),
                float(meta.get("floor", 0.0)),
            )
        except Exception as e:  # a damaged or older-format profile is a broken model folder, named as such
            raise ModelLoadError(
                f"{weights}: unreadable open-set profile ({type(e).__name__}: {e}); retrain the router"
            ) from None


def _files(folder: Path, stem: str | None) -> tuple[Path, Path]:
    if stem is None:
        return folder / PROFILE_WEIGHTS, folder / PROFILE_META
    return folder / f"{stem}.safetensors", folder / f"{stem}.json"
