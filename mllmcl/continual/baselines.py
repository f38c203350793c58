"""The continual-learning baselines MR-LoRA is judged against (from the MLLM-CL paper and Srivastava et al.), on the workspace's base and task
data: the zero-shot base (lower bound), sequential LoRA fine-tuning (LoRA-FT: ONE shared adapter trained
task after task, the forgetting MR-LoRA avoids), LoRA-FT with a replay memory, mSGM (soft targets, with and
without rehearsal), joint multi-task LoRA (the classic upper bound), per-task experts with oracle routing
(MR-LoRA's upper bound), the same experts routed by the nearest mean of the base's image embeddings (the
ablation of the trained router) and MR-LoRA itself, measured stage by stage (a router per stage, as the pipeline
trains it). Each gets
the accuracy matrix A[t][j], the evaluation behind every cell (`cells`) and the MFT/MFN/MAA/BWT of
mllmcl.continual.metrics."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from mllmcl.config import Params
from mllmcl.continual import metrics
from mllmcl.continual.benchmark_methods import (
    DEFAULT_REPLAY_PER_TASK,
    METHODS,
    RESULTS_VERSION,
    SHARED_ADAPTER_METHODS,
)
from mllmcl.continual.experts import ExpertStats
from mllmcl.data import records as rec_io
from mllmcl.paths import ProjectPaths

Matrix = list[list[float | None]]


class _SharedAdapter:
    """One LoRA on a freshly loaded base, as the shared-adapter methods train it, scored on tasks' test splits and on
    the text-only suite (the base's own accuracy there, adapter off, measured once)."""

    def __init__(
        self,
        params: Params,
        cfg,
        *,
        base_dir: Path,
        tasks_dir: Path,
        language_suite: str | None,
        test_limit: int | None = None,
    ):
        from mllmcl.model.adapters import lora_config, new_adapter
        from mllmcl.model.loading import Prompting, load_base, resolve_base

        base = resolve_base(params.base, base_dir)
        model, processor = load_base(base, trust_remote_code=params.base.trust_remote_code)
        self.prompting = Prompting.for_model(model, processor)
        self.model = new_adapter(model, lora_config(cfg, model, role="expert"), seed=cfg.seed)
        self.tasks_dir = Path(tasks_dir)
        self.test_limit = test_limit  # the first N test records of each split (--quick), None: all
        self.batch_size = params.evaluate.batch_size
        self.answered = 0  # requests answered and the seconds that took: the method's latency per request
        self.answer_seconds = 0.0
        self._tests: dict[str, list[dict]] = {}  # test records, read once: every stage scores them again
        suite = self.tasks_dir / language_suite if language_suite else None
        self.language = (
            (suite, rec_io.read_records(suite / "test.jsonl")[:test_limit])
            if suite and (suite / "test.jsonl").exists()
            else None
        )
        self.language_base = None
        if self.language:
            with self.model.disable_adapter():
                self.language_base = self._score(*self.language)

    def examples(self, task: str, records: list[dict] | None = None) -> list:
        """`records` of `task` (default: its whole training split) encoded with their answers."""
        from mllmcl.model.batching import encode_records

        folder = self.tasks_dir / task
        records = rec_io.read_records(folder / "train.jsonl") if records is None else records
        return encode_records(self.prompting, records, folder, with_answers=True)

    def train(self, examples: list, cfg, *, desc: str, progress: bool, label_smoothing: float = 0.0, validation=()):
        """Train on `examples`; with `validation` [(task folder, records)], with the experts' early stopping too."""
        from mllmcl.model.training import EarlyStopping, train

        validation = [(folder, records) for folder, records in validation if records]
        early = (
            EarlyStopping(
                score=lambda: (
                    sum(self._accuracy(f, r) * len(r) for f, r in validation) / sum(len(r) for _, r in validation)
                ),
                every=cfg.eval_every,
                patience=cfg.patience,
            )
            if validation
            else None
        )
        pad_id = self.prompting.tokenizer.pad_token_id
        return train(
            self.model,
            examples,
            cfg,
            pad_id=pad_id,
            progress=progress,
            desc=desc,
            label_smoothing=label_smoothing,
            early_stopping=early,
        )

    def accuracy(self, task: str) -> float:
        folder = self.tasks_dir / task
        if task not in self._tests:
            self._tests[task] = rec_io.read_records(folder / "test.jsonl")[: self.test_limit]
        return self._score(folder, self._tests[task])

    def language_accuracy(self) -> float | None:
        return self._score(*self.language) if self.language else None

    def stage_record(self, trained, examples: list, started: float) -> dict:
        """What every shared-adapter stage reports: its training run and the text-only suite after it."""
        return {
            "train_examples": len(examples),
            "steps": trained.stopped_at,
            "best_step": trained.best_step,
            "train_seconds": trained.seconds,
            "seconds": round(time.perf_counter() - started, 1),
            "language_accuracy": self.language_accuracy(),
            "language_base_accuracy": self.language_base,
        }

    def adapter_bytes(self) -> int:
        """Size of the adapter as saved (safetensors): what serving this method stores and loads."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            return sum(f.stat().st_size for f in Path(tmp).rglob("*.safetensors"))

    def latency_ms(self) -> float | None:
        return round(1000 * self.answer_seconds / self.answered, 3) if self.answered else None

    def _accuracy(self, folder: Path, records: list[dict]) -> float:
        from mllmcl.model.generation import score_records

        return score_records(self.model, self.prompting, records, folder, batch_size=self.batch_size)[0]

    def _score(self, folder: Path, records: list[dict]) -> float:
        t0 = time.perf_counter()
        score = self._accuracy(folder, records)
        self.answer_seconds += time.perf_counter() - t0
        self.answered += len(records)
        return score


def sequential_lora(
    tasks: Sequence[str],
    params: Params,
    *,
    base_dir: Path,
    tasks_dir: Path,
    steps: int | None = None,
    replay_per_task: int = 0,
    label_smoothing: float = 0.0,
    method: str = "lora_ft",
    language_suite: str | None = None,
    test_limit: int | None = None,
    progress: bool = True,
    on_stage: Callable[[int, list], None] | None = None,
    budget_scale: float = 1.0,
) -> dict:
    """One shared adapter, trained from the base on task 1, then further on task 2, ... (same LoRA config, steps and
    learning rate as an expert; a fresh optimizer per task), scored after each stage on every task learned so far
    (the lower triangle of A) and on the text-only `language_suite`. The variants of the seed papers:
    - LoRA-FT: nothing else (the forgetting MR-LoRA avoids);
    - + replay: a fixed memory of `replay_per_task` training records of every earlier task joins each stage's data;
    - mSGM: `label_smoothing` (soft targets), with or without that replay (rehearsal)."""
    import random

    from mllmcl.continual.experts import expert_config, split_validation, task_seed

    cfg = params.expert.model_copy(update={"steps": steps}) if steps else params.expert
    shared = _SharedAdapter(
        params, cfg, base_dir=base_dir, tasks_dir=tasks_dir, language_suite=language_suite, test_limit=test_limit
    )
    n = len(tasks)
    matrix: Matrix = []
    cells: list[list[str | None]] = []
    stages = []
    memory: list = []  # encoded examples replay keeps of the tasks already learned
    for stage, task in enumerate(tasks):
        t0 = time.perf_counter()
        folder = Path(tasks_dir) / task
        task_cfg = expert_config(cfg, folder, budget_scale=budget_scale)  # the task's own budget, as its expert's
        records, validation = split_validation(
            rec_io.read_records(folder / "train.jsonl"), task_cfg.validation_size, task
        )
        examples = shared.examples(task, records) + memory
        trained = shared.train(
            examples,
            task_cfg.model_copy(update={"seed": cfg.seed + task_seed(task)}),
            desc=f"{method} {stage + 1}/{n} {task}",
            progress=progress,
            label_smoothing=label_smoothing,
            validation=[(folder, validation)],
        )
        if replay_per_task:
            rng = random.Random(f"{cfg.seed}-replay-{task}")
            memory += shared.examples(task, rng.sample(records, min(replay_per_task, len(records))))
        if stage == n - 1:  # the latency of the finished method: its last stage's answers alone
            shared.answered, shared.answer_seconds = 0, 0.0
        row: list[float | None] = [shared.accuracy(t) if j <= stage else None for j, t in enumerate(tasks)]
        matrix.append(row)
        cells.append(
            [f"{method} stage {stage + 1}: evaluation on {tasks[j]}" if j <= stage else None for j in range(n)]
        )
        stages.append(
            {
                "stage": stage + 1,
                "task": task,
                "memory_records": len(memory),
                **shared.stage_record(trained, examples, t0),
            }
        )
        if on_stage:
            on_stage(stage, row)
    return {
        "matrix": matrix,
        "cells": cells,
        "per_stage": stages,
        "stage_seconds": [s["seconds"] for s in stages],
        "steps_per_task": cfg.steps,
        "replay_per_task": replay_per_task,
        "label_smoothing": label_smoothing,
        **metrics.summary(matrix),
        **costs(
            train_seconds=sum(s["train_seconds"] for s in stages),
            adapter_bytes=shared.adapter_bytes(),
            latency_ms=shared.latency_ms(),
            per_stage=stages,
        ),
    }


def joint_lora(
    tasks: Sequence[str],
    params: Params,
    *,
    base_dir: Path,
    tasks_dir: Path,
    steps: int | None = None,
    language_suite: str | None = None,
    test_limit: int | None = None,
    progress: bool = True,
    budget_scale: float = 1.0,
) -> dict:
    """Joint multi-task LoRA, the classic upper bound: one adapter trained once on every task's training data at
    once, with the budget of one expert per task (the sum of the experts' steps, a task's own budget included),
    scored on every task. Only the last row of A is measured (there is no sequence); the earlier rows stay empty
    rather than copied."""
    from mllmcl.continual.experts import expert_config

    per_task = params.expert.model_copy(update={"steps": steps}) if steps else params.expert
    budget = sum(expert_config(per_task, Path(tasks_dir) / t, budget_scale=budget_scale).steps for t in tasks)
    cfg = params.expert.model_copy(update={"steps": budget})
    shared = _SharedAdapter(
        params, cfg, base_dir=base_dir, tasks_dir=tasks_dir, language_suite=language_suite, test_limit=test_limit
    )
    from mllmcl.continual.experts import split_validation

    examples, validation = [], []
    for task in tasks:
        folder = Path(tasks_dir) / task
        records, held = split_validation(rec_io.read_records(folder / "train.jsonl"), cfg.validation_size, task)
        examples += shared.examples(task, records)
        validation.append((folder, held))
    t0 = time.perf_counter()
    trained = shared.train(examples, cfg, desc="joint", progress=progress, validation=validation)
    n = len(tasks)
    shared.answered, shared.answer_seconds = 0, 0.0
    matrix: Matrix = [[None] * n for _ in range(n - 1)] + [[shared.accuracy(t) for t in tasks]]
    cells = [[None] * n for _ in range(n - 1)] + [[f"joint: evaluation on {t}" for t in tasks]]
    stages = [{"stage": n, "tasks": list(tasks), **shared.stage_record(trained, examples, t0)}]
    return {
        "matrix": matrix,
        "cells": cells,
        "per_stage": stages,
        "steps": cfg.steps,
        **metrics.summary(matrix),
        **costs(
            train_seconds=trained.seconds,
            adapter_bytes=shared.adapter_bytes(),
            latency_ms=shared.latency_ms(),
            per_stage=stages,
        ),
        "MFT": None,  # without a sequence there is no just-learned accuracy to forget from
        "MAA": None,
        "BWT": None,
    }


def costs(
    *, train_seconds: float | None, adapter_bytes: int | None, latency_ms: float | None, per_stage: Sequence[dict]
) -> dict:
    """What a method costs and what it does to the text-only suite, beside its accuracy matrix: training seconds of the
    whole sequence, bytes of adapter weights it serves with, milliseconds per answered request in its last stage's
    evaluation (batched as the evaluation batches), its router's accuracy there and the linguistic degradation (base
    minus method on the text-only suite after the last stage, absolute and % of the base; Srivastava et al.)."""
    last = per_stage[-1] if per_stage else {}
    language, base = last.get("language_accuracy"), last.get("language_base_accuracy")
    drop = metrics.linguistic_degradation(base, language) if language is not None and base is not None else None
    return {
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "adapter_bytes": adapter_bytes,
        "latency_ms": latency_ms,
        "router_accuracy": last.get("router_accuracy"),
        "language_accuracy": language,
        "linguistic_drop": drop["delta"] if drop else None,
        "linguistic_drop_pct": drop["percent"] if drop else None,
    }


def adapter_files_bytes(*folders: Path) -> int:
    """Bytes of the adapter weights (safetensors) in `folders`."""
    return sum(f.stat().st_size for folder in folders for f in Path(folder).glob("*.safetensors"))


def _per_request_ms(seconds: Sequence[float | None], counts: Sequence[int]) -> float | None:
    if any(s is None for s in seconds) or not sum(counts):
        return None  # stats written before the timing was recorded: shown as missing, never guessed
    return round(1000 * sum(seconds) / sum(counts), 3)


def isolated_rows(
    tasks: Sequence[str],
    experts_dir: Path,
    *,
    params: Params | None = None,
    base_dir: Path | None = None,
    tasks_dir: Path | None = None,
    test_limit: int | None = None,
) -> dict:
    """Zero-shot base and oracle-routed experts. Neither model changes once its task is learned (the base is never
    trained, an expert is frozen), so one evaluation per task gives the whole column: `cells` names it for every cell.
    On the whole test split that evaluation is train_expert's own (its stats); with `test_limit` both are scored again
    on the first `test_limit` test records, the ones every routed and shared-adapter method is scored on, so that
    MR-LoRA and its oracle bound are compared on the same requests."""
    stats = [ExpertStats.read(Path(experts_dir) / task) for task in tasks]
    if test_limit is not None and any(s.n_test > test_limit for s in stats):
        if params is None or base_dir is None or tasks_dir is None:
            raise ValueError("isolated_rows: test_limit needs params, base_dir and tasks_dir to score again")
        scored = _score_isolated(tasks, experts_dir, params, base_dir, tasks_dir, test_limit)
        where = {m: f"on the first {test_limit} test records" for m in scored}
    else:
        scored = {
            "zero_shot_base": ([s.base_accuracy for s in stats], [s.base_eval_seconds for s in stats]),
            "oracle_experts": ([s.expert_accuracy for s in stats], [s.expert_eval_seconds for s in stats]),
        }
        where = {
            "zero_shot_base": "experts/{task}/train_stats.json base_accuracy, the whole test split",
            "oracle_experts": "experts/{task}/train_stats.json expert_accuracy, the whole test split",
        }
    counts = [min(s.n_test, test_limit or s.n_test) for s in stats]
    cost = {
        "zero_shot_base": costs(
            train_seconds=0.0,
            adapter_bytes=0,
            latency_ms=_per_request_ms(scored["zero_shot_base"][1], counts),
            per_stage=[],
        ),
        "oracle_experts": costs(
            train_seconds=sum(s.train_seconds for s in stats),
            adapter_bytes=adapter_files_bytes(*(Path(experts_dir) / t for t in tasks)),
            latency_ms=_per_request_ms(scored["oracle_experts"][1], counts),
            per_stage=[],
        ),
    }
    out = {}
    for method, who, why in (
        ("zero_shot_base", "the base", "the base is never trained"),
        ("oracle_experts", "experts/{task}", "the expert is frozen once trained"),
    ):
        sources = [f"{who.format(task=task)} on {task}, {where[method].format(task=task)} ({why})" for task in tasks]
        out[method] = {**frozen_rows(scored[method][0], sources), **cost[method]}
    return out


def frozen_rows(final: Sequence[float | None], sources: Sequence[str | None]) -> dict:
    """The matrix and cells of a model that never changes once its task is learned: task j's one evaluation fills its
    column from stage j on."""
    n = len(final)
    return {
        "matrix": [[final[j] if j <= t else None for j in range(n)] for t in range(n)],
        "cells": [[sources[j] if j <= t else None for j in range(n)] for t in range(n)],
    }


def _score_isolated(
    tasks: Sequence[str], experts_dir: Path, params: Params, base_dir: Path, tasks_dir: Path, test_limit: int
) -> dict[str, tuple[list[float], list[float]]]:
    """(accuracies, seconds) of the base and of each task's own expert on the first `test_limit` test records."""
    from mllmcl.model.adapters import attach_adapters
    from mllmcl.model.generation import score_records
    from mllmcl.model.loading import Prompting, load_base, resolve_base

    base, processor = load_base(resolve_base(params.base, base_dir), trust_remote_code=params.base.trust_remote_code)
    prompting = Prompting.for_model(base, processor)
    model = attach_adapters(base, {task: Path(experts_dir) / task for task in tasks})
    out: dict[str, tuple[list[float], list[float]]] = {"zero_shot_base": ([], []), "oracle_experts": ([], [])}
    for task in tasks:
        folder = Path(tasks_dir) / task
        records = rec_io.read_records(folder / "test.jsonl")[:test_limit]
        model.set_adapter(task)
        for method, adapter in (("oracle_experts", nullcontext()), ("zero_shot_base", model.disable_adapter())):
            t0 = time.perf_counter()
            with adapter:
                acc = score_records(model, prompting, records, folder, batch_size=params.evaluate.batch_size)[0]
            out[method][0].append(acc)
            out[method][1].append(time.perf_counter() - t0)
    return out


