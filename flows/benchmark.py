"""The `benchmark` Prefect flow: `mllmcl benchmark` as a flow run, each unit (method x seed x task order) logged as it
finishes and the summary published as a Markdown artifact. A crashed or cancelled run resumes from the units it had
finished (.cache/benchmark/units) when it is run again with the same parameters.

    python -m flows.benchmark --root . --track domain --quick
    python -m flows.serve      # also serves it as the on-demand `benchmark` deployment
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from mllmcl.continual.benchmark_methods import DEFAULT_REPLAY_PER_TASK, METHODS


@flow(name="benchmark", log_prints=True)
def benchmark(
    root: str = ".",
    params_file: str = "params.yaml",
    track: str | None = None,
    tasks: list[str] | None = None,
    seeds: int | None = None,
    orders: int | None = None,
    quick: bool = False,
    steps: int | None = None,
    router_steps: int | None = None,
    methods: list[str] | None = None,
    replay_per_task: int = DEFAULT_REPLAY_PER_TASK,
    units: str | None = None,
    workers: int = 1,
) -> dict:
    """Run the benchmark and write reports/benchmark/<track>.{json,md,html,png}; returns the aggregate per method."""
    from mllmcl.config import load_params
    from mllmcl.continual.benchmark_report import render_markdown, write_reports
    from mllmcl.continual.benchmark_run import run_benchmark, settings_for
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths

    logger = get_run_logger()
    project = Path(root).resolve()
    paths = ProjectPaths(project)
    params = load_params(Path(params_file) if Path(params_file).is_absolute() else project / params_file)
    set_threads(params.compute.threads)
    settings = settings_for(
        params,
        track=track,
        tasks=tasks,
        seeds=seeds,
        orders=orders,
        quick=quick,
        steps=steps,
        router_steps=router_steps,
        methods=methods or METHODS,
        replay_per_task=replay_per_task,
        units_dir=(project / units) if units else None,
    )

    def log_unit(unit: dict) -> None:
        mfn = "-" if unit["MFN"] is None else f"{unit['MFN']:.3f}"
        how = "reused" if unit["reused"] else f"{unit['seconds']:.0f} s"
        logger.info("seed %d, %s: %s MFN %s (%s)", unit["seed"], " -> ".join(unit["order"]), unit["method"], mfn, how)

    def log_job(job: dict) -> None:
        logger.info("[%d/%d] %s (%.0f s)", job["done"], job["of"], job["job"], job["seconds"])

    result = run_benchmark(settings, params, paths, progress=False, on_unit=log_unit, workers=workers, on_job=log_job)
    written = write_reports(result, paths.benchmark_reports / result["track"])
    create_markdown_artifact(
        key=f"benchmark-{result['track']}",
        markdown=render_markdown(result),
        description=f"mllmcl benchmark, {result['track']} track",
    )
    logger.info("wrote %s", ", ".join(str(p) for p in written))
    return {"track": result["track"], "aggregate": result["aggregate"], "seconds": result["seconds"]}


def main(args) -> int:
    """Run the flow once from the command line (exit 0 when the reports were written)."""
    benchmark(
        root=str(args.root),
        params_file=str(args.params),
        track=args.track,
        seeds=args.seeds,
        orders=args.orders,
        quick=args.quick,
        units=str(args.units) if args.units else None,
        workers=args.workers,
    )
    return 0


def parser():
    """Options of `python -m flows.benchmark`: --root/--params, the track, seeds, orders, --quick, --units, --workers."""
    from mllmcl.continual.benchmark_methods import TRACKS
    from mllmcl.entry import add_common_options

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(p)
    p.add_argument("--track", choices=sorted(TRACKS), default=None, help="default: the workspace's tasks")
    p.add_argument("--seeds", type=int, default=None, help="training seeds (default: 1)")
    p.add_argument("--orders", type=int, default=None, help="task orders (default: 1)")
    p.add_argument("--quick", action="store_true", help="1 seed, 1 order, a reduced budget")
    p.add_argument("--units", default=None, metavar="DIR", help="where finished units are kept (see mllmcl benchmark)")
    p.add_argument("--workers", type=int, default=1, help="processes training at once (see mllmcl benchmark)")
    return p


if __name__ == "__main__":
    from mllmcl.entry import main_of

    main_of(main, parser())
