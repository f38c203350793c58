"""The drift policy: a pure function from a batch's drift verdict to what should happen next.

- `novel`: the requests ask what the learned tasks were not asked: their question embeddings drifted from the
  questions of the tasks they were compared with (the router may still have sent them to an expert, confidently).
  The model has no expert for them: a labelled batch becomes a new task (task add + continual stage); an unlabelled
  one becomes a labelling request (a JSONL for annotators), never training on guessed answers. Without question
  embeddings (an old traffic log) a batch is novel when `drift.novel_share` of it was flagged unknown.
- `known_drift`: the questions are those of a learned task but its inputs moved: the images or statistics drifted,
  or `drift.novel_share` of the requests were flagged unknown by the router's open set (new-looking images asked the
  old questions). That is an alert; a labelled batch can refresh that task (the task most requests belong to).
- `none`: nothing drifted (or too few requests to judge: `wait`).

Why questions and not only the open-set flag: measured on the benchmark (scripts/measure_drift.py), the router's
open set flagged most darker or tinted images of a learned task unknown while letting most requests of three
unseen abilities through to an expert; the questions told the two apart every time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mllmcl.config import DriftConfig
from monitoring.features import BASE
from monitoring.report import DriftResult


@dataclass(frozen=True)
class Decision:
    """What to do about one batch: `kind` of drift, the `action`, a one-line `reason`, the task concerned (known
    drift: the task most requests were routed to), whether the batch is labelled, and the numbers behind it."""

    kind: str
    action: str
    reason: str
    task: str | None = None
    labelled: bool = False
    numbers: dict = field(default_factory=dict)

    @property
    def triggers(self) -> bool:
        """True when something should happen (an alert, a refresh, a new task, a labelling request)."""
        return self.action not in ("none", "wait")

    def to_json(self) -> dict:
        """Plain data for the report JSON."""
        return asdict(self)

    def line(self) -> str:
        """The decision in one line."""
        task = f" task={self.task}" if self.task else ""
        return f"{self.kind}: {self.action}{task} ({self.reason})"


def top_task(counts: dict[str, int]) -> str | None:
    """The learned task most requests belong to (the base does not count), ties broken by name."""
    experts = [(n, name) for name, n in counts.items() if name != BASE and n > 0]
    return min(experts, key=lambda x: (-x[0], x[1]))[1] if experts else None


def decide(result: DriftResult, *, labelled: bool, cfg: DriftConfig | None = None) -> Decision:
    """The decision for one verdict (pure: no files, no model)."""
    cfg = cfg or DriftConfig()
    numbers = {
        "requests": result.current_rows,
        "unknown_share": result.unknown_share,
        "base_share": result.base_share,
        "novel_share_threshold": cfg.novel_share,
        "drift_share": result.drift_share,
        "drift_share_threshold": result.threshold,
        "embeddings": {n: e["score"] for n, e in result.embeddings.items()},
        "embedding_threshold": cfg.embedding_threshold,
    }
    if result.current_rows < cfg.min_batch:
        reason = f"{result.current_rows} requests, fewer than drift.min_batch={cfg.min_batch}"
        return Decision("none", "wait", reason, None, labelled, numbers)
    many_unknown = result.unknown_share >= cfg.novel_share
    unknown_text = f"{result.unknown_share:.0%} of requests unknown to the router"
    question = result.embeddings.get("question")
    if question is not None and question["drifted"]:
        reason = (
            f"new questions: question embeddings tell the batch from the learned tasks (AUC {question['score']:.2f})"
        )
        return Decision(
            "novel", "new_task" if labelled else "label_request", f"{reason}; {unknown_text}", None, labelled, numbers
        )
    if question is None and many_unknown:
        reason = f"{unknown_text} (>= drift.novel_share={cfg.novel_share:.0%})"
        return Decision("novel", "new_task" if labelled else "label_request", reason, None, labelled, numbers)
    if result.detected or many_unknown:
        task = top_task(result.assigned or result.routed)
        what = [f"{name} embedding (AUC {result.embeddings[name]['score']:.2f})" for name in result.drifted_embeddings]
        if result.drift_share >= result.threshold:
            what.append(f"{result.drift_share:.0%} of columns ({', '.join(result.drifted_columns)})")
        elif result.strong_columns:
            what.append(f"{', '.join(result.strong_columns)} far off (p < drift.strong_p_value)")
        if many_unknown:
            what.append(f"{unknown_text} (>= drift.novel_share={cfg.novel_share:.0%})")
        reason = f"a learned task's inputs moved, its questions did not: {'; '.join(what)}"
        return Decision("known_drift", "refresh" if labelled and task else "alert", reason, task, labelled, numbers)
    return Decision("none", "none", "no drift and the router knows the requests", None, labelled, numbers)
