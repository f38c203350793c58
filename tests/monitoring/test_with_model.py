"""The monitor with a real (toy) routed model: the features it computes for a batch are exactly what
`RoutedModel.predict` returns (what the server writes to its traffic log), the reference profile is cached per
version, and a JSONL batch is judged end to end with the reports written. Slow: trains two toy experts and a router."""

from __future__ import annotations

import json

import pytest

from mllmcl.data.images import read_image_bytes
from mllmcl.paths import ProjectPaths
from tests import toy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A toy project (two square tasks + the language suite) with experts and a router trained briefly."""
    root = tmp_path_factory.mktemp("drift-model")
    toy.make_project(root)
    toy.train_models(root, toy.params(expert={"steps": 60, "lr": 3e-3}, router={"steps": 150, "lr": 3e-3}))
    return root


def test_monitor_features_are_the_predictions_features(trained_root):
    from mllmcl.continual.inference import RoutedModel, load_request
    from mllmcl.data.records import read_records
    from monitoring.features import model_view

    paths = ProjectPaths(trained_root)
    model = RoutedModel(str(paths.base), paths.experts, paths.router)
    folder = paths.task_data("colour")
    requests = [load_request(r, folder) for r in read_records(folder / "test.jsonl")[:8]]
    requests.append(load_request({"question": "the opposite of hot is?"}, folder))
    predictions = model.predict(requests)
    rows = model_view(model, requests)
    assert all(p.image_embedding for p in predictions[:-1]) and predictions[-1].image_embedding is None
    for p, row in zip(predictions, rows):
        assert row["expert"] == p.expert and row["confidence"] == pytest.approx(p.confidence, abs=1e-3)
        assert (row["known"] == "yes") is p.known
        emb = [row[f"img_{i:02d}"] for i in range(len(p.image_embedding or []))]
        assert emb == pytest.approx(p.image_embedding or [], abs=1e-3)
        q = [row[f"q_{i:02d}"] for i in range(len(p.question_embedding))]
        assert q == pytest.approx(p.question_embedding, abs=1e-3) and 0 < len(q) <= 64
    assert rows[-1]["has_image"] == "no" and rows[0]["has_image"] == "yes"


def test_a_batch_is_judged_end_to_end(trained_root):
    from mllmcl.data.records import read_records
    from monitoring.monitor import Monitor, monitor_batch

    paths = ProjectPaths(trained_root)
    params = toy.params(drift={"reference_rows": 96, "min_batch": 10})
    folder = paths.incoming / "b1"
    (folder / "images").mkdir(parents=True)
    lines = []
    for task in toy.TASKS:
        for r in read_records(paths.task_data(task) / "test.jsonl"):
            (folder / "images" / f"{r['id']}.png").write_bytes(read_image_bytes(paths.task_data(task) / r["image"]))
            lines.append(json.dumps({"id": r["id"], "image": f"images/{r['id']}.png", "question": r["question"]}))
    (folder / "requests.jsonl").write_text("\n".join(lines) + "\n")
    monitor = Monitor(trained_root, params)
    assert monitor.version.startswith("workspace-")
    result, decision = monitor_batch(trained_root, params, folder / "requests.jsonl", monitor=monitor)
    assert result.current_rows == 32 and set(result.embeddings) == {"image", "question"}
    # the learned tasks' own test requests: nothing new to learn (their questions are the training questions)
    assert decision.kind != "novel" and decision.action not in ("new_task", "label_request"), decision.line()
    assert not decision.labelled
    doc = json.loads((paths.drift_reports / "b1.json").read_text())
    assert doc["decision"] == decision.to_json() and doc["version"] == monitor.version
    assert (paths.drift_reports / "b1.html").is_file()
    cached = paths.drift_reports / "reference" / f"{monitor.version}.parquet"
    assert cached.is_file()
    # the same version again: read from the cache, not recomputed
    before = cached.stat().st_mtime_ns
    monitor_batch(trained_root, params, folder / "requests.jsonl", monitor=Monitor(trained_root, params))
    assert cached.stat().st_mtime_ns == before
