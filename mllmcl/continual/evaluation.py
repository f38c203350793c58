"""The regression check: the routed system (router + experts) on the test set of EVERY task learned so far,
plus the text-only language suite, written as metrics/eval.json with every prediction kept for inspection."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mllmcl.continual.experts import ExpertStats
from mllmcl.continual.router import BASE
from mllmcl.continual.router import STATS_FILE as ROUTER_STATS
from mllmcl.data import records as rec_io
from mllmcl.data.scoring import accuracy, is_correct
from mllmcl.model.batching import open_image
from mllmcl.model.loading import BASE_REF


@dataclass
class TaskScore:
    """One learned task in eval.json: answer accuracy, test-set size, and the share of its requests routed to its own
    expert."""

    accuracy: float
    n: int
    router_accuracy: float


@dataclass
class LanguageScore:
    """The text-only suite: the routed system and the plain base on the same questions."""

    accuracy: float
    n: int
    base_accuracy: float
    router_accuracy: float


@dataclass
class EvalResult:
    """metrics/eval.json (the contract other parts read, plus the confusion, zero-shot base accuracies and timing)."""

    tasks: dict[str, TaskScore]
    language: LanguageScore | None
    router_accuracy: float
    mean_accuracy: float
    router_confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    base_accuracy: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    router_kind: str = "mllm"
    mllm_share: float = 1.0  # requests that paid an MLLM-router pass (a cascade asks it only where unsure)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EvalResult:
        lang = data.get("language")
        return cls(
            tasks={t: TaskScore(**v) for t, v in data.get("tasks", {}).items()},
            language=LanguageScore(**lang) if lang else None,
            router_accuracy=data.get("router_accuracy", 0.0),
            mean_accuracy=data.get("mean_accuracy", 0.0),
            router_confusion=data.get("router_confusion", {}),
            base_accuracy=data.get("base_accuracy", {}),
            seconds=data.get("seconds", 0.0),
            router_kind=data.get("router_kind", "mllm"),
            mllm_share=data.get("mllm_share", 1.0),
        )


def _requests(records: list[dict], folder: Path):
    from mllmcl.continual.inference import Request

    return [
        Request(r["question"], open_image(folder / r["image"]) if r.get("image") else None, r["id"]) for r in records
    ]


def _write_predictions(path: Path, records: list[dict], preds, expected_route: str) -> list[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = []
    with path.open("w", encoding="utf-8") as f:
        for r, p in zip(records, preds):
            ok = is_correct(p.answer, r["answer"], r.get("choices"))
            flags.append(ok)
            f.write(
                json.dumps(
                    {
                        "id": r["id"],
                        "question": r["question"],
                        "answer": r["answer"],
                        "prediction": p.answer,
                        "correct": ok,
                        "expert": p.expert,
                        "expected_expert": expected_route,
                        "confidence": p.confidence,
                    }
                )
                + "\n"
            )
    return flags


def evaluate_system(
    model,
    tasks: Sequence[str],
    *,
    tasks_dir: Path,
    predictions_dir: Path,
    experts_dir: Path,
    language_suite: str = "language",
    batch_size: int = 64,
    max_per_task: int | None = None,
) -> EvalResult:
    """Score `model` (a RoutedModel) on every task's test split and the text-only suite; keep every answer."""
    t0 = time.perf_counter()
    scores: dict[str, TaskScore] = {}
    confusions: dict[str, dict[str, int]] = {}
    base_accuracy: dict[str, float] = {}
    language = None
    routed_right = routed_total = asked = answered = 0
    for task in [*tasks, language_suite]:
        folder = Path(tasks_dir) / task
        records = rec_io.read_records(folder / "test.jsonl")[:max_per_task]
        expected = BASE if task == language_suite else task
        preds = model.predict(_requests(records, folder), batch_size=batch_size)
        flags = _write_predictions(Path(predictions_dir) / f"{task}.jsonl", records, preds, expected)
        confusion: dict[str, int] = {}
        for p in preds:
            confusion[p.expert] = confusion.get(p.expert, 0) + 1
        asked += sum(getattr(p, "routed_by", "mllm") == "mllm" for p in preds)
        answered += len(preds)
        confusions[task] = confusion
        router_acc = round(confusion.get(expected, 0) / max(1, len(preds)), 4)
        if task == language_suite:
            base_answers = model.answer_with(BASE, _requests(records, folder), batch_size=batch_size)
            base_flags = [is_correct(a, r["answer"], r.get("choices")) for a, r in zip(base_answers, records)]
            language = LanguageScore(accuracy(flags), len(records), accuracy(base_flags), router_acc)
        else:
            scores[task] = TaskScore(accuracy(flags), len(records), router_acc)
            routed_right += confusion.get(task, 0)
            routed_total += len(preds)
            if (Path(experts_dir) / task).is_dir():
                base_accuracy[task] = ExpertStats.read(Path(experts_dir) / task).base_accuracy
    accs = [v.accuracy for v in scores.values()]
    return EvalResult(
        tasks=scores,
        language=language,
        router_accuracy=round(routed_right / max(1, routed_total), 4),
        mean_accuracy=round(sum(accs) / len(accs), 4) if accs else 0.0,
        router_confusion=confusions,
        base_accuracy=base_accuracy,
        seconds=round(time.perf_counter() - t0, 2),
        router_kind=getattr(model, "kind", "mllm"),
        mllm_share=round(asked / max(1, answered), 4),
    )


def experts_report(tasks: Sequence[str], *, experts_dir: Path, router_dir: Path, base_dir: Path) -> dict:
    """reports/experts.json: each expert alone vs the zero-shot base, the router, and the base's cost."""
    report: dict = {"tasks": {}}
    for task in tasks:
        stats = ExpertStats.read(Path(experts_dir) / task)
        report["tasks"][task] = {
            "expert_accuracy": stats.expert_accuracy,
            "base_accuracy": stats.base_accuracy,
            "train_seconds": stats.train_seconds,
            "trainable_params": stats.trainable_params,
            "steps": stats.training.steps,
            "final_loss": stats.training.final_loss,
            "best_step": stats.training.best_step,  # the step whose weights the expert kept (validation split)
            "stopped_at": stats.training.stopped_at,
            "validation_accuracy": max((v for _, v in stats.training.validation or []), default=None),
            "overrides": stats.overrides,
        }
    accs = [v["expert_accuracy"] for v in report["tasks"].values()]
    report["mean_expert_accuracy"] = round(sum(accs) / len(accs), 4) if accs else 0.0
    router = Path(router_dir) / ROUTER_STATS
    if router.exists():
        r = json.loads(router.read_text())
        report["router"] = {
            k: r.get(k)
            for k in (
                "accuracy",
                "base_routing_accuracy",
                "per_task_accuracy",
                "seconds",
                "samples_per_task",
                "base_samples",
                "steps",
            )
        }
    base = Path(base_dir) / BASE_REF
    if base.exists():
        b = json.loads(base.read_text())
        report["base"] = {
            k: b.get(k) for k in ("build", "name_or_path", "params", "pretrain_seconds", "suite_accuracy")
        }
    return report
