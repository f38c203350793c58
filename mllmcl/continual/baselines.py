"""The continual-learning baselines MR-LoRA is judged against (METHOD.md), on the workspace's base and task
data: the zero-shot base (lower bound), sequential LoRA fine-tuning (LoRA-FT: ONE shared adapter trained
task after task, the forgetting MR-LoRA avoids), per-task experts with oracle routing (MR-LoRA's upper
bound) and MR-LoRA itself, measured stage by stage (a router per stage, as the pipeline trains it). Each gets
the accuracy matrix A[t][j], the evaluation behind every cell (`cells`) and the MFT/MFN/MAA/BWT of
mllmcl.continual.metrics."""

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
    n = len(tasks)
    matrix: Matrix = []
    cells: list[list[str | None]] = []
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
        row: list[float | None] = [None] * n
        for j in range(stage + 1):
            row[j], _ = score(shared, prompting, tests[tasks[j]], folders[tasks[j]])
        matrix.append(row)
        cells.append([f"lora_ft stage {stage + 1}: evaluation on {tasks[j]}" if j <= stage else None for j in range(n)])
        seconds.append(round(time.perf_counter() - t0, 1))
        if on_stage:
            on_stage(stage, row)
    return {
        "matrix": matrix,
        "cells": cells,
        "stage_seconds": seconds,
        "steps_per_task": cfg.steps,
        **metrics.summary(matrix),
    }


def isolated_rows(tasks: Sequence[str], experts_dir: Path) -> dict:
    """Zero-shot base and oracle-routed experts, from the experts' training stats (train_expert measures both on the
    task's test split). Neither model changes once its task is learned (the base is never trained, an expert is
    frozen), so one evaluation gives the whole column: `cells` names it for every cell."""
    out = {}
    for method, key, why in (
        ("zero_shot_base", "base_accuracy", "the base is never trained"),
        ("oracle_experts", "expert_accuracy", "the expert is frozen once trained"),
    ):
        final, sources = [], []
        for task in tasks:
            final.append(getattr(ExpertStats.read(Path(experts_dir) / task), key))
            sources.append(f"experts/{task}/train_stats.json {key} ({why})")
        n = len(final)
        out[method] = {
            "matrix": [[final[j] if j <= t else None for j in range(n)] for t in range(n)],
            "cells": [[sources[j] if j <= t else None for j in range(n)] for t in range(n)],
        }
    return out


def mr_lora_stages(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    *,
    progress: bool = True,
    on_stage: Callable[[int, list], None] | None = None,
) -> dict:
    """MR-LoRA measured stage by stage, as the pipeline runs it: at stage t a router trained exactly as train_router
    trains it, on the replay of tasks 1..t, routes among the (frozen) experts 1..t, and the routed system is evaluated
    on tasks 1..t and the text-only suite. Each row of A is one evaluation, so a router that starts sending an earlier
    task elsewhere shows as forgetting. The DAG's router serves the last stage when it was trained on the same tasks
    and settings; the others are kept under .cache/benchmark, so a killed run resumes with the routers it trained."""
    from mllmcl.continual.evaluation import evaluate_system
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.model.loading import resolve_base

    n = len(tasks)
    matrix: Matrix = []
    cells: list[list[str | None]] = []
    stages = []
    for t in range(1, n + 1):
        learned = list(tasks[:t])
        t0 = time.perf_counter()
        router_dir, reused = stage_router(learned, params, paths, progress=progress)
        router_seconds = round(time.perf_counter() - t0, 1)
        model = RoutedModel(
            resolve_base(params.base, paths.base),
            paths.experts,
            router_dir,
            trust_remote_code=params.base.trust_remote_code,
        )
        result = evaluate_system(
            model,
            learned,
            tasks_dir=paths.tasks_dir,
            predictions_dir=paths.benchmark_work / "predictions" / f"stage-{t}",
            experts_dir=paths.experts,
            language_suite=params.router.base_suite,
            batch_size=params.evaluate.batch_size,
        )
        del model
        row: list[float | None] = [result.tasks[task].accuracy for task in learned] + [None] * (n - t)
        matrix.append(row)
        cells.append([f"mr_lora stage {t}: routed evaluation on {task}" for task in learned] + [None] * (n - t))
        language = result.language
        stages.append(
            {
                "stage": t,
                "tasks": learned,
                "router": str(router_dir.relative_to(paths.root)) if router_dir.is_relative_to(paths.root) else "",
                "router_reused": reused,
                "router_seconds": router_seconds,
                "router_accuracy": result.router_accuracy,
                "language_accuracy": language.accuracy if language else None,
                "language_base_accuracy": language.base_accuracy if language else None,
                "eval_seconds": result.seconds,
            }
        )
        if on_stage:
            on_stage(t - 1, row)
    return {**metrics.summary(matrix), "matrix": matrix, "cells": cells, "per_stage": stages}


