"""The drift monitor's image statistics on the real benchmark generators (no model): requests of a learned domain
compared with its training data do not drift, another domain is flagged with the colour columns named. The full
monitor (model features, embeddings, policy, CLI) is tested in tests/monitoring/."""

from __future__ import annotations

import pytest

from mllmcl.config import DriftConfig
from mllmcl.data.benchmark import generate_task
from mllmcl.data.image_stats import image_features
from mllmcl.data.records import read_records
from monitoring.features import feature_row, to_frame
from monitoring.report import detect


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift") / "data/tasks"
    for task in ("rs", "med"):
        generate_task(task, root / task, train_size=240, test_size=80, seed=3, image_size=64)
    return root


def _frame(folder, split, n):
    rows = []
    for r in read_records(folder / f"{split}.jsonl")[:n]:
        stats = image_features(folder / r["image"]) if r.get("image") else None
        rows.append(
            feature_row(
                question=r["question"],
                stats=stats,
                expert="rs",
                confidence=1.0,
                known=True,
                novelty=None,
                image_embedding=None,
                question_embedding=None,
                rid=r["id"],
            )
        )
    return to_frame(rows)


def test_requests_like_the_training_data_do_not_drift(data_root):
    result = detect(_frame(data_root / "rs", "train", 240), _frame(data_root / "rs", "test", 50), DriftConfig())
    assert not result.detected, result.summary()
    assert result.embeddings == {}  # no embeddings in these frames: statistics and question text only


def test_another_domain_is_flagged_with_its_columns(data_root):
    result = detect(_frame(data_root / "rs", "train", 240), _frame(data_root / "med", "test", 50), DriftConfig())
    assert result.detected and result.drift_share >= 0.5, result.summary()
    assert {"red", "brightness"} & set(result.drifted_columns) and "question" in result.drifted_columns
