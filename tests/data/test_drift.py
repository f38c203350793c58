"""Drift detection (Evidently) on request features: same-distribution requests pass, another domain is
flagged with its drifted columns named, and a bad request is refused by row."""

from __future__ import annotations

import json

import pytest

from mllmcl.cli.main import main
from mllmcl.data.benchmark import generate_task


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift") / "data/tasks"
    for task in ("rs", "med"):
        generate_task(task, root / task, train_size=240, test_size=80, seed=3, image_size=64)
    return root


def _cli(root, incoming, *extra):
    (root.parent.parent / "params.yaml").write_text("tasks: [rs]\ndrift: {reference_rows: 240}\n")
    return main(
        [
            "--params",
            str(root.parent.parent / "params.yaml"),
            "drift",
            str(incoming),
            "--root",
            str(root.parent.parent),
            *extra,
        ]
    )


def test_requests_like_the_training_data_do_not_drift(data_root, capsys):
    assert _cli(data_root, data_root / "rs/test.jsonl") == 0
    report = json.loads((data_root.parent.parent / "reports/drift/test.json").read_text())
    assert report["detected"] is False and report["current_rows"] == 80
    assert "no drift" in capsys.readouterr().out


def test_another_domain_is_flagged_with_its_columns(data_root, capsys, tmp_path):
    assert _cli(data_root, data_root / "med/test.jsonl", "--out", str(tmp_path)) == 1
    report = json.loads((tmp_path / "test.json").read_text())
    assert report["detected"] is True and report["drift_share"] >= 0.5
    assert {"red", "brightness"} & set(report["drifted_columns"])
    page = (tmp_path / "test.html").read_text()
    # Evidently's page, self-contained, naming the drifted columns it was computed on
    assert page.lstrip().lower().startswith("<!doctype html") or page.lstrip().lower().startswith("<html")
    assert all(column in page for column in report["drifted_columns"])
    assert "DRIFT" in capsys.readouterr().out


def test_a_bad_request_is_named(data_root, tmp_path, capsys):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"id": "r1", "question": "is there water?"})
        + "\n"
        + json.dumps({"id": "r2", "image": "nope.png", "question": "x"})
        + "\n"
    )
    assert _cli(data_root, batch) == 2
    assert "nope.png" in capsys.readouterr().err
