"""Benchmark: seconds to generate + validate the default domain track (params.yaml `data:` sizes), printed
and written to reports/benchmark/data.json."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", type=Path, default=Path("reports/benchmark/data.json"))
    a = p.parse_args(argv)

    from mllmcl.benchmark import DOMAIN_TRACK, generate_task
    from mllmcl.config import load_params
    from mllmcl.validation import validate_task

    params = load_params(a.params)
    d = params["data"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in DOMAIN_TRACK:
            folder = Path(tmp) / task
            t0 = time.perf_counter()
            generate_task(task, folder, train_size=d["train_size"], test_size=d["test_size"], seed=d["seed"],
                          image_size=d["image_size"])
            (folder / "meta.json").write_text(json.dumps({"image_size": d["image_size"]}))
            t1 = time.perf_counter()
            result = validate_task(folder, task, params["validate"])
            t2 = time.perf_counter()
            rows[task] = {"generate_s": round(t1 - t0, 2), "validate_s": round(t2 - t1, 2), "passed": result.passed}
            print(f"{task:4s} generate {t1 - t0:6.2f} s  validate {t2 - t1:6.2f} s  {'ok' if result.passed else 'FAILED'}")
    total = {"generate_s": round(sum(r["generate_s"] for r in rows.values()), 2),
             "validate_s": round(sum(r["validate_s"] for r in rows.values()), 2)}
    print(f"total generate {total['generate_s']} s, validate {total['validate_s']} s "
          f"({d['train_size']}+{d['test_size']} rows per task, {d['image_size']} px)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"tasks": rows, "total": total, "data": d}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
