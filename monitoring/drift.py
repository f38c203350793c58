"""Drift of incoming requests against what the experts were trained on, with Evidently.

Each request becomes a row of features that describe what the model sees (image brightness, colour, contrast,
edges and size; question length and whether there is an image), compared column by column with a sample of
the learned tasks' training data (Kolmogorov-Smirnov for numbers, a Z-test or chi-squared for categories).
When the share of drifted columns reaches `drift.drift_share`, the batch is new territory: the next continual
stage should learn it (`mllmcl drift --emit` starts it through Prefect)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.config import DriftConfig
from mllmcl.data import records as rec_io
from mllmcl.errors import DataError

NUMERIC = ["brightness", "red", "green", "blue", "contrast", "edges", "width", "height", "question_words"]
CATEGORICAL = ["has_image"]


def image_features(path: Path) -> dict:
    """Brightness, mean red/green/blue, contrast and edge strength (0..1) and the size in pixels of one image; an
    unreadable file is a DataError."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    gray = rgb.mean(axis=2)
    edges = (np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()) / 2
    return {
        "brightness": float(gray.mean()),
        "red": float(rgb[..., 0].mean()),
        "green": float(rgb[..., 1].mean()),
        "blue": float(rgb[..., 2].mean()),
        "contrast": float(gray.std()),
        "edges": float(edges),
        "width": float(rgb.shape[1]),
        "height": float(rgb.shape[0]),
    }


def request_features(requests: list[dict], folder: Path | list[Path]) -> "pandas.DataFrame":  # noqa: F821
    """One row per request ({image: path relative to its folder or null, question}); text-only rows leave the
    image columns empty. `folder`: one for all requests, or one per request."""
    import pandas as pd

    folders = folder if isinstance(folder, list) else [Path(folder)] * len(requests)
    rows = []
    for i, (r, folder) in enumerate(zip(requests, folders)):
        if not isinstance(r, dict) or not isinstance(r.get("question"), str):
            rid = r.get("id", i) if isinstance(r, dict) else i
            raise DataError(f"{folder}: request {rid}: needs a string 'question'")
        row = dict.fromkeys(NUMERIC[:-1])
        if r.get("image"):
            row.update(image_features(folder / r["image"]))
        row.update(question_words=float(len(r["question"].split())), has_image="yes" if r.get("image") else "no")
        rows.append(row)
    return pd.DataFrame(rows, columns=NUMERIC + CATEGORICAL).astype({c: float for c in NUMERIC})


def reference_requests(tasks: list[str], tasks_dir: Path, rows: int, seed: int) -> tuple[list[dict], list[Path]]:
    """A fixed-seed sample of the learned tasks' training records (the data the experts know)."""
    import random

    picked, folders = [], []
    per_task = max(1, rows // max(1, len(tasks)))
    for task in tasks:
        folder = Path(tasks_dir) / task
        items = rec_io.read_records(folder / "train.jsonl")
        for r in random.Random(f"{seed}:{task}").sample(items, min(per_task, len(items))):
            picked.append(r)
            folders.append(folder)
    return picked, folders


@dataclass
class DriftResult:
    """The verdict on one batch: drifted or not, the share of drifted columns against the threshold, which columns
    drifted, and each column's p-value."""

    detected: bool
    drift_share: float  # share of feature columns that drifted
    threshold: float  # drift_share at which the batch counts as drifted
    drifted_columns: list[str]
    p_values: dict[str, float]
    reference_rows: int
    current_rows: int

    def to_json(self) -> dict:
        return asdict(self)


def _same_constant(a, b) -> bool:
    """A column with one identical value on both sides (e.g. a fixed image size) carries no signal."""
    values = set(a.dropna().unique()) | set(b.dropna().unique())
    return len(values) == 1


def detect(reference, current, cfg: DriftConfig | None = None):
    """Evidently's DataDriftPreset over the feature frames; returns (DriftResult, Evidently snapshot)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cfg = cfg or DriftConfig()
    columns = [
        c
        for c in NUMERIC + CATEGORICAL
        if reference[c].notna().any() and current[c].notna().any() and not _same_constant(reference[c], current[c])
    ]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c in NUMERIC],
        categorical_columns=[c for c in columns if c in CATEGORICAL],
    )
    report = Report([DataDriftPreset(columns=columns, drift_share=cfg.drift_share, threshold=cfg.stat_threshold)])
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    share, p_values = 0.0, {}
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name") or metric.get("metric_id") or "")
        if name.startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif name.startswith("ValueDrift(column="):
            p_values[name.split("column=", 1)[1].split(",", 1)[0]] = float(metric["value"])
    alpha = cfg.stat_threshold
    drifted = sorted(c for c, p in p_values.items() if p < alpha)
    result = DriftResult(
        detected=share >= cfg.drift_share,
        drift_share=round(share, 4),
        threshold=cfg.drift_share,
        drifted_columns=drifted,
        p_values={c: round(p, 6) for c, p in sorted(p_values.items())},
        reference_rows=len(reference),
        current_rows=len(current),
    )
    return result, snapshot


def check_batch(
    incoming: Path, tasks: list[str], tasks_dir: Path, cfg: DriftConfig | None, out_dir: Path
) -> DriftResult:
    """Compare a JSONL batch of requests with the learned tasks; write `<batch>.html` (Evidently) and
    `<batch>.json` under out_dir."""
    cfg = cfg or DriftConfig()
    incoming = Path(incoming)
    if not incoming.is_file():
        raise DataError(f"{incoming}: file not found")
    current_requests = [r.obj for r in rec_io.read_json_lines(incoming)]
    if not current_requests:
        raise DataError(f"{incoming}: no requests")
    ref_requests, ref_folders = reference_requests(tasks, tasks_dir, cfg.reference_rows, cfg.seed)
    reference = request_features(ref_requests, ref_folders)
    current = request_features(current_requests, incoming.parent)
    result, snapshot = detect(reference, current, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / f"{incoming.stem}.html"))
    (out_dir / f"{incoming.stem}.json").write_text(
        json.dumps({"batch": str(incoming), "tasks": tasks, **result.to_json()}, indent=2) + "\n"
    )
    return result
