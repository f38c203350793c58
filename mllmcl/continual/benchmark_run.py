"""`mllmcl benchmark` as a plan: a track's tasks, seeds x task orders, and for each (seed, order) every method run
once. Each method's run on one (seed, order), and each seed's zero-shot/oracle rows, is a unit whose result is kept
under .cache/benchmark/units (or --units), keyed by everything it depends on, so a killed benchmark continues with the
first unit it had not finished, and a second run with more seeds or orders trains only what is new. Experts are trained
per seed, only when a unit of that seed is measured (the DAG's own are reused where its settings match); routers per
stage are kept by baselines.stage_router."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mllmcl.config import Params
from mllmcl.continual import metrics
from mllmcl.continual.baselines import tasks_fingerprint
from mllmcl.continual.benchmark_claims import claims_json
from mllmcl.continual.benchmark_methods import (
    DEFAULT_REPLAY_PER_TASK,
    METHODS,
    REPORT_KEYS,
    RESULTS_VERSION,
    SHARED_ADAPTER_METHODS,
    TRACKS,
    quick_budget,
)
from mllmcl.errors import UserError
from mllmcl.paths import ProjectPaths

# Nothing to train or cache: read from the experts' stats, or (with a test limit) scored again once per seed.
ISOLATED = ("zero_shot_base", "oracle_experts")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What one benchmark measures. Every method gets the budget of one expert per task (`steps`, with the experts'
    rank and learning rate, through the one training loop); --quick shrinks the budget and the test splits, never the
    list of methods."""

    track: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...] = METHODS
    seeds: int = 1  # training seeds 0..seeds-1, added to expert.seed and router.seed
    orders: int = 1  # the given task order, then seeded permutations (baselines.task_orders)
    steps: int | None = None  # per task, for experts and shared adapters alike (None: expert.steps)
    router_steps: int | None = None  # None: router.steps
    replay_per_task: int = DEFAULT_REPLAY_PER_TASK
    test_limit: int | None = None  # the first N records of every test split (None: all)
    units_dir: Path | None = None  # where finished units are kept (None: .cache/benchmark/units); a tracked folder
    # lets a grid longer than one sitting accumulate across machines and sessions

    @classmethod
    def quick(cls, track: str, tasks: Sequence[str], **overrides) -> BenchmarkSettings:
        """One seed, one order, the track's reduced budget (benchmark_methods.quick_budget): minutes, not hours."""
        return cls(track=track, tasks=tuple(tasks), **{**quick_budget(track), **overrides})

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise UserError(f"benchmark: unknown methods {unknown} (have: {', '.join(METHODS)})")
        for name in ("seeds", "orders", "steps", "router_steps", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"benchmark: --{name.replace('_', '-')} {value}: must be at least 1")
        if self.replay_per_task < 0:
            raise UserError(f"benchmark: --replay-per-task {self.replay_per_task}: must be 0 or more")
        if len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise UserError(f"benchmark: tasks {list(self.tasks)}: need at least one, each once")


def settings_for(
    params: Params,
    *,
    track: str | None = None,
    tasks: Sequence[str] | None = None,
    seeds: int | None = None,
    orders: int | None = None,
    quick: bool = False,
    steps: int | None = None,
    router_steps: int | None = None,
    methods: Sequence[str] = METHODS,
    replay_per_task: int = DEFAULT_REPLAY_PER_TASK,
    units_dir: Path | None = None,
) -> BenchmarkSettings:
    """The benchmark a user asks for (the CLI's flags, the Prefect flow's parameters): a track's tasks or the
    workspace's, --quick's reduced budget unless a figure is given explicitly."""
    if track is not None and track not in TRACKS:
        raise UserError(f"benchmark: unknown track {track!r} (have: {', '.join(TRACKS)})")
    order = list(tasks or (TRACKS[track] if track else params.tasks))
    name = track or next((t for t, ts in TRACKS.items() if list(ts) == order), "workspace")
    given = {
        k: v
        for k, v in dict(seeds=seeds, orders=orders, steps=steps, router_steps=router_steps).items()
        if v is not None
    }
    common = dict(methods=tuple(methods), replay_per_task=replay_per_task, units_dir=units_dir)
    if quick:
        return BenchmarkSettings.quick(name, order, **common, **given)
    return BenchmarkSettings(track=name, tasks=tuple(order), **common, **given)