def mr_lora_stages(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    *,
    test_limit: int | None = None,
    progress: bool = True,
    on_stage: Callable[[int, list], None] | None = None,
) -> dict:
    """MR-LoRA measured stage by stage, as the pipeline runs it: at stage t a router trained exactly as train_router
    trains it, on the replay of tasks 1..t, routes among the (frozen) experts 1..t, and the routed system is evaluated
    on tasks 1..t and the text-only suite. Each row of A is one evaluation, so a router that starts sending an earlier
    task elsewhere shows as forgetting. The DAG's router serves the last stage when it was trained on the same tasks
    and settings; the others are kept under .cache/benchmark, so a killed run resumes with the routers it trained."""
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.continual.router import STATS_FILE
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
        router_train_seconds = json.loads((router_dir / STATS_FILE).read_text()).get("seconds")
        model = RoutedModel(
            resolve_base(params.base, paths.base),
            paths.experts,
            router_dir,
            trust_remote_code=params.base.trust_remote_code,
            routing=params.routing,
        )
        row, row_cells, info = routed_stage(model, "mr_lora", learned, n, params, paths, test_limit=test_limit)
        del model
        matrix.append(row)
        cells.append(row_cells)
        stages.append(
            {
                **info,
                "router": str(router_dir.relative_to(paths.root)) if router_dir.is_relative_to(paths.root) else "",
                "router_reused": reused,
                "router_seconds": router_seconds,
                "router_train_seconds": router_train_seconds,
            }
        )
        if on_stage:
            on_stage(t - 1, row)
    experts = [ExpertStats.read(paths.expert(task)) for task in tasks]
    router_training = [s["router_train_seconds"] for s in stages]
    return {
        **metrics.summary(matrix),
        "matrix": matrix,
        "cells": cells,
        "per_stage": stages,
        **costs(  # every expert once, and the router retrained at every stage: what the sequence cost
            train_seconds=None
            if None in router_training
            else sum(e.train_seconds for e in experts) + sum(router_training),
            adapter_bytes=adapter_files_bytes(*(paths.expert(t) for t in tasks), router_dir),
            latency_ms=stages[-1]["latency_ms"],
            per_stage=stages,
        ),
    }


