"""The prototype router: each learned task is a few Gaussians of the base's own image embeddings and one of its
question embeddings (the open-set profiles the router ships with anyway), and a request goes to the task under
which its image and question are most likely (a generative classifier: Mahalanobis distance plus log-determinant,
image and question independent given the task). No adapter and no decoder pass: the vision tower and projector run,
and a lookup in the token embeddings. The open set falls out of the same Gaussians: an image farther from every task
than the calibrated quantile goes to the base, unless its question is one a learned task is asked."""

from __future__ import annotations

from collections.abc import Sequence

from mllmcl.continual.open_set import NoveltyProfile
from mllmcl.continual.router.features import BaseFeatures
from mllmcl.continual.router.pool import BASE, PoolEntry, Route


class TaskGaussians:
    """A profile's Gaussians as the classifier reads them: float64 means and precisions, each one's log-determinant
    computed once, and the component columns of each task."""

    def __init__(self, profile: NoveltyProfile, names: list[str]):
        import numpy as np

        self.means = np.asarray(profile.means, dtype=np.float64)
        self.precisions = np.asarray(profile.precisions, dtype=np.float64)
        self.logdet = np.array([np.linalg.slogdet(p)[1] for p in self.precisions])  # log|precision| = -log|cov|
        self.columns = [[i for i, t in enumerate(profile.tasks) if t == name] for name in names]

    def log_likelihoods(self, x):
        """(n, tasks) log-likelihood, up to a constant, of each row under each task's best Gaussian; a task the
        profile lacks gets the row's mean over the tasks it has (no evidence either way, never a bonus)."""
        import numpy as np

        x = np.asarray(x, dtype=np.float64)
        diff = x[:, None, :] - self.means[None, :, :]
        d2 = np.maximum(np.einsum("ntd,tde,nte->nt", diff, self.precisions, diff), 0.0)
        per_component = -0.5 * d2 + 0.5 * self.logdet[None, :]
        out = np.full((len(x), len(self.columns)), np.nan)
        for j, cols in enumerate(self.columns):
            if cols:
                out[:, j] = per_component[:, cols].max(axis=1)
        if np.isnan(out).any():
            present = ~np.isnan(out).all(axis=0)
            fill = out[:, present].mean(axis=1, keepdims=True) if present.any() else np.zeros((len(x), 1))
            out = np.where(np.isnan(out), fill, out)
        return out


class PrototypeRouter:
    """Routes by the base's features against per-task Gaussians (`images`: the open-set profile; `questions`: the
    questions' profile). Text-only requests go to the base: the learned tasks are image tasks."""

    kind = "prototype"

    def __init__(
        self,
        features: BaseFeatures,
        pool: Sequence[PoolEntry],
        images: NoveltyProfile,
        questions: NoveltyProfile | None = None,
    ):
        self.features, self.pool, self.images, self.questions = features, list(pool), images, questions
        self.letter = {e.task: e.letter for e in self.pool}
        self.tasks = [t for t in dict.fromkeys(images.tasks)]
        self._images = TaskGaussians(images, self.tasks)
        self._questions = TaskGaussians(questions, self.tasks) if questions is not None else None

    def scores(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64, encoded=None):
        """For the image requests of `requests`: their row indices, compact image embeddings, the posterior over
        `self.tasks`, the image novelty and whether each question is a known one."""
        import numpy as np

        rows = [i for i, (image, _) in enumerate(requests) if image is not None]
        if not rows:
            return rows, [], np.zeros((0, len(self.tasks))), np.zeros(0), np.zeros(0, dtype=bool)
        images = self.features.image_embeddings(
            [requests[i] for i in rows],
            batch_size=batch_size,
            encoded=None if encoded is None else [encoded[i] for i in rows],
        )
        x = np.stack(images)
        log_lik = self._images.log_likelihoods(x)
        novelty = self.images.distances(x)[0]
        known_question = np.zeros(len(rows), dtype=bool)
        if self.questions is not None:
            q = self.features.question_embeddings([requests[i][1] for i in rows])
            log_lik = log_lik + self._questions.log_likelihoods(q)
            known_question = self.questions.distances(q)[0] <= self.questions.threshold
        log_lik -= log_lik.max(axis=1, keepdims=True)
        posterior = np.exp(log_lik)
        posterior /= posterior.sum(axis=1, keepdims=True)
        return rows, images, posterior, novelty, known_question

    def route(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64, encoded=None) -> list[Route]:
        """One Route per (image or None, question) request; `encoded`: the same requests already through the base's
        processor (RoutedModel.predict passes the ones its answering pass reads), so images are processed once."""
        routes = [Route(BASE, None, 1.0, "(text-only: the prototype sends it to base)", by=self.kind) for _ in requests]
        rows, images, posterior, novelty, known_question = self.scores(requests, batch_size=batch_size, encoded=encoded)
        for k, i in enumerate(rows):
            best = int(posterior[k].argmax())
            task, conf, d = self.tasks[best], float(posterior[k, best]), float(novelty[k])
            raw, known = f"prototype: {task} p={conf:.3f}", True
            if d > self.images.threshold:  # an image unlike every learned task
                known = False
                if known_question[k]:  # a learned task in a new look: its expert answers, drift is flagged
                    raw += " (novel image, known question)"
                else:
                    task, raw = BASE, raw + " (novel image)"
            letter = self.letter.get(task) if task != BASE else None
            routes[i] = Route(task, letter, conf, raw, known=known, novelty=d, image_embedding=images[k], by=self.kind)
        return routes