@dataclass(frozen=True)
class _SeedPaths(ProjectPaths):
    """The project's paths with one seed's experts and the benchmark's task folder in place of the DAG's."""

    experts_dir: Path = Path("models/experts")
    tasks_folder: Path = Path("data/tasks")

    @property
    def experts(self) -> Path:
        return self.experts_dir

    @property
    def tasks_dir(self) -> Path:
        return self.tasks_folder


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    """Atomically: a unit file is either whole or absent, so a killed run never resumes from half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # two processes never share one
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def seeded_params(params: Params, seed: int, settings: BenchmarkSettings) -> Params:
    """The run's settings for seed `seed`: seeds offset, the budget of `settings` (the same for experts and every
    shared adapter)."""
    expert = params.expert.model_copy(
        update={"seed": params.expert.seed + seed, "steps": settings.steps or params.expert.steps}
    )
    router = params.router.model_copy(
        update={"seed": params.router.seed + seed, "steps": settings.router_steps or params.router.steps}
    )
    return params.model_copy(update={"expert": expert, "router": router})


def budget_scale(settings: BenchmarkSettings, params: Params) -> float:
    """The benchmark's budget against the experts' (`--quick`: 150 / 1200): what a task's own budget is scaled by."""
    return settings.steps / params.expert.steps if settings.steps else 1.0


def own_budgets(tasks: Sequence[str], tasks_dir: Path, scale: float) -> dict[str, int]:
    """The steps each task with its own budget (spec.yaml `expert:`) trains for under `scale`; {} when none has one."""
    from mllmcl.continual.experts import applied_overrides

    applied = {t: applied_overrides(Path(tasks_dir) / t, scale) for t in tasks}
    return {t: o["steps"] for t, o in applied.items() if "steps" in o}


def scaled_budgets(tasks: Sequence[str], tasks_dir: Path, scale: float, *, unscaled_too: bool = False) -> dict | None:
    """What a scaled budget changes, for the keys of kept results: the scale and every task's own settings as they
    apply under it; None when nothing is scaled (scale 1, where meta.json's fingerprint already covers them, or no
    task with its own settings), so those keys stay as they were. `unscaled_too`: at scale 1 as well (joint training,
    whose budget became the sum of the tasks' own in RESULTS_VERSION 2's lifetime)."""
    from mllmcl.continual.experts import applied_overrides, task_overrides

    own = {t: applied_overrides(Path(tasks_dir) / t, scale) for t in tasks if task_overrides(Path(tasks_dir) / t)}
    return {"scale": round(scale, 6), "tasks": own} if own and (scale != 1.0 or unscaled_too) else None


def benchmark_tasks_dir(tasks: Sequence[str], params: Params, paths: ProjectPaths) -> Path:
    """Where the benchmark reads its tasks: data/tasks when the DAG ingested all of them and the text-only suite;
    otherwise .cache/benchmark/tasks, linking what data/tasks has and ingesting the rest from data/raw/<task> (an
    ability-track benchmark on a domain-track workspace, say), without touching the DAG's outputs."""
    from mllmcl.data.ingest import ingest_task

    needed = [*tasks, params.router.base_suite]
    if all((paths.task_data(t) / "test.jsonl").is_file() for t in needed):
        return paths.tasks_dir
    folder = paths.benchmark_work / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for task in needed:
        target = folder / task
        if (target / "test.jsonl").is_file():
            continue
        if (paths.task_data(task) / "test.jsonl").is_file():
            if target.is_symlink():
                target.unlink()
            target.symlink_to(paths.task_data(task).resolve(), target_is_directory=True)
        elif paths.raw(task).is_dir():
            ingest_task(task, params.data, raw_dir=paths.raw(task), out_dir=target)
        else:
            raise UserError(
                f"{paths.raw(task)}: no data for benchmark task {task!r} (add it with `mllmcl task add {task} ...`)"
            )
    return folder


def _base_fingerprint(params: Params, paths: ProjectPaths) -> str:
    """The base a kept result depends on, by its weights (loading.base_identity): a bit-identical rebuild of the base on
    another machine reads the kept units back; another base measures them again."""
    from mllmcl.model.loading import base_identity

    return _digest(base_identity(params.base, paths.base))


