"""The regression check: the routed system (router + experts) on the test set of EVERY task learned so far,
plus the text-only language suite, written as metrics/eval.json with every prediction kept for inspection."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from mllmcl import records as rec_io
from mllmcl.batching import open_image
from mllmcl.router import BASE
from mllmcl.scoring import accuracy, is_correct

PREDICTIONS_DIR = Path("reports/predictions")


def _requests(records: list[dict], folder: Path):
    from mllmcl.inference import Request

    return [Request(r["question"], open_image(folder / r["image"]) if r.get("image") else None, r["id"]) for r in records]


def _write_predictions(path: Path, records: list[dict], preds, expected_route: str) -> list[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = []
    with path.open("w", encoding="utf-8") as f:
        for r, p in zip(records, preds):
            ok = is_correct(p.answer, r["answer"], r.get("choices"))
            flags.append(ok)
            f.write(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"],
                                "prediction": p.answer, "correct": ok, "expert": p.expert,
                                "expected_expert": expected_route, "confidence": p.confidence}) + "\n")
    return flags


def evaluate_system(model, tasks: Sequence[str], root: Path, *, language_suite: str = "language",
                    max_per_task: int | None = None) -> dict:
    """`model` is a RoutedModel; returns the eval.json contract of DESIGN.md plus a few extensions."""
    t0 = time.perf_counter()
    data_root = root / "data"
    out: dict = {"tasks": {}, "router_confusion": {}, "base_accuracy": {}}
    routed_right = routed_total = 0
    for task in [*tasks, language_suite]:
        folder = rec_io.task_dir(data_root, task)
        records = rec_io.read_records(folder / "test.jsonl")[:max_per_task]
        expected = BASE if task == language_suite else task
        preds = model.predict(_requests(records, folder))
        flags = _write_predictions(root / PREDICTIONS_DIR / f"{task}.jsonl", records, preds, expected)
        confusion: dict[str, int] = {}
        for p in preds:
            confusion[p.expert] = confusion.get(p.expert, 0) + 1
        out["router_confusion"][task] = confusion
        router_acc = round(confusion.get(expected, 0) / max(1, len(preds)), 4)
        if task == language_suite:
            base_answers = model.answer_with(BASE, _requests(records, folder))
            base_flags = [is_correct(a, r["answer"], r.get("choices")) for a, r in zip(base_answers, records)]
            out["language"] = {"accuracy": accuracy(flags), "n": len(records), "base_accuracy": accuracy(base_flags),
                               "router_accuracy": router_acc}
        else:
            out["tasks"][task] = {"accuracy": accuracy(flags), "n": len(records), "router_accuracy": router_acc}
            routed_right += confusion.get(task, 0)
            routed_total += len(preds)
            stats = root / "models" / "experts" / task / "train_stats.json"
            if stats.exists():
                out["base_accuracy"][task] = json.loads(stats.read_text()).get("base_accuracy")
    out["router_accuracy"] = round(routed_right / max(1, routed_total), 4)
    accs = [v["accuracy"] for v in out["tasks"].values()]
    out["mean_accuracy"] = round(sum(accs) / len(accs), 4) if accs else 0.0
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def experts_report(root: Path, tasks: Sequence[str]) -> dict:
    """reports/experts.json: each expert alone vs the zero-shot base, the router, and the base's cost."""
    report: dict = {"tasks": {}}
    for task in tasks:
        stats = json.loads((root / "models" / "experts" / task / "train_stats.json").read_text())
        report["tasks"][task] = {k: stats.get(k) for k in ("expert_accuracy", "base_accuracy", "train_seconds",
                                                            "trainable_params", "steps", "final_loss")}
    accs = [v["expert_accuracy"] for v in report["tasks"].values()]
    report["mean_expert_accuracy"] = round(sum(accs) / len(accs), 4) if accs else 0.0
    router = root / "models" / "router" / "router_stats.json"
    if router.exists():
        r = json.loads(router.read_text())
        report["router"] = {k: r.get(k) for k in ("accuracy", "base_routing_accuracy", "per_task_accuracy",
                                                   "seconds", "samples_per_task", "base_samples", "steps")}
    base = root / "models" / "base" / "base.json"
    if base.exists():
        b = json.loads(base.read_text())
        report["base"] = {k: b.get(k) for k in ("build", "name_or_path", "params", "pretrain_seconds", "suite_accuracy")}
    return report
