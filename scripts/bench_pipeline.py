"""Benchmark of the continual-learning pipeline on this machine, from a clean clone:

1. `git clone` this repo into a scratch folder and `make setup` (the install, timed apart);
2. `dvc repro` in the fresh clone: the full DAG on the embedded defaults (5 domain tasks; nothing is cached, so this
   is `dvc repro -f`) -> the gate report;
3. `dvc repro` with nothing changed (the no-op);
4. an incremental continual stage: `mllmcl task add <6th task> --synthetic ...` then `dvc repro`;
5. the Prefect flow's overhead over plain `dvc repro` on the fully cached pipeline;
6. a stage with 2 new tasks through the flow, serial here vs on a local Dask cluster of 2 workers (the run-cache
   emptied in between, so that the second run trains too);
7. with --ability: the ability track through the same DAG, changing only `tasks` in params.yaml.

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


REJECTED = "Rejected: gate rejected candidate"  # the flow's exit 1 for a gate that said no: a decision, not a failure


def timed(cmd: list[str] | str, cwd: Path, log: Path) -> float:
    """Seconds `cmd` took; a failure stops the benchmark, a flow whose gate rejected the candidate does not (the
    ability tasks' experts are not expected to pass it yet: the stage's cost is what is measured)."""
    # DVC stage commands say `python`: it must be the clone's venv, as `make` and an activated shell arrange
    path = f"{cwd / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    start = log.stat().st_size if log.exists() else 0
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
    with log.open() as f:
        f.seek(start)
        rejected = proc.returncode == 1 and REJECTED in f.read()
    if proc.returncode != 0 and not rejected:
        raise SystemExit(f"{cmd} failed ({proc.returncode}) after {seconds:.0f} s: see {log}")
    return round(seconds, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=None, help="where to clone (default: a new temp folder)")
    p.add_argument("--new-task", default="ocr", help="generator of the 6th task (default: ocr)")
    p.add_argument("--ability", action="store_true", help="also run the ability track (tasks: ocr, math, count, gui)")
    p.add_argument("--two-tasks", nargs=2, default=["math", "count"], help="generators of the 2-task stage")
    p.add_argument("--skip-distributed", action="store_true", help="skip the serial vs 2-worker comparison")
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
    full = step("full_repro_s", [py, "-m", "dvc", "repro"], "<= 1200 s")
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
    if not a.skip_distributed:
        two_task_stage(clone, py, work, step, a.two_tasks)
        out["distributed_speedup"] = round(out["two_tasks_serial_s"] / out["two_tasks_2_workers_s"], 2)
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
        f"incremental stage = {out['incremental_share_of_full']:.0%} of the full run (target <= 25%); no-op "
        f"{out['dvc_repro_noop_s']} s; flow overhead {out['flow_overhead_s']} s; 2-task stage serial "
        f"{out.get('two_tasks_serial_s')} s vs 2 workers {out.get('two_tasks_2_workers_s')} s; wrote {a.out}"
    )
    return 0


def _cluster(clone: Path, enabled: bool) -> None:
    from mllmcl.data.tasks import edit_params

    def switch(data: dict) -> None:
        data["cluster"]["enabled"] = enabled

    edit_params(clone / "params.yaml", switch)


def _forget_runs(clone: Path) -> None:
    """Empty DVC's run-cache here and in the (folder) remote, so that a stage seen before is trained again."""
    import shutil

    from flows.cluster import scratch_root

    # the local cluster's workers keep one DVC cache (and run-cache) in the default scratch folder
    for runs in (clone / ".dvc/cache/runs", clone / ".dvc-remote/runs", scratch_root(None)):
        shutil.rmtree(runs, ignore_errors=True)


def _forget_tasks(clone: Path, names: list[str]) -> None:
    """Remove what the new tasks' own stages produced (data, validation reports, experts) and the run-cache, so that
    a stage over them ingests, validates and trains both experts from nothing, whatever ran before."""
    import shutil

    for name in names:
        shutil.rmtree(clone / "data/tasks" / name, ignore_errors=True)
        shutil.rmtree(clone / "models/experts" / name, ignore_errors=True)
        for suffix in (".json", ".md"):
            (clone / "reports/validation" / f"{name}{suffix}").unlink(missing_ok=True)
    _forget_runs(clone)


def two_task_stage(clone: Path, py: str, work: Path, step, names: list[str]) -> None:
    """The same continual stage (2 new tasks: their ingest, validation and experts, then router, evaluation and gate)
    through the Prefect flow, first serially, then with the experts on a local Dask cluster of 2 workers. Before
    each, the 6-task state is restored and the new tasks' outputs and the run-cache are removed, so that both runs
    do the same work from nothing."""
    from mllmcl.config import load_params
    from mllmcl.data.tasks import set_tasks

    before = list(load_params(clone / "params.yaml").tasks)
    for name in names:
        if not (clone / "data/raw" / name / "spec.yaml").exists():
            raise SystemExit(f"no generator spec for {name}")
    # --no-pull: a pull would bring back from the remote the experts an earlier run pushed, and nothing would train
    flow = f"PREFECT_HOME={work / 'prefect'} {py} -m flows.continual_stage --no-promote --no-pull"
    for mode, enabled in (("two_tasks_serial_s", False), ("two_tasks_2_workers_s", True)):
        set_tasks(clone / "params.yaml", before)
        timed([py, "-m", "dvc", "repro"], clone, work / "bench.log")  # the 6-task state (no-op or run-cache restore)
        _forget_tasks(clone, names)
        _cluster(clone, enabled)
        set_tasks(clone / "params.yaml", before + names)
        step(mode, flow)
    _cluster(clone, False)


if __name__ == "__main__":
    sys.exit(main())