def _dag_expert_matches(
    task: str, params: Params, paths: ProjectPaths, tasks_dir: Path, budget_scale: float = 1.0
) -> bool:
    """Whether the DAG's expert of `task` is the one this seed would train: same training settings (seed and scaled
    budget included), LoRA rank/alpha/dropout, and the same task data."""
    from mllmcl.continual.experts import STATS_FILE, expert_config, task_seed
    from mllmcl.model.training import training_fields

    folder = paths.expert(task)
    if not (folder / STATS_FILE).is_file() or not (folder / "adapter_config.json").is_file():
        return False
    if (Path(tasks_dir) / task).resolve() != paths.task_data(task).resolve():
        return False
    stats = json.loads((folder / STATS_FILE).read_text())
    adapter = json.loads((folder / "adapter_config.json").read_text())
    cfg = expert_config(params.expert, Path(tasks_dir) / task, budget_scale=budget_scale)
    cfg = cfg.model_copy(update={"seed": cfg.seed + task_seed(task)})
    return (
        stats.get("config") == json.loads(json.dumps(training_fields(cfg)))
        and adapter.get("r") == cfg.lora_r
        and adapter.get("lora_alpha") == cfg.lora_alpha
        and float(adapter.get("lora_dropout", 0.0)) == cfg.lora_dropout
    )


def seed_experts_folder(
    tasks: Sequence[str], params: Params, paths: ProjectPaths, tasks_dir: Path, budget_scale: float = 1.0
) -> Path:
    """Where one seed's experts of `tasks` live (trained or not): .cache/benchmark/experts/<settings>."""
    identity = {
        "expert": params.expert.model_dump(mode="json"),
        "base": _base_fingerprint(params, paths),
        "data": tasks_fingerprint(tasks, tasks_dir),  # a task's own budget lives in its meta.json
    }
    budgets = scaled_budgets(tasks, tasks_dir, budget_scale)
    if budgets:  # ...scaled with the benchmark's
        identity["scaled_budgets"] = budgets
    return paths.benchmark_work / "experts" / _digest(identity)


def seed_experts(
    tasks: Sequence[str],
    params: Params,
    paths: ProjectPaths,
    tasks_dir: Path,
    *,
    progress: bool = True,
    budget_scale: float = 1.0,
    only: Sequence[str] | None = None,
) -> Path:
    """A folder with one expert per task trained with `params` (one seed's settings): the DAG's own copied where it
    matches, the others trained from the base with train_expert, the pipeline's own function. Kept under
    .cache/benchmark/experts/<settings>, so a later run (or one that was killed) trains only what is missing.
    `only`: these tasks' experts and no others (a worker of benchmark_pool trains one)."""
    from mllmcl.continual.experts import STATS_FILE, train_expert

    folder = seed_experts_folder(tasks, params, paths, tasks_dir, budget_scale)
    for task in tasks if only is None else only:
        target = folder / task
        if (target / STATS_FILE).is_file():
            continue
        if _dag_expert_matches(task, params, paths, tasks_dir, budget_scale):
            partial = folder / f".{task}.{os.getpid()}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(paths.expert(task), partial)
            partial.rename(target)
            continue
        train_expert(
            task,
            params,
            base_dir=paths.base,
            data_dir=Path(tasks_dir) / task,
            out_dir=target,  # save_adapter writes it atomically
            checkpoint_dir=paths.checkpoints(f"benchmark-expert-{folder.name}-{task}"),
            progress=progress,
            budget_scale=budget_scale,
        )
    return folder


def _reorder_joint(result: dict, trained_on: list[str], order: list[str]) -> dict:
    """Joint training has no sequence: one run per seed serves every order, its final row put in that order."""
    index = [trained_on.index(t) for t in order]
    n = len(order)
    final = [result["matrix"][-1][i] for i in index]
    cells = [result["cells"][-1][i] for i in index]
    matrix = [[None] * n for _ in range(n - 1)] + [final]
    return {
        **result,
        "matrix": matrix,
        "cells": [[None] * n for _ in range(n - 1)] + [cells],
        **{k: v for k, v in metrics.summary(matrix).items() if k not in ("MFT", "MAA", "BWT")},
    }


def _isolated_in_order(rows: dict, tasks: list[str], order: list[str]) -> dict:
    """A zero-shot or oracle result scored in `tasks`' order, its columns put in `order` (every stage's row holds the
    same per-task figure: those models never change)."""
    from mllmcl.continual.baselines import frozen_rows

    index = [tasks.index(t) for t in order]
    return {
        **rows,
        **frozen_rows([rows["matrix"][-1][i] for i in index], [rows["cells"][-1][i] for i in index]),
    }


