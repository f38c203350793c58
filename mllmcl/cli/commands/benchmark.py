"""`mllmcl benchmark`: MR-LoRA against the continual-learning baselines on the workspace's base and tasks."""

from __future__ import annotations

from pathlib import Path

from mllmcl.continual.benchmark_methods import DEFAULT_REPLAY_PER_TASK, METHODS, QUICK, QUICK_BY_TRACK, TRACKS


def register(sub, common) -> None:
    """Add `mllmcl benchmark`; it trains every shared-adapter method on every task itself, so a full run takes hours on
    a CPU (--quick: minutes)."""
    p = sub.add_parser(
        "benchmark",
        parents=[common],
        help="compare MR-LoRA with LoRA-FT, replay, mSGM, joint training and the bounds over seeds and task orders",
        description="Needs the base (models/base, from `dvc repro` or `mllmcl run`). For each seed and task order, "
        "measures every method stage by stage with the budget of one expert per task: MR-LoRA (at stage t a router "
        "trained as the pipeline trains it, on the replay of tasks 1..t, routes among experts 1..t), ONE shared LoRA "
        "trained task after task (LoRA-FT), with a replay memory (--replay-per-task records of every earlier task), "
        "mSGM (soft targets, label smoothing 0.01) with and without rehearsal, one joint LoRA on all tasks (the upper "
        "bound; its final row only), the zero-shot base, the experts with oracle routing and the experts routed by the "
        "nearest mean of the base's image embeddings (ncm, no router training). Experts are trained per seed; the "
        "DAG's own are reused where the settings match. Every cell of every accuracy matrix names the evaluation "
        "behind it. Writes reports/benchmark/<track>.json, .md, .html (one self-contained page) and .png. Resumable: "
        "each method's run on a (seed, order) is kept in .cache/benchmark/units, so a killed run continues where it "
        "stopped and more seeds or orders later train only what is new.",
    )
    p.add_argument(
        "--track",
        choices=sorted(TRACKS),
        default=None,
        help="the embedded benchmark's domain (rs med ad sci fin) or ability (ocr math count gui) track; "
        "default: the workspace's params.yaml tasks",
    )
    p.add_argument("--tasks", nargs="*", default=None, help="task order (default: the track's, or params.yaml tasks)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds 0..N-1 (default: 1)")
    p.add_argument(
        "--orders",
        type=int,
        default=None,
        help="task orders: the given one, then seeded permutations (default: 1); figures are mean +- std over "
        "seeds x orders",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"1 seed, 1 order, {QUICK['steps']} steps per task, router {QUICK['router_steps']} steps, the first "
        f"{QUICK['test_limit']} test records per task (ability track: {QUICK_BY_TRACK['ability']['steps']} and "
        f"{QUICK_BY_TRACK['ability']['router_steps']}): from a cold cache on 2 CPU cores 34 min (domain) and 46 min "
        "(ability) on a day 2.7x slower than usual, and the ability track 34 min with --workers 2 on another day; README",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per task for experts and shared adapters alike; a task with its own budget (its spec's "
        "`expert: {steps}`) gets it scaled by the same ratio to expert.steps",
    )
    p.add_argument("--router-steps", type=int, default=None, help="router steps (default: router.steps)")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"methods to run (default: all of {', '.join(METHODS)})",
    )
    p.add_argument(
        "--replay-per-task",
        type=int,
        default=DEFAULT_REPLAY_PER_TASK,
        help="training records of every earlier task the replay methods keep (default: %(default)s)",
    )
    p.add_argument(
        "--units",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each finished unit (a method on one seed and order, or one seed's bounds) here, default "
        ".cache/benchmark/units; a folder under version control lets a grid too long for one sitting grow run by run "
        "on any machine: kept units are read back and their experts are not trained again",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="train experts, stage routers and units in this many processes at once, compute.threads shared among "
        "them; the figures are the same (default: %(default)s; on 2 cores 2 buys about 1.1x, README)",
    )
    p.add_argument("--out", type=Path, default=None, help="output stem (default: reports/benchmark/<track>)")
    p.set_defaults(handler=_benchmark)


def _benchmark(args) -> int:
    from mllmcl.continual.benchmark_report import render_markdown, write_reports
    from mllmcl.continual.benchmark_run import run_benchmark, settings_for
    from mllmcl.entry import load_params
    from mllmcl.errors import UserError
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths

    paths = ProjectPaths(args.root)
    params = load_params(args)
    set_threads(params.compute.threads)
    if not (paths.base / "config.json").exists() and params.base.build != "none":
        raise UserError(f"{paths.base}: no base model (run `dvc repro` or `mllmcl run` first)")
    settings = settings_for(
        params,
        track=args.track,
        tasks=args.tasks,
        seeds=args.seeds,
        orders=args.orders,
        quick=args.quick,
        steps=args.steps,
        router_steps=args.router_steps,
        methods=args.methods,
        replay_per_task=args.replay_per_task,
        units_dir=args.units,
    )

    def show_stage(method: str, order: list, stage: int, row: list) -> None:
        cells = "  ".join(f"{t} {v:.3f}" for t, v in zip(order, row) if v is not None)
        print(f"{method} after {order[stage]}: {cells}", flush=True)

    def show_unit(unit: dict) -> None:
        how = "reused" if unit["reused"] else f"{unit['seconds']:.0f} s"
        mfn = "-" if unit["MFN"] is None else f"{unit['MFN']:.3f}"
        print(f"[seed {unit['seed']} | {' -> '.join(unit['order'])}] {unit['method']}: MFN {mfn} ({how})", flush=True)

    def show_job(job: dict) -> None:
        print(f"[{job['done']}/{job['of']}] {job['job']} ({job['seconds']:.0f} s)", flush=True)

    result = run_benchmark(
        settings, params, paths, on_stage=show_stage, on_unit=show_unit, workers=args.workers, on_job=show_job
    )
    stem = args.out or paths.benchmark_reports / result["track"]
    written = write_reports(result, stem)
    print("\n" + render_markdown(result))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