class NearestMeanRouter:
    """Routes an image request to the task whose mean base image embedding is nearest (no router training) and a
    text-only request to the base: the ablation that shows what training the MLLM router buys."""

    def __init__(self, router, means: dict):
        import numpy as np

        self.router = router  # only its image embeddings are used: the base's own, unchanged by the router's LoRA
        self.tasks = list(means)
        self.means = np.stack([means[t] for t in self.tasks])

    def route(self, requests, *, batch_size: int = 64, encoded=None) -> list:
        """Routes as the routers of mllmcl.continual.router do (`encoded` is unused: its features come from the
        MLLM router's own prompt)."""
        import numpy as np

        from mllmcl.continual.router import BASE, Route

        routes = []
        for e in self.router.image_embeddings(requests, batch_size=batch_size):
            if e is None:
                routes.append(Route(BASE, None, 1.0, "text-only: base"))
                continue
            dist = np.linalg.norm(self.means - e[None, :], axis=1)
            k = int(dist.argmin())
            routes.append(Route(self.tasks[k], None, 1.0, f"nearest mean {dist[k]:.3f}", image_embedding=e))
        return routes


def ncm_stages(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    *,
    router_dir: Path | None = None,
    test_limit: int | None = None,
    on_stage: Callable[[int, list], None] | None = None,
) -> dict:
    """The nearest-class-mean ablation, stage by stage like MR-LoRA: at stage t each task's mean is the base's image
    embedding averaged over the router's replay sample of that task (`router.samples_per_task` training records), the
    experts are the same, and the routed system is evaluated on tasks 1..t and the text-only suite. `router_dir` (default:
    the DAG's router) lends its image embeddings, which are the base's own, whatever its LoRA learned."""
    import numpy as np

    from mllmcl.continual.embedding_cache import EmbeddingCache, base_key
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.continual.router import labelled_image_embeddings, replay_set
    from mllmcl.errors import UserError
    from mllmcl.model.loading import resolve_base

    base = resolve_base(params.base, paths.base)
    router_dir = router_dir or paths.router
    model = RoutedModel(
        base, paths.experts, router_dir, trust_remote_code=params.base.trust_remote_code, routing=params.routing
    )
    missing = [t for t in tasks if t not in model.experts]
    if missing:
        raise UserError(f"{router_dir}: its pool lacks {', '.join(missing)} (run `dvc repro` first)")
    trained_router = model.router
    cache = EmbeddingCache(paths.embedding_cache, base_key(base))
    sample = replay_set(tasks, paths.tasks_dir, "train", params.router.samples_per_task, params.router.seed)
    by_task: dict[str, list] = {}
    for task, emb in labelled_image_embeddings(trained_router, sample, paths.tasks_dir, cache):
        if emb is not None:
            by_task.setdefault(task, []).append(emb)
    n = len(tasks)
    matrix: Matrix = []
    cells: list[list[str | None]] = []
    stages = []
    for t in range(1, n + 1):
        learned = list(tasks[:t])
        model.router = NearestMeanRouter(
            trained_router, {task: np.mean(by_task[task], axis=0) for task in learned if task in by_task}
        )
        row, row_cells, info = routed_stage(model, "ncm", learned, n, params, paths, test_limit=test_limit)
        matrix.append(row)
        cells.append(row_cells)
        stages.append(info)
        if on_stage:
            on_stage(t - 1, row)
    model.router = trained_router
    dim = len(next(iter(by_task.values()))[0]) if by_task else 0
    return {
        **metrics.summary(matrix),
        "matrix": matrix,
        "cells": cells,
        "per_stage": stages,
        **costs(  # the experts, and one float32 mean per task instead of a router
            train_seconds=sum(ExpertStats.read(paths.expert(t)).train_seconds for t in tasks),
            adapter_bytes=adapter_files_bytes(*(paths.expert(t) for t in tasks)) + 4 * dim * len(by_task),
            latency_ms=stages[-1]["latency_ms"],
            per_stage=stages,
        ),
    }


