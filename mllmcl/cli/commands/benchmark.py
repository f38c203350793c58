"""`mllmcl benchmark`: MR-LoRA against the continual-learning baselines on the workspace's base and tasks."""

from __future__ import annotations

import json
from pathlib import Path

from mllmcl.continual.benchmark_methods import DEFAULT_REPLAY_PER_TASK, METHODS, SUMMARY_KEYS


def register(sub, common) -> None:
    """Add `mllmcl benchmark`; it trains LoRA-FT on every task itself, so a run takes about as long as training the
    experts did."""
    p = sub.add_parser(
        "benchmark",
        parents=[common],
        help="compare MR-LoRA with LoRA-FT, replay, mSGM, joint training and the bounds",
        description="Needs a finished pipeline run (models/base, models/experts, models/router). "
        "Measures MR-LoRA stage by stage (at stage t a router trained as the pipeline trains it, on the replay "
        "of tasks 1..t, routes among experts 1..t; the DAG's router serves the last stage), trains ONE shared "
        "LoRA task after task with the experts' settings and scores it after every stage and on the text-only "
        "suite: plain (LoRA-FT, the forgetting baseline), with a replay memory of --replay-per-task records of "
        "every earlier task, and as mSGM (soft targets, label smoothing 0.01) with and without that replay; "
        "trains one joint LoRA on all tasks at once (the upper bound; its final row only), and puts them beside "
        "the zero-shot base, the experts with oracle routing and the experts routed by the nearest mean of the base's "
        "own image embeddings (ncm, no router training). "
        "Every cell of every accuracy matrix names the evaluation behind it. Writes "
        "reports/benchmark/baselines.json, .html (one self-contained page) and .png; routers of earlier stages are kept in .cache/benchmark, "
        "so a second run (or one that was killed) reuses them.",
    )
    p.add_argument("--tasks", nargs="*", default=None, help="task order (default: params.yaml tasks)")
    p.add_argument("--steps", type=int, default=None, help="shared-adapter steps per task (default: expert.steps)")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"methods to run (default: all of {', '.join(METHODS)})",
    )
    p.add_argument(
        "--orders",
        type=int,
        default=1,
        help="task orders to run: the given one, then seeded permutations; figures become mean +- std over them",
    )
    p.add_argument(
        "--replay-per-task",
        type=int,
        default=DEFAULT_REPLAY_PER_TASK,
        help="training records of every earlier task the replay methods keep (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=None, help="output stem (default: reports/benchmark/baselines)")
    p.set_defaults(handler=_benchmark)


def _benchmark(args) -> int:
    from mllmcl.continual.baselines import aggregate, compare, figure, task_orders, unmeasured_cells
    from mllmcl.continual.benchmark_report import format_figure, render_html
    from mllmcl.entry import load_params
    from mllmcl.errors import UserError
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths
    from mllmcl.plots import png_bytes

    paths = ProjectPaths(args.root)
    params = load_params(args)
    set_threads(params.compute.threads)
    order = args.tasks or params.tasks
    if args.orders < 1:
        raise UserError(f"--orders {args.orders}: run at least 1 task order")
    for task in order:
        if not (paths.expert(task) / "train_stats.json").exists():
            raise UserError(f"{paths.expert(task)}: no trained expert (run `dvc repro` first)")
        if not (paths.tasks_dir / task / "test.jsonl").exists():
            raise UserError(f"{paths.tasks_dir / task}: no ingested test split (run `dvc repro` first)")

    def show(method: str, stage: int, row: list) -> None:
        cells = "  ".join(f"{t} {v:.3f}" for t, v in zip(current, row) if v is not None)
        print(f"{method} after {current[stage]}: {cells}", flush=True)

    runs = []
    for current in task_orders(order, args.orders):
        print(f"\norder: {' -> '.join(current)}", flush=True)
        run = compare(
            current,
            params,
            paths,
            steps=args.steps,
            methods=args.methods,
            replay_per_task=args.replay_per_task,
            on_stage=show,
        )
        missing = unmeasured_cells(run)
        if missing:  # a defect of this code, never of the user's data: refuse to write a report with invented numbers
            raise RuntimeError(f"accuracy cells without an evaluation behind them: {', '.join(missing)}")
        runs.append(run)
    result = {**runs[0], "runs": runs, "aggregate": aggregate(runs)}
    stem = args.out or paths.benchmark_reports / "baselines"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".png").write_bytes(png_bytes(figure(result)))
    stem.with_suffix(".html").write_text(render_html(result), encoding="utf-8")
    header = " ".join(f"{k:>13s}" for k in SUMMARY_KEYS)
    print(f"\n{'method':18s} {header}   ({len(runs)} order(s))")
    for name, figures in result["aggregate"].items():
        print(f"{name:18s} " + " ".join(format_figure(figures, key).rjust(13) for key in SUMMARY_KEYS))
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.html')} and {stem.with_suffix('.png')}")
    return 0