def stage_router(learned: Sequence[str], params: Params, paths: ProjectPaths, *, progress: bool = True):
    """The router of the stage that has learned `learned`: the DAG's own when it was trained on exactly these tasks
    with these settings, else one trained now (or earlier, by an interrupted run) under .cache/benchmark.
    Returns (folder, reused from the DAG)."""
    import hashlib
    import shutil

    from mllmcl.continual.experts import inputs_fingerprint
    from mllmcl.continual.router import POOL_FILE, STATS_FILE, train_router

    identity = {
        "tasks": list(learned),
        "router": params.router.model_dump(mode="json"),
        "base": params.base.name_or_path
        if params.base.build == "none"
        else inputs_fingerprint(paths.base / "config.json", paths.base / "base.json"),
    }
    own = paths.router / STATS_FILE
    if own.exists():
        stats = json.loads(own.read_text())
        if stats.get("tasks") == list(learned) and _same_training(stats, params):
            return paths.router, True
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    folder = paths.benchmark_work / "routers" / f"{len(learned)}-{key}"
    if (folder / POOL_FILE).exists() and (folder / STATS_FILE).exists():
        return folder, False
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    train_router(
        learned,
        params,
        base_dir=paths.base,
        tasks_dir=paths.tasks_dir,
        out_dir=partial,
        checkpoint_dir=paths.checkpoints(f"benchmark-router-{key}"),
        embedding_cache=paths.embedding_cache,
        progress=progress,
    )
    partial.rename(folder)
    return folder, False


def _same_training(stats: dict, params: Params) -> bool:
    """Whether a router's stats say it was trained with the current router settings."""
    from mllmcl.model.training import training_fields

    cfg = params.router
    return (
        stats.get("config") == json.loads(json.dumps(training_fields(cfg)))
        and stats.get("samples_per_task") == cfg.samples_per_task
        and stats.get("base_samples") == cfg.base_samples
    )


def compare(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    *,
    steps: int | None = None,
    progress: bool = True,
    on_stage=None,
) -> dict:
    """Accuracy matrix and CL metrics of every method for `tasks` in order. LoRA-FT and MR-LoRA's routers of earlier
    stages are trained now (slow); the zero-shot base and the experts are read from their training stats.
    `on_stage(method, stage, row)` reports each row as it is measured."""
    methods: dict[str, dict] = {}
    for name, method in isolated_rows(tasks, paths.experts).items():
        methods[name] = {**method, **metrics.summary(method["matrix"])}

    def report(method: str):
        return (lambda stage, row: on_stage(method, stage, row)) if on_stage else None

    methods["mr_lora"] = mr_lora_stages(tasks, params, paths, progress=progress, on_stage=report("MR-LoRA"))
    methods["lora_ft"] = sequential_lora(
        tasks,
        params,
        base_dir=paths.base,
        tasks_dir=paths.tasks_dir,
        steps=steps,
        progress=progress,
        on_stage=report("LoRA-FT"),
    )
    return {"tasks": list(tasks), "methods": methods}


def unmeasured_cells(result: dict) -> list[str]:
    """Every filled cell of every method's matrix that no evaluation is named for (none, in a sound report)."""
    missing = []
    for name, method in result["methods"].items():
        cells = method.get("cells") or []
        for t, row in enumerate(method["matrix"]):
            for j, value in enumerate(row):
                source = cells[t][j] if t < len(cells) and j < len(cells[t]) else None
                if value is not None and not source:
                    missing.append(f"{name}[{t}][{j}]")
    return missing


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