class _TimedPredictions:
    """A routed model whose routed answers (`predict`: router, then expert) are counted and timed; everything else, such
    as the base-only answers the evaluation also asks for, passes through untimed."""

    def __init__(self, model):
        self.model, self.requests, self.seconds = model, 0, 0.0

    def predict(self, requests, **kwargs):
        t0 = time.perf_counter()
        out = self.model.predict(requests, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.requests += len(requests)
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def _run_name(method: str, learned: Sequence[str], params: Params) -> str:
    """A routed stage's own predictions folder (what it learned, in order, and its seed): benchmark workers evaluating
    other seeds or orders at once never write into one another's."""
    return f"{method}-seed{params.expert.seed}-{'-'.join(learned)}"


def routed_stage(
    model, method: str, learned: list[str], n: int, params: Params, paths: ProjectPaths, test_limit: int | None = None
):
    """One stage of a routed method: the system evaluated on the tasks learned so far and the text-only suite, as
    (row of A, the evaluation behind each cell, the stage's record)."""
    from mllmcl.continual.evaluation import evaluate_system

    t = len(learned)
    timed = _TimedPredictions(model)
    result = evaluate_system(
        timed,
        learned,
        tasks_dir=paths.tasks_dir,
        predictions_dir=paths.benchmark_work / "predictions" / _run_name(method, learned, params),
        experts_dir=paths.experts,
        language_suite=params.router.base_suite,
        batch_size=params.evaluate.batch_size,
        max_per_task=test_limit,
    )
    row: list[float | None] = [result.tasks[task].accuracy for task in learned] + [None] * (n - t)
    cells = [f"{method} stage {t}: routed evaluation on {task}" for task in learned] + [None] * (n - t)
    language = result.language
    return (
        row,
        cells,
        {
            "stage": t,
            "tasks": learned,
            "router_accuracy": result.router_accuracy,
            "language_accuracy": language.accuracy if language else None,
            "language_base_accuracy": language.base_accuracy if language else None,
            "eval_seconds": result.seconds,
            "latency_ms": round(1000 * timed.seconds / timed.requests, 3) if timed.requests else None,
        },
    )


def stage_router(learned: Sequence[str], params: Params, paths: ProjectPaths, *, progress: bool = True):
    """The router of the stage that has learned `learned`: the DAG's own when it was trained on exactly these tasks
    with these settings, else one trained now (or earlier, by an interrupted run) under .cache/benchmark.
    Returns (folder, reused from the DAG)."""
    import hashlib
    import shutil

    from mllmcl.continual.router import POOL_FILE, STATS_FILE, train_router
    from mllmcl.model.loading import base_identity

    identity = {
        "version": RESULTS_VERSION,
        "data": tasks_fingerprint([*learned, params.router.base_suite], paths.tasks_dir),
        "tasks": list(learned),
        "router": params.router.model_dump(mode="json"),
        "base": base_identity(params.base, paths.base),  # by its bytes: a rebuilt identical base reuses the router
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
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")  # benchmark workers never share one
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


def tasks_fingerprint(tasks: Sequence[str], tasks_dir: Path) -> str:
    """The bytes of each task's records and meta.json: a router kept for other data is not reused."""
    from mllmcl.continual.experts import inputs_fingerprint

    names = ("train.jsonl", "test.jsonl", "meta.json")
    return inputs_fingerprint(*(Path(tasks_dir) / task / name for task in sorted(tasks) for name in names))


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
    methods: Sequence[str] = METHODS,
    replay_per_task: int = DEFAULT_REPLAY_PER_TASK,
    test_limit: int | None = None,
    progress: bool = True,
    on_stage=None,
    budget_scale: float = 1.0,
) -> dict:
    """Accuracy matrix and CL metrics of each of `methods` for `tasks` in order. The shared-adapter methods, joint
    training and MR-LoRA's routers of earlier stages are trained now (slow); the zero-shot base and the experts are read
    from their training stats (scored again on the first `test_limit` test records when that is set).
    `on_stage(method, stage, row)` reports each row as it is measured; `budget_scale` scales tasks' own budgets
    (experts.expert_config)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown benchmark methods {unknown} (have: {', '.join(METHODS)})")
    out: dict[str, dict] = {}
    if {"zero_shot_base", "oracle_experts"} & set(methods):
        bounds = isolated_rows(
            tasks, paths.experts, params=params, base_dir=paths.base, tasks_dir=paths.tasks_dir, test_limit=test_limit
        )
        for name, method in bounds.items():
            if name in methods:
                out[name] = {**method, **metrics.summary(method["matrix"])}

    def report(method: str):
        return (lambda stage, row: on_stage(method, stage, row)) if on_stage else None

    common = dict(
        base_dir=paths.base,
        tasks_dir=paths.tasks_dir,
        steps=steps,
        progress=progress,
        test_limit=test_limit,
        budget_scale=budget_scale,
    )
    language = params.router.base_suite
    if "mr_lora" in methods:
        out["mr_lora"] = mr_lora_stages(
            tasks, params, paths, test_limit=test_limit, progress=progress, on_stage=report("mr_lora")
        )
    if "ncm" in methods:  # the image embeddings of the last stage's router: the base's own, as any router's
        router_dir, _ = stage_router(tasks, params, paths, progress=progress)
        out["ncm"] = ncm_stages(
            tasks, params, paths, router_dir=router_dir, test_limit=test_limit, on_stage=report("ncm")
        )
    for name, (replay, smoothing) in SHARED_ADAPTER_METHODS.items():
        if name in methods:
            out[name] = sequential_lora(
                tasks,
                params,
                **common,
                replay_per_task=replay_per_task if replay else 0,
                label_smoothing=smoothing,
                method=name,
                language_suite=language,
                on_stage=report(name),
            )
    if "joint" in methods:
        out["joint"] = joint_lora(tasks, params, **common, language_suite=language)
        if on_stage:
            on_stage("joint", len(tasks) - 1, out["joint"]["matrix"][-1])
    return {"tasks": list(tasks), "methods": {m: out[m] for m in METHODS if m in out}}


def task_orders(tasks: Sequence[str], n: int, seed: int = 0) -> list[list[str]]:
    """The given order first, then up to n - 1 other distinct permutations drawn with a fixed seed: the task-order
    robustness the MLLM-CL paper's reviewers asked for."""
    import math
    import random

    orders = [list(tasks)]
    n = min(n, math.factorial(len(tasks)))  # there are no more distinct orders than that: the loop ends
    rng = random.Random(f"orders-{seed}")
    while len(orders) < n:
        candidate = list(tasks)
        rng.shuffle(candidate)
        if candidate not in orders:
            orders.append(candidate)
    return orders


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