def _unit_identity(
    method: str, order: list[str], seed: int, settings: BenchmarkSettings, p: Params, fp: dict, budgets: dict | None
) -> dict:
    """Everything a unit's result depends on; a change to any of it runs the unit again."""
    identity = {
        "version": RESULTS_VERSION,
        "method": method,
        "order": sorted(order) if method == "joint" else list(order),
        "seed": seed,
        "expert": p.expert.model_dump(mode="json"),
        "test_limit": settings.test_limit,
        "evaluate": p.evaluate.model_dump(mode="json"),
        **fp,
    }
    if method in ("mr_lora", "ncm"):
        identity["router"] = p.router.model_dump(mode="json")
    if SHARED_ADAPTER_METHODS.get(method, (False, 0.0))[0]:
        identity["replay_per_task"] = settings.replay_per_task
    if budgets:  # scaled_budgets
        identity["scaled_budgets"] = budgets
    return identity


@dataclass(frozen=True)
class BenchmarkPlan:
    """What the run and its worker processes share: the tasks' folder, what kept results are keyed by, the orders
    and the budget scale."""

    settings: BenchmarkSettings
    params: Params
    paths: ProjectPaths
    tasks_dir: Path
    base: dict  # loading.base_identity, reported with the figures
    fp: dict
    orders: list
    scale: float
    units_dir: Path

    @classmethod
    def of(cls, settings: BenchmarkSettings, params: Params, paths: ProjectPaths) -> BenchmarkPlan:
        from mllmcl.continual.baselines import task_orders

        settings.check()
        tasks_dir = benchmark_tasks_dir(settings.tasks, params, paths)
        from mllmcl.model.loading import base_identity

        base = base_identity(params.base, paths.base)
        fp = {"data": tasks_fingerprint([*settings.tasks, params.router.base_suite], tasks_dir), "base": _digest(base)}
        return cls(
            settings,
            params,
            paths,
            tasks_dir,
            base,
            fp,
            task_orders(settings.tasks, settings.orders),
            budget_scale(settings, params),
            settings.units_dir or paths.benchmark_work / "units",
        )

    def seed_params(self, seed: int) -> Params:
        return seeded_params(self.params, seed, self.settings)

    def models(self, seed: int, *, progress: bool = True) -> _SeedModels:
        p = self.seed_params(seed)
        return _SeedModels(
            self.settings.tasks, p, self.paths, self.tasks_dir, progress=progress, budget_scale=self.scale
        )

    def is_kept(self, name: str, order, seed: int) -> bool:
        """Whether unit `name` ("bounds" or a method) of (seed, order) is kept already."""
        identity = unit_identity(name, order, seed, self.settings, self.seed_params(seed), self.fp, self.models(seed))
        return _unit_file(self.units_dir, name, identity).is_file()

    def measure(self, name: str, order, seed: int, *, progress: bool = False) -> None:
        """Measure and keep one unit (a worker's job); read back if another run kept it meanwhile."""
        p, models = self.seed_params(seed), self.models(seed, progress=progress)
        if name == "bounds":
            _bounds(self.settings, p, seed, self.fp, models, self.units_dir)
        else:
            _unit(name, order, seed, self.settings, p, models, self.fp, self.units_dir, None)


