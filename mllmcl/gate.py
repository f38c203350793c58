"""The promotion gate: the candidate against the registry's `production` version (or, for a first
candidate, absolute thresholds). Every check is named so that a refusal says exactly what regressed."""

from __future__ import annotations

import json
from pathlib import Path

from mllmcl import metrics


def _check(name: str, passed: bool, value, threshold, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "value": None if value is None else round(float(value), 4),
            "threshold": None if threshold is None else round(float(threshold), 4), "detail": detail}


def evaluate_gate(eval_json: dict, production: dict | None, params: dict, *, candidate: str,
                  validation_dir: Path, dvc_lock: Path, history: list[dict] | None = None) -> dict:
    cfg = params.get("gate", {})
    tasks = list(params["tasks"])
    prod_tasks = list(production.get("tasks", [])) if production else []
    prod_eval = (production or {}).get("eval") or {}
    checks = []
    for task in tasks:
        acc = eval_json["tasks"][task]["accuracy"]
        if production and task in prod_tasks and task in prod_eval.get("tasks", {}):
            before = prod_eval["tasks"][task]["accuracy"]
            floor = before - float(cfg.get("max_prior_drop", 0.03))
            checks.append(_check(f"prior_task:{task}", acc >= floor, acc, floor,
                                 f"{task}: {acc:.3f} now vs {before:.3f} in production (allowed drop "
                                 f"{cfg.get('max_prior_drop', 0.03)})"))
        elif production:
            floor = float(cfg.get("min_new_task_accuracy", 0.7))
            checks.append(_check(f"new_task:{task}", acc >= floor, acc, floor, f"new task {task}: {acc:.3f}"))
        else:
            floor = float(cfg.get("min_task_accuracy", 0.7))
            checks.append(_check(f"task:{task}", acc >= floor, acc, floor,
                                 f"{task}: {acc:.3f} (first candidate: absolute threshold)"))
    router = eval_json.get("router_accuracy", 0.0)
    floor = float(cfg.get("min_router_accuracy", 0.95))
    checks.append(_check("router_accuracy", router >= floor, router, floor, f"requests routed to the right expert: {router:.3f}"))
    lang = eval_json.get("language", {})
    if "base_accuracy" in lang:
        deg = metrics.linguistic_degradation(lang["base_accuracy"], lang["accuracy"])
        limit = float(cfg.get("max_language_drop", 0.05))
        checks.append(_check("language_degradation", deg["delta"] <= limit, deg["delta"], limit,
                             f"text-only suite: base {deg['base']:.3f}, candidate {deg['candidate']:.3f}"))
    missing, failed = [], []
    for task in tasks:
        report = Path(validation_dir) / f"{task}.json"
        if not report.exists():
            missing.append(task)
        elif not json.loads(report.read_text()).get("passed"):
            failed.append(task)
    checks.append(_check("validation_passed", not (missing or failed), None, None,
                         "all tasks validated" if not (missing or failed)
                         else f"no report: {missing or '-'}; failed: {failed or '-'}"))
    known = _dvc_state_known(dvc_lock, tasks)
    checks.append(_check("data_state_known", not known, None, None,
                         "dvc.lock records every stage's hashes" if not known else f"not in dvc.lock: {known}"))
    row = {"tasks": tasks, "eval": eval_json}
    mtasks, matrix = metrics.accuracy_matrix(history or [], row)
    return {
        "decision": "pass" if all(c["passed"] for c in checks) else "fail",
        "candidate": candidate,
        "baseline": production.get("version") if production else None,
        "checks": checks,
        "metrics": {**metrics.summary(matrix), "matrix_tasks": mtasks, "matrix": matrix,
                    "language": lang, "mean_accuracy": eval_json.get("mean_accuracy")},
    }


def _dvc_state_known(dvc_lock: Path, tasks: list[str]) -> list[str]:
    """Stages of the candidate that dvc.lock does not (yet) record with hashes."""
    import yaml

    if not Path(dvc_lock).exists():
        return ["dvc.lock"]
    stages = (yaml.safe_load(Path(dvc_lock).read_text()) or {}).get("stages", {})
    wanted = ["base", "train_router"] + [f"train_expert@{t}" for t in tasks] + [f"validate@{t}" for t in tasks]
    return [s for s in wanted if not any(o.get("md5") for o in (stages.get(s, {}).get("outs") or []))]
