"""The promotion gate: the candidate against the registry's `production` version (or, for a first
candidate, absolute thresholds). Every check is named so that a refusal says exactly what regressed, and every
check fails closed: an input it needs that is missing is a failure, never a skipped check."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mllmcl.config import GateConfig
from mllmcl.continual import metrics


@dataclass
class Check:
    """One named gate check: pass or fail, the value measured against its threshold (rounded to 4 places; None when not
    numeric), and a sentence for the report."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)
        self.value = None if self.value is None else round(float(self.value), 4)
        self.threshold = None if self.threshold is None else round(float(self.threshold), 4)


@dataclass
class GateResult:
    """metrics/gate.json: the decision and its checks, plus the CL metrics of the accuracy matrix."""

    decision: str  # "pass" | "fail"
    candidate: str
    baseline: str | None
    checks: list[Check]
    metrics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GateResult:
        return cls(
            data["decision"],
            data["candidate"],
            data.get("baseline"),
            [Check(**c) for c in data.get("checks", [])],
            data.get("metrics", {}),
        )


def _number(value) -> float | None:
    """A metric as a float, or None when it is missing or not a number (the check then fails closed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _task_checks(tasks: list[str], eval_json: dict, production: dict | None, cfg: GateConfig) -> list[Check]:
    prod_tasks = list(production.get("tasks", [])) if production else []
    prod_eval = (production or {}).get("eval") or {}
    checks = []
    for task in prod_tasks:
        if task not in tasks:  # production would silently lose this expert
            checks.append(
                Check(
                    f"prior_task:{task}",
                    False,
                    None,
                    None,
                    f"{task}: production serves it but the candidate does not learn it (removed from tasks)",
                )
            )
    for task in tasks:
        entry = (eval_json.get("tasks") or {}).get(task)
        acc = _number(entry.get("accuracy")) if isinstance(entry, dict) else None
        if acc is None:
            checks.append(
                Check(
                    f"task:{task}",
                    False,
                    None,
                    None,
                    f"{task}: no evaluation result with a numeric accuracy in eval.json (fails closed)",
                )
            )
            continue
        if production and task in prod_tasks:
            before = _number(((prod_eval.get("tasks") or {}).get(task) or {}).get("accuracy"))
            if before is None:
                checks.append(
                    Check(
                        f"prior_task:{task}",
                        False,
                        acc,
                        None,
                        f"{task}: production learned it but its manifest has no accuracy to compare",
                    )
                )
                continue
            floor = before - cfg.max_prior_drop
            checks.append(
                Check(
                    f"prior_task:{task}",
                    acc >= floor,
                    acc,
                    floor,
                    f"{task}: {acc:.3f} now vs {before:.3f} in production (allowed drop {cfg.max_prior_drop})",
                )
            )
        elif production:
            floor = cfg.min_new_task_accuracy
            checks.append(Check(f"new_task:{task}", acc >= floor, acc, floor, f"new task {task}: {acc:.3f}"))
        else:
            floor = cfg.min_task_accuracy
            checks.append(
                Check(
                    f"task:{task}", acc >= floor, acc, floor, f"{task}: {acc:.3f} (first candidate: absolute threshold)"
                )
            )
    return checks


def _language_check(eval_json: dict, cfg: GateConfig) -> Check:
    lang = eval_json.get("language") or {}
    base, candidate = _number(lang.get("base_accuracy")), _number(lang.get("accuracy"))
    if base is None or candidate is None:
        return Check(
            "language_degradation",
            False,
            None,
            cfg.max_language_drop,
            "text-only suite: no numeric result in eval.json (the check fails closed)",
        )
    deg = metrics.linguistic_degradation(base, candidate)
    return Check(
        "language_degradation",
        deg["delta"] <= cfg.max_language_drop,
        deg["delta"],
        cfg.max_language_drop,
        f"text-only suite: base {deg['base']:.3f}, candidate {deg['candidate']:.3f}",
    )


def _validation_check(tasks: list[str], validation_dir: Path) -> Check:
    missing, failed = [], []
    for task in tasks:
        report = Path(validation_dir) / f"{task}.json"
        if not report.exists():
            missing.append(task)
        elif not json.loads(report.read_text()).get("passed"):
            failed.append(task)
    ok = not (missing or failed)
    return Check(
        "validation_passed",
        ok,
        None,
        None,
        "all tasks validated" if ok else f"no report: {missing or '-'}; failed: {failed or '-'}",
    )


def _dvc_state_check(dvc_lock: Path, tasks: list[str]) -> Check:
    """Every stage the candidate comes from must be recorded with hashes in dvc.lock (its lineage)."""
    if not Path(dvc_lock).exists():
        unknown = ["dvc.lock"]
    else:
        stages = (yaml.safe_load(Path(dvc_lock).read_text()) or {}).get("stages", {})
        wanted = ["base", "train_router"] + [f"train_expert@{t}" for t in tasks] + [f"validate@{t}" for t in tasks]
        unknown = [s for s in wanted if not any(o.get("md5") for o in (stages.get(s, {}).get("outs") or []))]
    return Check(
        "data_state_known",
        not unknown,
        None,
        None,
        "dvc.lock records every stage's hashes" if not unknown else f"not in dvc.lock: {unknown}",
    )


def evaluate_gate(
    eval_json: dict,
    production: dict | None,
    tasks: list[str],
    cfg: GateConfig,
    *,
    candidate: str,
    validation_dir: Path,
    dvc_lock: Path,
    history: list[dict] | None = None,
) -> GateResult:
    """Judge the candidate of `eval_json` (metrics/eval.json) learned on `tasks` against `production`'s manifest."""
    checks = _task_checks(tasks, eval_json, production, cfg)
    router = _number(eval_json.get("router_accuracy"))
    checks.append(
        Check(
            "router_accuracy",
            router is not None and router >= cfg.min_router_accuracy,
            router,
            cfg.min_router_accuracy,
            f"requests routed to the right expert: {router:.3f}"
            if router is not None
            else "no router accuracy in eval.json (the check fails closed)",
        )
    )
    checks.append(_language_check(eval_json, cfg))
    checks.append(_validation_check(tasks, validation_dir))
    checks.append(_dvc_state_check(dvc_lock, tasks))
    mtasks, matrix = metrics.accuracy_matrix(history or [], {"tasks": tasks, "eval": eval_json})
    return GateResult(
        decision="pass" if all(c.passed for c in checks) else "fail",
        candidate=candidate,
        baseline=production.get("version") if production else None,
        checks=checks,
        metrics={
            **metrics.summary(matrix),
            "matrix_tasks": mtasks,
            "matrix": matrix,
            "language": eval_json.get("language") or {},
            "mean_accuracy": eval_json.get("mean_accuracy"),
        },
    )