def run_benchmark(
    settings: BenchmarkSettings,
    params: Params,
    paths: ProjectPaths,
    *,
    progress: bool = True,
    on_stage: Callable[[str, list[str], int, list], None] | None = None,
    on_unit: Callable[[dict], None] | None = None,
    workers: int = 1,
    on_job: Callable[[dict], None] | None = None,
) -> dict:
    """Every method of `settings` on every (seed, order), each unit reused from settings.units_dir (default
    .cache/benchmark/units) when it was measured before with the same inputs. `workers` > 1: the experts, stage
    routers and units are trained in that many processes at once (benchmark_pool), `on_job` told of each. Returns {track, tasks, settings, runs: [{seed, tasks, methods}], methods (the
    first run's), aggregate (mean +- std over runs), final (per task), seconds}."""
    from mllmcl.continual.baselines import unmeasured_cells

    if workers < 1:
        raise UserError(f"benchmark: --workers {workers}: must be at least 1")
    t_start = time.perf_counter()
    plan = BenchmarkPlan.of(settings, params, paths)
    tasks_dir, fp, orders, scale, units_dir = plan.tasks_dir, plan.fp, plan.orders, plan.scale, plan.units_dir
    if workers > 1:  # every unit measured in worker processes first; the loop below then reads them back
        from mllmcl.continual.benchmark_pool import measure_in_workers

        measure_in_workers(plan, workers, on_job=on_job)
    runs = []
    for seed in range(settings.seeds):
        p = plan.seed_params(seed)
        models = plan.models(seed, progress=progress)
        isolated = (  # scored once per seed: neither the base nor a frozen expert depends on the order
            _bounds(settings, p, seed, fp, models, units_dir) if set(ISOLATED) & set(settings.methods) else {}
        )
        for order in orders:
            run: dict = {"seed": seed, "tasks": list(order), "methods": {}}
            for method in settings.methods:
                t0 = time.perf_counter()
                if method in ISOLATED:
                    rows = _isolated_in_order(isolated["result"][method], isolated["tasks"], list(order))
                    result, reused = {**rows, **metrics.summary(rows["matrix"])}, isolated["reused"]
                else:
                    result, reused = _unit(method, order, seed, settings, p, models, fp, units_dir, on_stage)
                missing = unmeasured_cells({"methods": {method: result}})
                if missing:  # a defect of this code, never of the data: refuse to report invented numbers
                    raise RuntimeError(f"accuracy cells without an evaluation behind them: {', '.join(missing)}")
                run["methods"][method] = result
                if on_unit:
                    on_unit(
                        {
                            "method": method,
                            "seed": seed,
                            "order": list(order),
                            "reused": reused,
                            "seconds": round(time.perf_counter() - t0, 1),
                            "MFN": result.get("MFN"),
                        }
                    )
            runs.append(run)
    return {
        "track": settings.track,
        "tasks": list(settings.tasks),
        "settings": {
            "base": plan.base,
            "seeds": settings.seeds,
            "orders": [list(o) for o in orders],
            "steps_per_task": settings.steps or params.expert.steps,
            "own_budgets": own_budgets(settings.tasks, tasks_dir, scale) if scale != 1.0 else {},
            "router_steps": settings.router_steps or params.router.steps,
            "replay_per_task": settings.replay_per_task,
            "test_limit": settings.test_limit,
            "methods": list(settings.methods),
        },
        "runs": runs,
        "methods": runs[0]["methods"],
        "aggregate": aggregate(runs),
        "final": final_by_task(runs),
        "claims": claims_json(runs),
        "seconds": round(time.perf_counter() - t_start, 1),
    }


# Units that read the seed's experts; every other method trains its own adapters from the base.
NEEDS_EXPERTS = ("mr_lora", "ncm")


class _SeedModels:
    """One seed's experts, trained (or copied from the DAG, seed_experts) the first time a unit needs them: a run whose
    units are all kept trains nothing, even where .cache/benchmark is gone, and a run of shared-adapter methods alone
    trains no expert."""

    def __init__(self, tasks, params: Params, paths: ProjectPaths, tasks_dir: Path, *, progress: bool, budget_scale):
        self.tasks, self.params, self.paths, self.tasks_dir = tasks, params, paths, tasks_dir
        self.progress, self.budget_scale = progress, budget_scale

    @functools.cached_property
    def paths_with_experts(self) -> _SeedPaths:
        seed_experts(
            self.tasks, self.params, self.paths, self.tasks_dir, progress=self.progress, budget_scale=self.budget_scale
        )
        return self.paths_untrained

    @property
    def paths_untrained(self) -> _SeedPaths:
        """The same paths without training anything: the experts' folder may still be empty."""
        experts_dir = seed_experts_folder(self.tasks, self.params, self.paths, self.tasks_dir, self.budget_scale)
        return _SeedPaths(root=self.paths.root, experts_dir=experts_dir, tasks_folder=self.tasks_dir)

    def paths_for(self, method: str) -> _SeedPaths:
        return self.paths_with_experts if method in NEEDS_EXPERTS else self.paths_untrained


def unit_identity(name: str, order, seed: int, settings: BenchmarkSettings, p: Params, fp: dict, models) -> dict:
    """The identity a unit is kept under: `name` a method, or "bounds" (one seed's zero-shot and oracle rows)."""
    if name == "bounds":
        budgets = scaled_budgets(settings.tasks, models.tasks_dir, models.budget_scale)
        return _unit_identity("bounds", sorted(settings.tasks), seed, settings, p, fp, budgets)
    budgets = scaled_budgets(order, models.tasks_dir, models.budget_scale, unscaled_too=name == "joint")
    return _unit_identity(name, list(order), seed, settings, p, fp, budgets)


