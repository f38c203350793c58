"""`mllmcl benchmark`: MR-LoRA against the continual-learning baselines on the workspace's base and tasks."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub, common) -> None:
    """Add `mllmcl benchmark`; it trains LoRA-FT on every task itself, so a run takes about as long as training the
    experts did."""
    p = sub.add_parser(
        "benchmark",
        parents=[common],
        help="compare MR-LoRA with sequential LoRA fine-tuning and the bounds",
        description="Needs a finished pipeline run (models/base, models/experts, metrics/eval.json). "
        "Trains ONE shared LoRA task after task (LoRA-FT, the forgetting baseline) with the experts' "
        "settings and scores it after every stage; puts it beside the zero-shot base, MR-LoRA (routed, "
        "from metrics/eval.json) and the experts with oracle routing. Writes "
        "reports/benchmark/baselines.json and .png.",
    )
    p.add_argument("--tasks", nargs="*", default=None, help="task order (default: params.yaml tasks)")
    p.add_argument("--steps", type=int, default=None, help="LoRA-FT steps per task (default: expert.steps)")
    p.add_argument("--out", type=Path, default=None, help="output stem (default: reports/benchmark/baselines)")
    p.set_defaults(handler=_benchmark)


def _benchmark(args) -> int:
    from mllmcl.continual.baselines import compare, figure
    from mllmcl.entry import load_params
    from mllmcl.errors import UserError
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths
    from mllmcl.plots import png_bytes

    paths = ProjectPaths(args.root)
    params = load_params(args)
    set_threads(params.compute.threads)
    order = args.tasks or params.tasks
    for task in order:
        if not (paths.expert(task) / "train_stats.json").exists():
            raise UserError(f"{paths.expert(task)}: no trained expert (run `dvc repro` first)")

    def show(stage: int, row: list) -> None:
        cells = "  ".join(f"{t} {v:.3f}" for t, v in zip(order, row) if v is not None)
        print(f"LoRA-FT after {order[stage]}: {cells}", flush=True)

    result = compare(order, params, paths, steps=args.steps, on_stage=show)
    stem = args.out or paths.benchmark_reports / "baselines"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".png").write_bytes(png_bytes(figure(result)))
    print(f"\n{'method':18s} {'MFN':>6s} {'MFT':>6s} {'MAA':>6s} {'BWT':>7s}")
    for name, m in result["methods"].items():
        bwt = "-" if m["BWT"] is None else f"{m['BWT']:+.3f}"
        print(f"{name:18s} {m['MFN']:6.3f} {m['MFT']:6.3f} {m['MAA']:6.3f} {bwt:>7s}")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0
