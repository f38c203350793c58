"""Benchmark: seconds to generate + validate the default domain track (params.yaml `data:` sizes), printed
and written to reports/benchmark/data.json."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(a) -> int:
    from mllmcl.data.benchmark import DOMAIN_TRACK, generate_task
    from mllmcl.data.validation import validate_task
    from mllmcl.entry import load_params
    from mllmcl.paths import ProjectPaths

    params = load_params(a)
    d = params.data.model_dump()
    out = a.out or ProjectPaths(a.root).benchmark_reports / "data.json"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in DOMAIN_TRACK:
            folder = Path(tmp) / task
            t0 = time.perf_counter()
            generate_task(
                task,
                folder,
                train_size=d["train_size"],
                test_size=d["test_size"],
                seed=d["seed"],
                image_size=d["image_size"],
            )
            (folder / "meta.json").write_text(json.dumps({"image_size": d["image_size"]}))
            t1 = time.perf_counter()
            result = validate_task(folder, task, params.validate_)
            t2 = time.perf_counter()
            rows[task] = {"generate_s": round(t1 - t0, 2), "validate_s": round(t2 - t1, 2), "passed": result.passed}
            print(
                f"{task:4s} generate {t1 - t0:6.2f} s  validate {t2 - t1:6.2f} s  {'ok' if result.passed else 'FAILED'}"
            )
    total = {
        "generate_s": round(sum(r["generate_s"] for r in rows.values()), 2),
        "validate_s": round(sum(r["validate_s"] for r in rows.values()), 2),
    }
    print(
        f"total generate {total['generate_s']} s, validate {total['validate_s']} s "
        f"({d['train_size']}+{d['test_size']} rows per task, {d['image_size']} px)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tasks": rows, "total": total, "data": d}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from mllmcl.entry import add_common_options, main_of

    parser = add_common_options(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default: reports/benchmark/data.json)")
    main_of(main, parser)