def _unit_file(units_dir: Path, name: str, identity: dict) -> Path:
    return units_dir / f"{name}-{_digest(identity)}.json"


def _kept_unit(
    units_dir: Path, name: str, identity: dict, measure: Callable[[], tuple[list, dict]]
) -> tuple[dict, bool]:
    """A unit's {identity, tasks, result}: read back when kept under `identity`, else measure() -> (tasks, result), kept
    atomically. Returns (unit, read back)."""
    path = _unit_file(units_dir, name, identity)
    if path.is_file():
        return json.loads(path.read_text()), True
    tasks, result = measure()
    unit = {"identity": identity, "tasks": tasks, "result": result}
    _write_json(path, unit)
    return unit, False


def _bounds(settings: BenchmarkSettings, p: Params, seed: int, fp: dict, models: _SeedModels, units_dir: Path) -> dict:
    """The zero-shot and oracle rows of one seed, in settings.tasks' order: read back when kept, else scored (every
    expert and the base on the same test records) and kept. Returns {tasks, result: {method: rows}, reused}."""
    from mllmcl.continual.baselines import isolated_rows

    def measure():
        seed_paths = models.paths_with_experts
        rows = isolated_rows(
            settings.tasks,
            seed_paths.experts,
            params=p,
            base_dir=seed_paths.base,
            tasks_dir=seed_paths.tasks_dir,
            test_limit=settings.test_limit,
        )
        return list(settings.tasks), rows

    identity = unit_identity("bounds", settings.tasks, seed, settings, p, fp, models)
    unit, reused = _kept_unit(units_dir, "bounds", identity, measure)
    return {"tasks": unit["tasks"], "result": unit["result"], "reused": reused}


def _unit(method, order, seed, settings, p, models: _SeedModels, fp, units_dir: Path, on_stage) -> tuple[dict, bool]:
    """One method on one (seed, order): read back when measured before, else measured and kept."""
    from mllmcl.continual.baselines import compare

    def measure():
        trained_on = sorted(order) if method == "joint" else list(order)
        out = compare(
            trained_on,
            p,
            models.paths_for(method),
            methods=[method],
            replay_per_task=settings.replay_per_task,
            test_limit=settings.test_limit,
            progress=models.progress,
            on_stage=(lambda m, stage, row: on_stage(m, trained_on, stage, row)) if on_stage else None,
            budget_scale=models.budget_scale,
        )
        return trained_on, out["methods"][method]

    identity = unit_identity(method, order, seed, settings, p, fp, models)
    unit, reused = _kept_unit(units_dir, method, identity, measure)
    result, trained_on = unit["result"], unit["tasks"]
    return (_reorder_joint(result, trained_on, list(order)) if method == "joint" else result), reused


def aggregate(runs: Sequence[dict]) -> dict:
    """Mean and sample standard deviation of every reported figure (benchmark_methods.REPORT_KEYS) per method over runs
    (seeds x task orders); a figure a run does not define (None) is left out of its mean, and `n` says how many runs
    each figure rests on."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(m for run in runs for m in run["methods"]):
        out[method] = {}
        for key in REPORT_KEYS:
            values = [
                run["methods"][method][key] for run in runs if run["methods"].get(method, {}).get(key) is not None
            ]
            out[method][key] = {
                "mean": round(statistics.fmean(values), 4) if values else None,
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                "n": len(values),
            }
    return out


def final_by_task(runs: Sequence[dict]) -> dict:
    """Per method and task, its accuracy after the last stage (mean, std over runs): the per-task bars."""
    out: dict[str, dict] = {}
    for run in runs:
        for method, result in run["methods"].items():
            for task, value in zip(run["tasks"], result["matrix"][-1]):
                if value is not None:
                    out.setdefault(method, {}).setdefault(task, []).append(value)
    return {
        method: {
            task: {
                "mean": round(statistics.fmean(v), 4),
                "std": round(statistics.stdev(v), 4) if len(v) > 1 else None,
                "n": len(v),
            }
            for task, v in tasks.items()
        }
        for method, tasks in out.items()
    }
