"""`mllmcl benchmark`: MR-LoRA against the continual-learning baselines on the workspace's base and tasks."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="compare MR-LoRA with sequential LoRA fine-tuning and the bounds",
                       description="Needs a finished pipeline run (models/base, models/experts, metrics/eval.json). "
                       "Trains ONE shared LoRA task after task (LoRA-FT, the forgetting baseline) with the experts' "
                       "settings and scores it after every stage; puts it beside the zero-shot base, MR-LoRA (routed, "
                       "from metrics/eval.json) and the experts with oracle routing. Writes "
                       "reports/benchmark/baselines.json and .png.")
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    p.add_argument("--tasks", nargs="*", default=None, help="task order (default: params.yaml tasks)")
    p.add_argument("--steps", type=int, default=None, help="LoRA-FT steps per task (default: expert.steps)")
    p.add_argument("--out", type=Path, default=None, help="output stem (default: reports/benchmark/baselines)")
    p.set_defaults(handler=_benchmark)


def _benchmark(args) -> int:
    from mllmcl.baselines import compare, figure
    from mllmcl.config import load_params, tasks
    from mllmcl.gate_report import png_bytes

    root = args.root
    params = load_params(root / args.params)
    order = args.tasks or tasks(params)
    for task in order:
        if not (root / "models/experts" / task / "train_stats.json").exists():
            from mllmcl.errors import UserError

            raise UserError(f"{root / 'models/experts' / task}: no trained expert (run `dvc repro` first)")

    def show(stage: int, row: list) -> None:
        cells = "  ".join(f"{t} {v:.3f}" for t, v in zip(order, row) if v is not None)
        print(f"LoRA-FT after {order[stage]}: {cells}", flush=True)

    result = compare(order, params, root, steps=args.steps, on_stage=show)
    stem = args.out or root / "reports/benchmark/baselines"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".png").write_bytes(png_bytes(figure(result)))
    print(f"\n{'method':18s} {'MFN':>6s} {'MFT':>6s} {'MAA':>6s} {'BWT':>7s}")
    for name, m in result["methods"].items():
        bwt = "-" if m["BWT"] is None else f"{m['BWT']:+.3f}"
        print(f"{name:18s} {m['MFN']:6.3f} {m['MFT']:6.3f} {m['MAA']:6.3f} {bwt:>7s}")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0
