"""Benchmark of the continual-learning pipeline on this machine, from a clean clone:

1. `git clone` this repo into a scratch folder and `make setup` (the install, timed apart);
2. `make run`: the full DAG on the embedded defaults (5 domain tasks) -> the gate report;
3. `dvc repro` with nothing changed (the no-op);
4. an incremental continual stage: `mllmcl task add <6th task> --synthetic ...` then `dvc repro`;
5. the Prefect flow's overhead over plain `dvc repro` on the fully cached pipeline;
6. with --ability: the ability track through the same DAG, changing only `tasks` in params.yaml.

Prints each number and writes them to reports/benchmark/pipeline.json (targets from the issue beside them)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str] | str, cwd: Path, log: Path) -> float:
    # DVC stage commands say `python`: it must be the clone's venv, as `make` and an activated shell arrange
    path = f"{cwd / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            stdout=f,
            stderr=subprocess.STDOUT,
            shell=isinstance(cmd, str),
            env={**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"},
        )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed ({proc.returncode}) after {seconds:.0f} s: see {log}")
    return round(seconds, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=None, help="where to clone (default: a new temp folder)")
    p.add_argument("--new-task", default="ocr", help="generator of the 6th task (default: ocr)")
    p.add_argument("--ability", action="store_true", help="also run the ability track (tasks: ocr, math, count, gui)")
    p.add_argument("--out", type=Path, default=REPO / "reports/benchmark/pipeline.json")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse --workdir's clone and skip the steps --out already records (after a failed step)",
    )
    a = p.parse_args(argv)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="mllmcl-bench-"))
    clone = work / "mllmcl"
    log = work / "bench.log"
    print(f"clone: {clone}\nlog:   {log}")
    if not (a.resume and clone.is_dir()):
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    py = str(clone / ".venv/bin/python")
    out: dict = {
        "machine": f"{os.cpu_count()} CPUs",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
    }
    if a.resume and a.out.exists():
        done = json.loads(a.out.read_text())
        if done.get("commit") == out["commit"]:
            out = done

    def save():
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2) + "\n")

    def step(name: str, cmd, target: str | None = None):
        if name in out:
            print(f"{name:28s} {out[name]:8.1f} s   (recorded earlier)")
            return out[name]
        seconds = timed(cmd, clone, log)
        out[name] = seconds
        save()
        print(f"{name:28s} {seconds:8.1f} s" + (f"   (target {target})" if target else ""), flush=True)
        return seconds

    step("install_s", ["make", "setup"])
    full = step("make_run_s", ["make", "run"], "<= 1200 s")
    step("dvc_repro_noop_s", [py, "-m", "dvc", "repro"], "<= 3 s")
    step("task_add_s", [py, "-m", "mllmcl", "task", "add", a.new_task, "--synthetic", a.new_task])
    inc = step("incremental_stage_s", [py, "-m", "dvc", "repro"], "<= 25% of make run")
    out["incremental_share_of_full"] = round(inc / full, 3)
    plain = step("cached_dvc_repro_s", [py, "-m", "dvc", "repro"])
    flow_cmd = f"PREFECT_HOME={work / 'prefect'} {py} -m flows.continual_stage --no-promote --no-pull --no-push"
    step("cached_flow_first_s", flow_cmd)  # includes creating Prefect's local database (ephemeral server)
    flow = step("cached_flow_s", flow_cmd, "overhead <= 15 s")
    out["flow_overhead_s"] = round(flow - plain, 1)
    for name in ("metrics/gate.json", "metrics/eval.json", "reports/experts.json"):
        path = clone / name
        if path.exists():
            out[name] = json.loads(path.read_text())
    out["gate_decision"] = out.get("metrics/gate.json", {}).get("decision")
    save()
    if a.ability:
        from mllmcl.data.tasks import set_tasks

        set_tasks(clone / "params.yaml", ["ocr", "math", "count", "gui"])
        step("ability_track_repro_s", [py, "-m", "dvc", "repro"])
        out["ability_track"] = {
            "eval": json.loads((clone / "metrics/eval.json").read_text()),
            "experts": json.loads((clone / "reports/experts.json").read_text()),
            "gate": json.loads((clone / "metrics/gate.json").read_text())["decision"],
        }
        save()
    print(
        f"incremental stage = {out['incremental_share_of_full']:.0%} of the full run; flow overhead "
        f"{out['flow_overhead_s']} s; wrote {a.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
