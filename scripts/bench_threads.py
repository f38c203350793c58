"""Seconds per expert training step with `compute.threads` 1, auto and 2, on an idle machine and beside a busy process
(one core spinning): whether a busy machine slows training proportionally or, with OpenMP oversubscribed, tenfold.
Each setting runs in a fresh process (torch fixes its thread pool once); printed and written to
reports/benchmark/threads.json.

    python scripts/bench_threads.py --root . --task rs --steps 40
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ("1", "auto", "2")


def worker(root: Path, task: str, threads: str, steps: int, warmup: int) -> dict:
    """One training run of `warmup + steps` expert steps; the warm-up steps are not timed."""
    from mllmcl.config import load_params
    from mllmcl.data.records import read_records
    from mllmcl.model.adapters import lora_config, new_adapter
    from mllmcl.model.batching import encode_records
    from mllmcl.model.compute import set_threads
    from mllmcl.model.loading import Prompting, load_base, resolve_base
    from mllmcl.model.training import train
    from mllmcl.paths import ProjectPaths

    paths = ProjectPaths(root)
    params = load_params(paths.params)
    chosen = set_threads(threads)
    model, processor = load_base(resolve_base(params.base, paths.base))
    prompting = Prompting.for_model(model, processor)
    folder = paths.task_data(task)
    examples = encode_records(prompting, read_records(folder / "train.jsonl")[:400], folder, with_answers=True)
    peft = new_adapter(model, lora_config(params.expert, model, role="expert"), seed=0)
    stamps: list[float] = []
    cfg = params.expert.model_copy(update={"steps": warmup + steps, "checkpoint_every": 0})
    train(
        peft,
        examples,
        cfg,
        pad_id=prompting.tokenizer.pad_token_id,
        progress=False,
        on_step=lambda step, loss: stamps.append(time.perf_counter()),
    )
    timed = stamps[warmup - 1 :]
    return {"threads": threads, "chosen": chosen, "seconds_per_step": round((timed[-1] - timed[0]) / steps, 4)}


def _run(args, threads: str, busy: bool) -> dict:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if spinner:
            time.sleep(1.0)  # let the load average see it
        cmd = [sys.executable, __file__, "--worker", "--root", str(args.root), "--task", args.task]
        cmd += ["--threads", threads, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return {**json.loads(out.strip().splitlines()[-1]), "busy": busy}
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."), help="a project with models/base and data/tasks/<task>")
    p.add_argument("--task", default="rs", help="task whose training records are used (default: rs)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: reports/benchmark/threads.json)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.root, args.task, args.threads, args.steps, args.warmup)))
        return 0
    rows = [_run(args, threads, busy) for busy in (False, True) for threads in SETTINGS]
    print(f"{'threads':>8s} {'chosen':>6s} {'busy':>5s} {'s/step':>8s}")
    for r in rows:
        print(f"{r['threads']:>8s} {r['chosen']:>6d} {str(r['busy']):>5s} {r['seconds_per_step']:>8.4f}")
    out = args.out or args.root / "reports/benchmark/threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"task": args.task, "steps": args.steps, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
