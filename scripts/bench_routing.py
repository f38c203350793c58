"""Routing benchmark: every router kind on the same requests of a trained workspace, written as JSON.

Per kind (mllm = MR-LoRA's router, prototype = per-task Gaussians of the base's own features, cascade = prototype
first, MLLM router where unsure): routing accuracy per learned task on its test split, text-only requests sent to
the base, the share of requests that paid an MLLM-router pass, AUROC of known vs unseen kinds (the other track's
test images: the open-set score) and how many unseen requests went to the base, router training seconds, and the
milliseconds per request of the routed answer next to the oracle expert alone (same requests, same batch size, same
process, one run). The workspace's own router is the `mllm` kind (its adapter is the cascade's MLLM router); the
prototype's profiles are fitted here, and timed.

    python scripts/bench_routing.py --root . --out reports/benchmark/routing.json
    python scripts/bench_routing.py --root . --unseen ocr math gui count --per-task 200 --latency-per-task 32
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _kind_view(router_dir: Path, folder: Path, kind: str, profiles_from: Path | None = None) -> Path:
    """A copy of a router folder that reads as `kind` (its pool.json says so), with the profiles of another folder."""
    shutil.copytree(router_dir, folder)
    if profiles_from is not None:
        for p in profiles_from.glob("open_set*"):
            shutil.copy(p, folder / p.name)
    pool = json.loads((folder / "pool.json").read_text())
    (folder / "pool.json").write_text(json.dumps({**pool, "kind": kind}))
    return folder


def _requests(tasks, tasks_dir: Path, per_task: int, seed: int = 0):
    """(label, (image, question)) of up to `per_task` test records per task, read in file order after a seeded
    shuffle (the same requests for every kind)."""
    import random

    from mllmcl.continual.router import labelled_request
    from mllmcl.data import records as rec_io

    out = []
    for task in tasks:
        records = rec_io.read_records(Path(tasks_dir) / task / "test.jsonl")
        random.Random(f"{seed}-{task}").shuffle(records)
        out += [(task, labelled_request(task, r, tasks_dir)) for r in records[:per_task]]
    return out


def _auroc(known: list[float], unseen: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not known or not unseen:
        return None
    return round(float(roc_auc_score([0] * len(known) + [1] * len(unseen), known + unseen)), 4)


def _latency(model, labelled, batch_size: int) -> dict:
    """ms per request: the routed answer (route + mixed-adapter answer) and the oracle expert alone."""
    from mllmcl.continual.inference import Request

    requests = [Request(question, image, str(i)) for i, (_, (image, question)) in enumerate(labelled)]
    truth = [label for label, _ in labelled]
    model.predict(requests[:batch_size], batch_size=batch_size)  # warm-up: first-call allocations
    t0 = time.perf_counter()
    model.predict(requests, batch_size=batch_size)
    routed = (time.perf_counter() - t0) * 1000 / len(requests)
    t0 = time.perf_counter()
    model.answer_mixed(truth, requests, batch_size=batch_size)
    oracle = (time.perf_counter() - t0) * 1000 / len(requests)
    return {
        "routed_ms": round(routed, 2),
        "oracle_ms": round(oracle, 2),
        "overhead": round((routed - oracle) / oracle, 4),
        "requests": len(requests),
        "batch_size": batch_size,
    }


def measure(kind: str, folder: Path, args, params, paths, sets: dict) -> dict:
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.continual.router import BASE
    from mllmcl.model.loading import resolve_base

    model = RoutedModel(resolve_base(params.base, paths.base), paths.experts, folder, routing=params.routing)
    out: dict = {"per_task": {}}
    mllm = total = 0
    for name, labelled in sets.items():
        routes = model.router.route([r for _, r in labelled], batch_size=args.batch_size)
        mllm += sum(r.by == "mllm" for r in routes)
        total += len(routes)
        if name == "unseen":
            out["unseen_to_base"] = round(sum(r.task == BASE for r in routes) / max(1, len(routes)), 4)
            out["_unseen_novelty"] = [r.novelty for r in routes if r.novelty is not None]
        elif name == "text_only":
            out["text_only_to_base"] = round(sum(r.task == BASE for r in routes) / max(1, len(routes)), 4)
        else:
            for label, route in zip([label for label, _ in labelled], routes):
                cell = out["per_task"].setdefault(label, [0, 0])
                cell[0] += route.task == label
                cell[1] += 1
            out["_known_novelty"] = [r.novelty for r in routes if r.novelty is not None]
    right = sum(c[0] for c in out["per_task"].values())
    n = sum(c[1] for c in out["per_task"].values())
    out["accuracy"] = round(right / max(1, n), 4)
    out["per_task"] = {t: {"accuracy": round(c[0] / c[1], 4), "n": c[1]} for t, c in out["per_task"].items()}
    out["mllm_share"] = round(mllm / max(1, total), 4)
    out["auroc_unseen"] = _auroc(out.pop("_known_novelty", []), out.pop("_unseen_novelty", []))
    latency_set = [x for x in sets["known"] if x[0] in params.tasks]
    by_task: dict = {}
    for label, r in latency_set:
        if len(by_task.setdefault(label, [])) < args.latency_per_task:
            by_task[label].append((label, r))
    out["latency"] = _latency(model, [x for rows in by_task.values() for x in rows], args.batch_size)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--out", type=Path, default=Path("reports/benchmark/routing.json"))
    p.add_argument("--kinds", nargs="+", default=["mllm", "prototype", "cascade"])
    p.add_argument("--unseen", nargs="*", default=["ocr", "math", "gui", "count"], help="tasks of unseen kinds")
    p.add_argument("--per-task", type=int, default=200, help="test requests per learned task (and per unseen task)")
    p.add_argument("--latency-per-task", type=int, default=32, help="requests per task in the latency run")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    from mllmcl.config import load_params
    from mllmcl.continual.benchmark_run import benchmark_tasks_dir
    from mllmcl.continual.router import train_router
    from mllmcl.model.compute import set_threads
    from mllmcl.model.loading import base_identity
    from mllmcl.paths import ProjectPaths

    paths = ProjectPaths(args.root)
    params = load_params(paths.params)
    set_threads(params.compute.threads)
    tasks = list(params.tasks)
    unseen_dir = benchmark_tasks_dir(args.unseen, params, paths) if args.unseen else paths.tasks_dir
    sets = {
        "known": _requests(tasks, paths.tasks_dir, args.per_task),
        "text_only": _requests([params.router.base_suite], paths.tasks_dir, args.per_task),
        "unseen": _requests(args.unseen, unseen_dir, args.per_task),
    }
    mllm_stats = json.loads((paths.router / "router_stats.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    try:
        proto = params.model_copy(update={"router": params.router.model_copy(update={"kind": "prototype"})})
        proto_stats = train_router(
            tasks, proto, base_dir=paths.base, tasks_dir=paths.tasks_dir, out_dir=work / "prototype", progress=False
        )
        folders = {
            "mllm": _kind_view(paths.router, work / "mllm", "mllm", profiles_from=work / "prototype"),
            "prototype": work / "prototype",
            "cascade": _kind_view(paths.router, work / "cascade", "cascade", profiles_from=work / "prototype"),
        }
        seconds = {
            "mllm": mllm_stats.get("seconds"),
            "prototype": proto_stats["router_seconds"],
            "cascade": round((mllm_stats.get("seconds") or 0) + proto_stats["router_seconds"], 2),
        }
        kinds = {}
        for kind in args.kinds:
            t0 = time.perf_counter()
            kinds[kind] = {**measure(kind, folders[kind], args, params, paths, sets), "train_seconds": seconds[kind]}
            print(f"{kind}: {json.dumps(kinds[kind])} ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    code = Path(__file__).resolve().parents[1]  # the code measured, wherever the workspace is
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code, capture_output=True, text=True).stdout.strip()
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": params.compute.threads,
        },
        "base": base_identity(params.base, paths.base),
        "tasks": tasks,
        "unseen": args.unseen,
        "routing": params.routing.model_dump(),
        "requests": {k: len(v) for k, v in sets.items()},
        "expert_train_seconds": _expert_seconds(paths, tasks),
        "kinds": kinds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _expert_seconds(paths, tasks) -> dict:
    out = {}
    for task in tasks:
        stats = paths.expert(task) / "train_stats.json"
        if stats.exists():
            out[task] = json.loads(stats.read_text()).get("train_seconds")
    return out


if __name__ == "__main__":
    main()
