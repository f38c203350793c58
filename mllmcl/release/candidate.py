"""The workspace's candidate: its model files, its content id, and judging it with the gate. What the `gate`
stage and `mllmcl gate` both run; results go to metrics/gate.json (metrics only), reports/gate.{md,html}, the
DVC plot files, and reports/gate_lineage.json (commit, dvc.lock hashes, params diff)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import DataError
from mllmcl.paths import ProjectPaths
from mllmcl.plots import png_bytes
from mllmcl.release.evidence import fingerprint, model_files, require_current
from mllmcl.release.gate import GateResult, evaluate_gate
from mllmcl.release.lineage import dvc_lock_hashes, git_commit, git_dirty, params_diff
from mllmcl.release.registry import Registry
from mllmcl.release.report import confusion_figure, matrix_figure, task_order, write_gate_reports
from mllmcl.release.stats import paired_test


def candidate_files(params: Params, paths: ProjectPaths) -> dict[str, Path]:
    """Model files of the workspace's candidate, keyed by their path inside a registry version."""
    return model_files(params, base_dir=paths.base, experts_dir=paths.experts, router_dir=paths.router)


def workspace_fingerprint(params: Params, paths: ProjectPaths) -> dict:
    """What an evaluation of the workspace judges now (mllmcl.release.evidence.fingerprint of the project's layout)."""
    return fingerprint(
        params,
        base_dir=paths.base,
        experts_dir=paths.experts,
        router_dir=paths.router,
        tasks_dir=paths.tasks_dir,
        language_suite=params.router.base_suite,
        predictions_dir=paths.predictions,
    )


def load_evaluation(path: Path) -> tuple[dict, str]:
    """metrics/eval.json as a dict, and the sha256 of exactly the bytes parsed (what a gate decision names, so that
    promotion can tell it judged this file); a missing or malformed file is a DataError pointing at evaluate."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no evaluation result (run the evaluate stage first)")
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: an evaluation result is a JSON object, not {type(data).__name__}")
    return data, hashlib.sha256(raw).hexdigest()


def read_eval(path: Path) -> dict:
    """metrics/eval.json as a dict (load_evaluation without the digest)."""
    return load_evaluation(path)[0]


PREDICTIONS_IN_VERSION = "reports/predictions/{task}.jsonl"
EXAMPLES_PER_TASK = 5


def _answers(lines: bytes | str | None) -> list[dict]:
    if not lines:
        return []
    text = lines.decode("utf-8", "replace") if isinstance(lines, bytes) else lines
    out = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a damaged answer file weakens the paired test; it never crashes the gate
        if isinstance(row, dict) and "id" in row and isinstance(row.get("correct"), bool):
            out.append(row)
    return out


def paired_evidence(params: Params, paths: ProjectPaths, registry: Registry, production: dict | None):
    """Per task: the paired test against production's recorded answers (prior tasks), and a few of the candidate's
    wrong answers, preferring questions production got right."""
    pairs, examples = {}, {}
    prod_version = (production or {}).get("version")
    for task in params.tasks:
        path = paths.predictions / f"{task}.jsonl"
        mine = _answers(path.read_text(encoding="utf-8")) if path.is_file() else []
        theirs = {}
        if prod_version and task in (production or {}).get("tasks", []):
            rows = _answers(registry.read_file(prod_version, PREDICTIONS_IN_VERSION.format(task=task)))
            theirs = {r["id"]: r["correct"] for r in rows}
            if theirs and mine:
                pairs[task] = paired_test(theirs, {r["id"]: r["correct"] for r in mine})
        wrong = [r for r in mine if not r["correct"]]
        wrong.sort(key=lambda r: not theirs.get(r["id"], False))  # lost answers first
        examples[task] = [
            {k: r.get(k) for k in ("id", "question", "answer", "prediction", "expert")}
            for r in wrong[:EXAMPLES_PER_TASK]
        ]
    return pairs, examples


def run_gate(params: Params, paths: ProjectPaths) -> GateResult:
    """Judge the workspace's candidate against the registry's production and write every gate output."""
    eval_json, eval_sha256 = load_evaluation(paths.eval_json)
    judged = workspace_fingerprint(params, paths)
    require_current(eval_json, judged, where=paths.eval_json)  # never judge a result measured on other files
    registry = Registry.from_params(params, paths.root)
    alias = registry.alias("production")
    production = registry.manifest(alias["version"]) if alias else None
    history = registry.list_versions()
    candidate = judged["candidate"]
    pairs, examples = paired_evidence(params, paths, registry, production)
    gate = evaluate_gate(
        eval_json,
        production,
        list(params.tasks),
        params.gate,
        candidate=candidate,
        validation_dir=paths.validation_reports,
        dvc_lock=paths.dvc_lock,
        history=history,
        pairs=pairs,
        examples=examples,
    )
    lineage = {
        "candidate": candidate,
        "git_commit": git_commit(paths.root),
        "git_dirty": git_dirty(paths.root),
        "dvc_lock": dvc_lock_hashes(paths.dvc_lock),
        "params_diff": params_diff(params.dump(), production.get("params", {})) if production else [],
        "registry": registry.store.uri,
    }
    result = {**gate.to_json(), "evaluation_sha256": eval_sha256}
    paths.gate_json.parent.mkdir(parents=True, exist_ok=True)
    paths.gate_json.write_text(json.dumps(result, indent=2) + "\n")
    paths.gate_lineage.parent.mkdir(parents=True, exist_ok=True)
    paths.gate_lineage.write_text(json.dumps(lineage, indent=2) + "\n")
    write_gate_reports(result, eval_json, production, paths.reports, lineage=lineage)
    order = task_order(result, eval_json)
    rows = [{"task": t, "accuracy": eval_json["tasks"][t]["accuracy"]} for t in order]
    rows.append({"task": "language", "accuracy": (eval_json.get("language") or {}).get("accuracy", 0.0)})
    paths.plots.mkdir(parents=True, exist_ok=True)
    (paths.plots / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    figures = (
        ("accuracy_matrix.png", matrix_figure(result, always=True)),
        ("router_confusion.png", confusion_figure(eval_json, order)),
    )
    for name, figure in figures:
        target = paths.plots / name
        if figure:  # image plots for `dvc plots show`
            target.write_bytes(png_bytes(figure))
        else:
            target.unlink(missing_ok=True)
    return gate
