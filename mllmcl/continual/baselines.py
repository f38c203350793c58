"""The continual-learning baselines MR-LoRA is judged against (METHOD.md), on the workspace's base and task
data: the zero-shot base (lower bound), sequential LoRA fine-tuning (LoRA-FT: ONE shared adapter trained
task after task, the forgetting MR-LoRA avoids), per-task experts with oracle routing (MR-LoRA's upper
bound) and MR-LoRA itself (the routed system of metrics/eval.json). Each gets the accuracy matrix
A[t][j] and the MFT/MFN/MAA/BWT of mllmcl.continual.metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mllmcl.config import Params
from mllmcl.continual import metrics
from mllmcl.continual.experts import ExpertStats
from mllmcl.data import records as rec_io
from mllmcl.paths import ProjectPaths

Matrix = list[list[float | None]]


def sequential_lora(
    tasks: Sequence[str],
    params: Params,
    *,
    base_dir: Path,
    tasks_dir: Path,
    steps: int | None = None,
    progress: bool = True,
    on_stage: Callable[[int, list], None] | None = None,
) -> dict:
    """LoRA-FT: one adapter, trained from the base on task 1, then further on task 2, ... (same LoRA config,
    steps and learning rate as an expert; a fresh optimizer per task). After each stage it is scored on
    every task learned so far, which fills the lower triangle of the accuracy matrix."""
    from mllmcl.continual.experts import task_seed
    from mllmcl.model.adapters import lora_config, new_adapter
    from mllmcl.model.batching import encode_records
    from mllmcl.model.generation import score_records as score
    from mllmcl.model.loading import Prompting, load_base, resolve_base
    from mllmcl.model.training import train

    cfg = params.expert.model_copy(update={"steps": steps}) if steps else params.expert
    model, processor = load_base(resolve_base(params.base, base_dir), trust_remote_code=params.base.trust_remote_code)
    prompting = Prompting.for_model(model, processor)
    shared = new_adapter(model, lora_config(cfg, model, role="expert"), seed=cfg.seed)
    folders = {t: Path(tasks_dir) / t for t in tasks}
    tests = {t: rec_io.read_records(folders[t] / "test.jsonl") for t in tasks}
    matrix: Matrix = []
    seconds = []
    for stage, task in enumerate(tasks):
        t0 = time.perf_counter()
        examples = encode_records(
            prompting, rec_io.read_records(folders[task] / "train.jsonl"), folders[task], with_answers=True
        )
        train_cfg = cfg.model_copy(update={"seed": cfg.seed + task_seed(task)})
        train(
            shared,
            examples,
            train_cfg,
            pad_id=prompting.tokenizer.pad_token_id,
            progress=progress,
            desc=f"LoRA-FT {stage + 1}/{len(tasks)} {task}",
        )
        row: list[float | None] = [None] * len(tasks)
        for j in range(stage + 1):
            row[j], _ = score(shared, prompting, tests[tasks[j]], folders[tasks[j]])
        matrix.append(row)
        seconds.append(round(time.perf_counter() - t0, 1))
        if on_stage:
            on_stage(stage, row)
    return {"matrix": matrix, "stage_seconds": seconds, "steps_per_task": cfg.steps, **metrics.summary(matrix)}


def isolated_rows(tasks: Sequence[str], experts_dir: Path) -> dict:
    """Zero-shot base and oracle-routed experts, from the experts' training stats (train_expert writes both):
    experts never change once trained, so each task's accuracy stays what it was when learned."""
    base, oracle = [], []
    for task in tasks:
        stats = ExpertStats.read(Path(experts_dir) / task)
        base.append(stats.base_accuracy)
        oracle.append(stats.expert_accuracy)
    return {"zero_shot_base": _constant_matrix(base), "oracle_experts": _constant_matrix(oracle)}


def mr_lora_row(tasks: Sequence[str], eval_json: Path) -> list[float] | None:
    """MR-LoRA's final row: the routed system as the evaluate stage measured it (None if not evaluated)."""
    path = Path(eval_json)
    if not path.exists():
        return None
    evaluated = json.loads(path.read_text()).get("tasks", {})
    if not all(t in evaluated for t in tasks):
        return None
    return [evaluated[t]["accuracy"] for t in tasks]


def _constant_matrix(final: Sequence[float]) -> Matrix:
    """The matrix of a method whose accuracy on a task never changes after the task is learned."""
    n = len(final)
    return [[final[j] if j <= t else None for j in range(n)] for t in range(n)]


def compare(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    *,
    steps: int | None = None,
    progress: bool = True,
    on_stage=None,
) -> dict:
    """Accuracy matrix and CL metrics of every method for `tasks` in order: LoRA-FT is trained now (slow), the others
    are read from disk; MR-LoRA is left out until eval.json covers every task."""
    methods: dict[str, dict] = {}
    for name, matrix in isolated_rows(tasks, paths.experts).items():
        methods[name] = {"matrix": matrix, **metrics.summary(matrix)}
    routed = mr_lora_row(tasks, paths.eval_json)
    if routed is not None:
        # MR-LoRA's experts are frozen once trained: earlier rows differ from the final one only by the router,
        # which the evaluate stage measures for the final pool; the final row is the measured one.
        matrix = _constant_matrix(routed)
        methods["mr_lora"] = {"matrix": matrix, **metrics.summary(matrix), "source": "metrics/eval.json"}
    methods["lora_ft"] = sequential_lora(
        tasks, params, base_dir=paths.base, tasks_dir=paths.tasks_dir, steps=steps, progress=progress, on_stage=on_stage
    )
    return {"tasks": list(tasks), "methods": methods}


def figure(result: dict) -> str:
    """Final accuracy per task for each method, beside LoRA-FT's accuracy matrix (forgetting down a column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mllmcl.plots import draw_heatmap, png_data_uri

    tasks, methods = result["tasks"], result["methods"]
    names = [m for m in ("zero_shot_base", "lora_ft", "mr_lora", "oracle_experts") if m in methods]
    labels = {
        "zero_shot_base": "zero-shot base",
        "lora_ft": "LoRA-FT (one shared adapter)",
        "mr_lora": "MR-LoRA (routed)",
        "oracle_experts": "experts, oracle routing",
    }
    colours = {"zero_shot_base": "#c9c9c9", "lora_ft": "#d9534f", "mr_lora": "#e08a2c", "oracle_experts": "#7aa6d8"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        final = methods[name]["matrix"][-1]
        left.bar(
            [i + (k - (len(names) - 1) / 2) * w for i in range(len(tasks))],
            [v or 0 for v in final],
            w,
            label=f"{labels[name]}  MFN {methods[name]['MFN']:.2f}",
            color=colours[name],
        )
    left.set_xticks(range(len(tasks)), tasks)
    left.set_ylim(0, 1.05)
    left.set_ylabel("final accuracy")
    left.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    left.grid(axis="y", alpha=0.3)
    lora_ft = methods["lora_ft"]
    draw_heatmap(
        right,
        lora_ft["matrix"],
        tasks,
        f"LoRA-FT accuracy matrix (BWT {lora_ft['BWT']:+.2f})",
        "evaluated on",
        [f"after {t}" for t in tasks],
    )
    return png_data_uri(fig)
