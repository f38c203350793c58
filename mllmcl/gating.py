"""Running the gate for the workspace's candidate: what the `gate` stage and `mllmcl gate` both do."""

from __future__ import annotations

import json
from pathlib import Path

from mllmcl.gate import evaluate_gate
from mllmcl.gate_report import confusion_figure, matrix_figure, png_bytes, task_order, write_gate_reports
from mllmcl.promotion import candidate_files, dvc_lock_hashes, git_commit, git_dirty
from mllmcl.registry import Registry, candidate_id


def params_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params trees."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += params_diff(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out


def run_gate(params: dict, root: Path) -> dict:
    eval_json = json.loads((root / "metrics/eval.json").read_text())
    registry = Registry.from_params(params, root)
    alias = registry.alias("production")
    production = registry.manifest(alias["version"]) if alias else None
    history = registry.list_versions()
    candidate = candidate_id(candidate_files(params, root))
    gate = evaluate_gate(eval_json, production, params, candidate=candidate,
                         validation_dir=root / "reports/validation", dvc_lock=root / "dvc.lock", history=history)
    gate["lineage"] = {
        "git_commit": git_commit(root), "git_dirty": git_dirty(root), "dvc_lock": dvc_lock_hashes(root),
        "params_diff": params_diff(params, production.get("params", {})) if production else [],
        "registry": registry.store.uri,
    }
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/gate.json").write_text(json.dumps(gate, indent=2) + "\n")
    write_gate_reports(gate, eval_json, production, root / "reports")
    order = task_order(gate, eval_json)
    rows = [{"task": t, "accuracy": eval_json["tasks"][t]["accuracy"]} for t in order]
    rows.append({"task": "language", "accuracy": eval_json.get("language", {}).get("accuracy", 0.0)})
    (root / "reports/plots").mkdir(parents=True, exist_ok=True)
    (root / "reports/plots/accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    for name, figure in (("accuracy_matrix.png", matrix_figure(gate, always=True)), ("router_confusion.png", confusion_figure(eval_json, order))):
        path = root / "reports/plots" / name
        if figure:  # image plots for `dvc plots show`
            path.write_bytes(png_bytes(figure))
        else:
            path.unlink(missing_ok=True)
    return gate
