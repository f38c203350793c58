"""Where a router's mistakes come from: trains one router with `fit_router` (train_router's, before the open set),
routes held-out test requests of every task plus text-only ones, and splits the expert requests into right / wrong letters above and below
routing.min_confidence, printing each wrong one. Tells an under-trained router (confident wrong letters) from a
threshold problem (right letters below it).

    python scripts/router_errors.py --root . --tasks rs med ad sci fin --steps 600
    python scripts/router_errors.py --root . --tasks rs med ad sci fin --steps 600 --question-swaps 0
    python scripts/router_errors.py --root . --tasks-dir .cache/benchmark/tasks --tasks ocr math count gui --steps 450
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--tasks", nargs="+", required=True, help="the router's pool, in learned order")
    p.add_argument(
        "--tasks-dir",
        type=Path,
        default=None,
        help="where the tasks are (default: the root's data/tasks; the ability track's: .cache/benchmark/tasks)",
    )
    p.add_argument("--steps", type=int, default=None, help="router steps (default: router.steps)")
    p.add_argument("--lr", type=float, default=None, help="router learning rate (default: router.lr)")
    p.add_argument("--question-swaps", type=float, default=None, help="default: router.question_swaps")
    p.add_argument("--per-task", type=int, default=100, help="held-out requests per task and text-only")
    p.add_argument("--out", type=Path, default=None, help="also write the counts as JSON here")
    args = p.parse_args()

    from mllmcl.config import load_params
    from mllmcl.continual import router as R
    from mllmcl.model.compute import set_threads
    from mllmcl.paths import ProjectPaths

    paths = ProjectPaths(args.root)
    tasks_dir = args.tasks_dir or paths.tasks_dir
    params = load_params(paths.params)
    set_threads(params.compute.threads)
    given = {"steps": args.steps, "lr": args.lr, "question_swaps": args.question_swaps}
    cfg = params.router.model_copy(update={"checkpoint_every": 0, **{k: v for k, v in given.items() if v is not None}})
    t0 = time.perf_counter()
    router, stats = R.fit_router(
        args.tasks, params.model_copy(update={"router": cfg}), base_dir=paths.base, tasks_dir=tasks_dir
    )
    seconds = round(time.perf_counter() - t0, 1)
    router.min_confidence = 0.0  # every letter read, its confidence judged below
    held = R.held_out_set(args.tasks, tasks_dir, cfg, args.per_task)
    routes = router.route([R.labelled_request(label, rec, tasks_dir) for label, rec in held])
    counts: collections.Counter = collections.Counter()
    for (label, rec), route in zip(held, routes):
        if label == R.BASE:
            counts["text_only_to_base" if route.task == R.BASE else "text_only_to_expert"] += 1
            continue
        sure = "sure" if route.confidence >= params.routing.min_confidence else "unsure"
        kind = "no_letter" if route.letter is None else ("right" if route.task == label else "wrong")
        counts[f"{kind}_{sure}" if route.letter else kind] += 1
        if kind == "wrong":
            print(f"  {label} -> {route.task} ({route.confidence:.2f}): {rec['question']}")
    n = sum(v for k, v in counts.items() if not k.startswith("text_only"))
    result = {
        "tasks": args.tasks,
        "router": {k: getattr(cfg, k) for k in ("steps", "lr", "question_swaps")},
        "min_confidence": params.routing.min_confidence,
        "train_seconds": seconds,
        "final_loss": stats.final_loss,
        "counts": dict(counts),
        "accuracy": round(counts["right_sure"] / max(1, n), 4),
        "accuracy_without_threshold": round((counts["right_sure"] + counts["right_unsure"]) / max(1, n), 4),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
