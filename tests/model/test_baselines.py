"""The LoRA-FT baseline (one shared adapter trained task after task) beside the isolated experts."""

from __future__ import annotations

import json
import shutil

import pytest

from tests import toy


@pytest.mark.slow
def test_one_shared_adapter_forgets_the_first_task(toy_root, tmp_path):
    """LoRA-FT, the baseline MR-LoRA must beat: after learning `where`, the shared adapter has lost `colour`."""
    from mllmcl.continual.baselines import sequential_lora

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    seen = []
    result = sequential_lora(
        list(toy.TASKS),
        toy.params(expert={"lr": 3e-3}),
        base_dir=root / "models/base",
        tasks_dir=root / "data/tasks",
        steps=150,
        progress=False,
        on_stage=lambda stage, row: seen.append(stage),
    )
    a = result["matrix"]
    assert seen == [0, 1]
    assert a[0][1] is None and all(v is not None for v in (a[0][0], a[1][0], a[1][1]))
    assert a[0][0] >= 0.5, a  # colour was learned (4 colours: chance 0.25)...
    assert a[1][0] <= a[0][0] - 0.2, a  # ...and forgotten once the same adapter learned `where`
    assert result["BWT"] <= -0.2 and result["forgetting"][0] >= 0.2
    assert not (root / "models/experts").exists()  # a baseline never touches the pipeline's experts


def test_isolated_methods_keep_each_task_where_it_was_learned(tmp_path):
    from mllmcl.continual.baselines import isolated_rows, mr_lora_row

    for task, (base, expert) in {"a": (0.1, 0.9), "b": (0.2, 0.8)}.items():
        folder = tmp_path / "models/experts" / task
        folder.mkdir(parents=True)
        (folder / "train_stats.json").write_text(json.dumps(_stats(task, base, expert)))
    rows = isolated_rows(["a", "b"], tmp_path / "models/experts")
    assert rows["oracle_experts"] == [[0.9, None], [0.9, 0.8]]
    assert rows["zero_shot_base"][-1] == [0.1, 0.2]
    assert mr_lora_row(["a", "b"], tmp_path / "metrics/eval.json") is None  # not evaluated yet
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/eval.json").write_text(
        json.dumps({"tasks": {"a": {"accuracy": 0.85}, "b": {"accuracy": 0.8}}})
    )
    assert mr_lora_row(["a", "b"], tmp_path / "metrics/eval.json") == [0.85, 0.8]


def _stats(task, base, expert) -> dict:
    training = {
        "steps": 1,
        "resumed_from_step": 0,
        "seconds": 1.0,
        "seconds_per_step": 1.0,
        "final_loss": 0.1,
        "examples": 1,
        "config": {},
    }
    return {
        **training,
        "task": task,
        "base_accuracy": base,
        "expert_accuracy": expert,
        "train_seconds": 1.0,
        "trainable_params": 1,
        "n_test": 1,
    }
