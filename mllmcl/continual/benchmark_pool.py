"""The benchmark's training spread over worker processes (`mllmcl benchmark --workers N`). On a CPU a small model's
step is only 1.6x faster on two threads than on one (reports/benchmark/threads.json: 0.087 s against 0.055), so two
one-thread processes, each training its own adapter, do up to 2 / 1.6 = 1.25x the work of one two-thread process in
the same time; the longest job and the wait between the waves decide how much of that a run gets (README). Every job leaves its result where the sequential run looks for it (a seed's expert, a stage
router, a kept unit), so run_benchmark afterwards only reads back, and a killed pool resumes like a killed run.

Jobs come in two waves: first everything that needs nothing else (each expert, each stage router, each shared-adapter
and joint unit), then the units that evaluate experts and routers (the bounds, MR-LoRA, nearest-mean routing), each
seed's started as soon as its experts and routers are done. Within a wave the longest go first."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from mllmcl.continual.benchmark_methods import SHARED_ADAPTER_METHODS
from mllmcl.continual.benchmark_run import ISOLATED, NEEDS_EXPERTS, BenchmarkPlan, own_budgets

# A job's cost is counted in optimizer steps; scoring one task's test records costs about as much as this many steps
# (ability track, quick run: a shared method's ten stage-task evaluations took ~65 s beside ~200 s of 751 steps).
EVALUATION_COST = 25


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
        if set(ISOLATED) & set(settings.methods) and not plan.is_kept("bounds", tasks, seed):
            then[("bounds", seed)] = Job("unit", seed, tuple(tasks), "bounds", EVALUATION_COST * len(tasks))
            needs_experts = True
        for order in plan.orders:
            for method in settings.methods:
                if method in ISOLATED or plan.is_kept(method, order, seed):
                    continue
                if method in NEEDS_EXPERTS:
                    needs_experts = True
                    stages = range(1, len(order) + 1) if method == "mr_lora" else [len(order)]
                    for t in stages:
                        learned = tuple(order[:t])
                        first.setdefault(("router", seed, learned), Job("router", seed, learned, cost=router_steps))
                    then[(method, seed, tuple(order))] = Job(
                        "unit", seed, tuple(order), method, EVALUATION_COST * len(order)
                    )
                else:  # joint has no order: one unit per seed serves every order
                    key = (method, seed, tuple(sorted(order)) if method == "joint" else tuple(order))
                    cost = sum(task_steps.values()) + EVALUATION_COST * (
                        len(order) * (len(order) + 1) // 2 if method in SHARED_ADAPTER_METHODS else len(order)
                    )
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


def _schedule(waves: tuple[list[Job], list[Job]]) -> tuple[list[Job], dict[int, list[Job]]]:
    """(jobs ready now, in the order to start them; each seed's jobs waiting for its experts and routers). The experts
    and routers start first, so the short evaluations waiting on them can run beside the long shared-adapter units
    instead of after all of them."""
    first, then = waves
    gating = [j for j in first if j.kind in ("expert", "router")]
    ready = gating + [j for j in first if j.kind == "unit"]
    waiting: dict[int, list[Job]] = {}
    for job in then:
        waiting.setdefault(job.seed, []).append(job)
    return ready, waiting


def measure_in_workers(plan: BenchmarkPlan, workers: int, *, on_job: Callable[[dict], None] | None = None) -> None:
    """Run every job of plan_jobs in `workers` processes (spawned: no state shared with the caller), each with its share
    of compute.threads (at least one), `on_job` told as each finishes. A seed's evaluations start, ahead of the jobs
    still queued, once its experts and routers are done. The first job that fails, or Ctrl-C, is raised once the
    running jobs have stopped; no other job starts, and every finished one is kept."""
    from mllmcl.model.compute import resolve_threads

    threads = max(1, resolve_threads(plan.params.compute.threads) // workers)
    waves = plan_jobs(plan)
    ready, waiting = _schedule(waves)
    gates = {seed: sum(1 for j in ready if j.seed == seed and j.kind != "unit") for seed in waiting}
    total, done = sum(len(w) for w in waves), 0
    running: dict = {}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        while ready or running or any(waiting.values()):
            for seed in [s for s, n in gates.items() if n == 0 and waiting.get(s)]:
                ready[:0] = waiting.pop(seed)
            while ready and len(running) < workers:
                job = ready.pop(0)
                running[pool.submit(_work, plan, job, threads)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                seconds = future.result()  # a failed job raises here
                if job.kind != "unit" and job.seed in gates:
                    gates[job.seed] -= 1
                done += 1
                if on_job:
                    on_job({"job": job.describe(), "seconds": seconds, "done": done, "of": total})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
