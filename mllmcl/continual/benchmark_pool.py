"""The benchmark's training spread over worker processes (`mllmcl benchmark --workers N`). On a CPU a small model's
step gains little from a second thread (reports/benchmark/threads.json: 0.087 s at one thread, 0.055 at two), so two
one-thread processes, each training its own adapter, get through a benchmark sooner than one two-thread process
training them in turn. Every job leaves its result where the sequential run looks for it (a seed's expert, a stage
router, a kept unit), so run_benchmark afterwards only reads back, and a killed pool resumes like a killed run.

Jobs come in two waves: first everything that needs nothing else (each expert, each stage router, each shared-adapter
and joint unit), then the units that evaluate experts and routers (the bounds, MR-LoRA, nearest-mean routing). Within
a wave the longest go first, so the last job to finish is a short one."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass

from mllmcl.continual.benchmark_methods import SHARED_ADAPTER_METHODS
from mllmcl.continual.benchmark_run import NEEDS_EXPERTS, BenchmarkPlan, own_budgets


@dataclass(frozen=True)
class Job:
    """One piece of work: an expert ("expert", tasks = (task,)), a stage router ("router", tasks = what it has
    learned), or a unit (its method or "bounds", tasks = the order)."""

    kind: str
    seed: int
    tasks: tuple[str, ...]
    name: str = ""
    cost: float = 0.0  # optimizer steps, to start the longest first

    def describe(self) -> str:
        what = {"expert": f"expert {self.tasks[0]}", "router": f"router over {' '.join(self.tasks)}"}
        return f"seed {self.seed}: " + what.get(self.kind, f"{self.name} on {' -> '.join(self.tasks)}")


def plan_jobs(plan: BenchmarkPlan) -> tuple[list[Job], list[Job]]:
    """(first wave, second wave), each longest first; units kept already are left out, and with them the experts and
    routers only they needed."""
    settings, tasks = plan.settings, plan.settings.tasks
    steps = settings.steps or plan.params.expert.steps
    task_steps = {t: steps for t in tasks} | own_budgets(tasks, plan.tasks_dir, plan.scale)
    router_steps = settings.router_steps or plan.params.router.steps
    first: dict[tuple, Job] = {}
    then: dict[tuple, Job] = {}
    for seed in range(settings.seeds):
        needs_experts = False
        if {"zero_shot_base", "oracle_experts"} & set(settings.methods) and not plan.is_kept("bounds", tasks, seed):
            then[("bounds", seed)] = Job("unit", seed, tuple(tasks), "bounds", sum(task_steps.values()) / 10)
            needs_experts = True
        for order in plan.orders:
            for method in settings.methods:
                if method in ("zero_shot_base", "oracle_experts") or plan.is_kept(method, order, seed):
                    continue
                if method in NEEDS_EXPERTS:
                    needs_experts = True
                    stages = range(1, len(order) + 1) if method == "mr_lora" else [len(order)]
                    for t in stages:
                        learned = tuple(order[:t])
                        first.setdefault(("router", seed, learned), Job("router", seed, learned, cost=router_steps))
                    then[(method, seed, tuple(order))] = Job("unit", seed, tuple(order), method, len(order) * 10)
                else:  # joint has no order: one unit per seed serves every order
                    key = (method, seed, tuple(sorted(order)) if method == "joint" else tuple(order))
                    evaluated_each_stage = method in SHARED_ADAPTER_METHODS  # joint is evaluated once
                    cost = sum(task_steps.values()) * (1.5 if evaluated_each_stage else 1.0)
                    first.setdefault(key, Job("unit", seed, tuple(order), method, cost))
        if needs_experts:
            for task in tasks:
                first[("expert", seed, task)] = Job("expert", seed, (task,), cost=task_steps[task])
    by_cost = lambda jobs: sorted(jobs, key=lambda j: -j.cost)  # noqa: E731
    return by_cost(first.values()), by_cost(then.values())


def _work(plan: BenchmarkPlan, job: Job, threads: int) -> float:
    """One job in a worker process, at `threads` torch threads; returns its seconds."""
    from mllmcl.continual.baselines import stage_router
    from mllmcl.continual.benchmark_run import seed_experts
    from mllmcl.model.compute import set_threads

    set_threads(threads)
    t0 = time.perf_counter()
    p = plan.seed_params(job.seed)
    if job.kind == "expert":
        seed_experts(
            plan.settings.tasks, p, plan.paths, plan.tasks_dir, progress=False, budget_scale=plan.scale, only=job.tasks
        )
    elif job.kind == "router":
        stage_router(list(job.tasks), p, plan.models(job.seed).paths_untrained, progress=False)
    else:
        plan.measure(job.name, list(job.tasks), job.seed)
    return round(time.perf_counter() - t0, 1)


def measure_in_workers(plan: BenchmarkPlan, workers: int, *, on_job: Callable[[dict], None] | None = None) -> None:
    """Run every job of plan_jobs in `workers` processes (spawned: no state shared with the caller), each with its share
    of compute.threads (at least one). The first job that fails is raised once the jobs already running have finished
    (they are kept, like every finished job); no other job starts."""
    from mllmcl.model.compute import resolve_threads

    threads = max(1, resolve_threads(plan.params.compute.threads) // workers)
    waves = plan_jobs(plan)
    total, done = sum(len(w) for w in waves), 0
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for wave in waves:
            pending = {pool.submit(_work, plan, job, threads): job for job in wave}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    job = pending.pop(future)
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()
                    done += 1
                    if on_job:
                        on_job({"job": job.describe(), "seconds": future.result(), "done": done, "of": total})
