"""The LoRA-FT baseline (one shared adapter trained task after task) beside the isolated experts."""

from __future__ import annotations

import json
import shutil

from tests import toy


def test_sequential_lora_fills_the_lower_triangle_and_scores_forgetting(toy_root, tmp_path):
    from mllmcl.baselines import sequential_lora

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    params = toy.params(root)
    seen = []
    result = sequential_lora(list(toy.TASKS), params, root, steps=15, progress=False,
                             on_stage=lambda stage, row: seen.append(stage))
    a = result["matrix"]
    assert seen == [0, 1]
    assert a[0][1] is None and all(v is not None for v in (a[0][0], a[1][0], a[1][1]))
    assert result["BWT"] == round(a[1][0] - a[0][0], 4)
    assert result["forgetting"][0] == round(a[0][0] - a[1][0], 4)
    assert not (root / "models/experts").exists()  # a baseline never touches the pipeline's experts


def test_isolated_methods_keep_each_task_where_it_was_learned(tmp_path):
    from mllmcl.baselines import isolated_rows, mr_lora_row

    for task, (base, expert) in {"a": (0.1, 0.9), "b": (0.2, 0.8)}.items():
        folder = tmp_path / "models/experts" / task
        folder.mkdir(parents=True)
        (folder / "train_stats.json").write_text(json.dumps({"base_accuracy": base, "expert_accuracy": expert}))
    rows = isolated_rows(["a", "b"], tmp_path)
    assert rows["oracle_experts"] == [[0.9, None], [0.9, 0.8]]
    assert rows["zero_shot_base"][-1] == [0.1, 0.2]
    assert mr_lora_row(["a", "b"], tmp_path) is None  # not evaluated yet
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/eval.json").write_text(json.dumps({"tasks": {"a": {"accuracy": 0.85}, "b": {"accuracy": 0.8}}}))
    assert mr_lora_row(["a", "b"], tmp_path) == [0.85, 0.8]
