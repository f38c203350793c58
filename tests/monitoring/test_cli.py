"""`mllmcl drift BATCH.jsonl` end to end on a toy project: exit 0 for requests like the learned tasks, 1 with the
decision for shifted or unseen ones (and a labelling file for unlabelled novel data), 2 with one line for a bad batch
or no model. The production model is a stand-in with the RoutedModel surface the monitor uses (router.route, the
base's input embeddings, the tokenizer): the router is a rule on the question, the image embedding a thumbnail of the
pixels, so the test runs in seconds; the real model is exercised by scripts/measure_drift.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageEnhance

from mllmcl.cli.main import main
from mllmcl.continual.router import Route
from tests import toy


class _Base:
    """The base's input-embedding table (what question embeddings are read from)."""

    def __init__(self):
        import torch

        torch.manual_seed(0)
        self.table = torch.nn.Embedding(512, 16)

    def get_input_embeddings(self):
        return self.table


def _tokenizer(text, add_special_tokens=False):
    return {"input_ids": [sum(map(ord, w)) % 512 for w in text.lower().split()]}


class _Router:
    def route(self, pairs, batch_size=64):
        out = []
        for image, question in pairs:
            task = "colour" if "colour" in question else "where" if "left or right" in question else "base"
            emb = None if image is None else np.asarray(image.resize((4, 4)), np.float32).reshape(-1) / 255.0
            if image is None:  # text-only: the base's job, known (as the real router's letter Z)
                out.append(Route("base", "Z", 0.95, "", True, None, None))
                continue
            out.append(Route(task, None, 0.97 if task != "base" else 0.3, "", task != "base", 1.0, emb))
        return out


class FakeRoutedModel:
    experts = ["colour", "where"]

    def __init__(self):
        self.model, self.router = _Base(), _Router()
        self.prompting = SimpleNamespace(tokenizer=_tokenizer)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-cli")
    for task in toy.TASKS:
        toy.make_task(root / "data/tasks" / task, task, 60, 30, seed=1)
    toy.make_language(root / "data/tasks/language")  # the router's base suite: the reference's "base" profile
    raw = toy.raw_params(drift={"reference_rows": 120, "min_batch": 20})
    raw["registry"]["uri"] = "registry"
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


@pytest.fixture()
def fake_model(monkeypatch):
    monkeypatch.setattr("monitoring.monitor.production_version", lambda root, params: "workspace-fake")
    monkeypatch.setattr("monitoring.monitor.load_model", lambda root, params, version: FakeRoutedModel())


def _write_batch(root: Path, name: str, items: list[dict], *, labelled: bool, transform=None) -> Path:
    """items: task records; their images copied next to the batch (optionally transformed)."""
    folder = root / "batches" / name
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for r in items:
        line = {"id": r["id"], "question": r["question"]}
        if r.get("image"):
            src = Path(r["_folder"]) / r["image"]
            dst = folder / "img" / f"{r['id']}.png"
            if transform:
                transform(Image.open(src).convert("RGB")).save(dst)
            else:
                shutil.copy(src, dst)
            line["image"] = f"img/{dst.name}"
        if labelled:
            line["answer"] = r["answer"]
        lines.append(json.dumps(line))
    path = folder / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _test_records(root: Path, task: str, n: int) -> list[dict]:
    folder = root / "data/tasks" / task
    rows = [json.loads(x) for x in (folder / "test.jsonl").read_text().splitlines()][:n]
    return [{**r, "_folder": str(folder)} for r in rows]


def _cli(root: Path, batch: Path, *extra) -> int:
    return main(["drift", str(batch), "--root", str(root), "--params", "params.yaml", *extra])


def test_requests_like_the_learned_tasks_exit_0(project, fake_model, capsys):
    batch = _write_batch(
        project, "mix", _test_records(project, "colour", 15) + _test_records(project, "where", 15), labelled=False
    )
    assert _cli(project, batch) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("none: none")
    doc = json.loads((project / "reports/drift/mix.json").read_text())
    assert doc["decision"]["action"] == "none" and doc["current_rows"] == 30 and doc["version"] == "workspace-fake"
    assert (project / "reports/drift/mix.html").is_file()
    assert (project / "reports/drift/reference/workspace-fake.parquet").is_file()


def test_text_only_questions_for_the_base_are_not_drift(project, fake_model, capsys):
    folder = project / "data/tasks/language"
    items = [{**r, "_folder": str(folder)} for r in map(json.loads, (folder / "train.jsonl").read_text().splitlines())]
    mixed = _test_records(project, "colour", 16) + items[:8] + _test_records(project, "where", 16)
    assert _cli(project, _write_batch(project, "with-text", mixed, labelled=False)) == 0
    assert capsys.readouterr().out.startswith("none: none")
    reference = pd.read_parquet(project / "reports/drift/reference/workspace-fake.parquet")
    assert set(reference["task"]) == {"colour", "where", "base"}


def test_darker_images_of_a_learned_task_are_known_drift(project, fake_model, capsys):
    def darker(im):
        return ImageEnhance.Brightness(im).enhance(0.4)

    items = _test_records(project, "colour", 30)
    batch = _write_batch(project, "dark", items, labelled=False, transform=darker)
    assert _cli(project, batch) == 1
    assert capsys.readouterr().out.startswith("known_drift: alert task=colour")
    batch = _write_batch(project, "dark-labelled", items, labelled=True, transform=darker)
    assert _cli(project, batch) == 1
    assert capsys.readouterr().out.startswith("known_drift: refresh task=colour")
    doc = json.loads((project / "reports/drift/dark-labelled.json").read_text())
    assert doc["embeddings"]["image"]["drifted"] and "brightness" in doc["drifted_columns"]


def test_an_unseen_kind_is_novel(project, fake_model, capsys):
    def digits(im):
        return Image.new("RGB", im.size, (240, 240, 240))

    items = [{**r, "question": "what number is written?"} for r in _test_records(project, "where", 25)]
    batch = _write_batch(project, "ocr", items, labelled=False, transform=digits)
    assert _cli(project, batch) == 1
    assert capsys.readouterr().out.startswith("novel: label_request")
    to_label = [json.loads(x) for x in (project / "data/incoming/ocr/to_label.jsonl").read_text().splitlines()]
    assert len(to_label) == 25 and to_label[0]["answer"] is None and to_label[0]["routed_to"] == "base"
    assert (project / "data/incoming/ocr" / to_label[0]["image"]).resolve() == (
        batch.parent / "img" / f"{items[0]['id']}.png"
    ).resolve()
    batch = _write_batch(project, "ocr-labelled", items, labelled=True, transform=digits)
    assert _cli(project, batch) == 1
    assert capsys.readouterr().out.startswith("novel: new_task")
    assert not (project / "data/incoming/ocr-labelled").exists()


def test_a_corrupt_batch_is_one_line_naming_file_and_line(project, fake_model, capsys, tmp_path):
    batch = tmp_path / "bad.jsonl"
    batch.write_text(json.dumps({"question": "what colour is the square?"}) + "\n{oops\n")
    assert _cli(project, batch) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(batch) in err and "line 2" in err


def test_no_model_is_a_user_error(project, capsys):
    batch = _write_batch(project, "nomodel", _test_records(project, "colour", 20), labelled=False)
    assert _cli(project, batch) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "production" in err


def test_emit_without_a_prefect_server_is_a_user_error_and_starts_no_cooldown(project, fake_model, capsys, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    items = [{**r, "question": "what number is written?"} for r in _test_records(project, "where", 25)]
    batch = _write_batch(project, "emit", items, labelled=True, transform=lambda im: Image.new("RGB", im.size))
    assert _cli(project, batch, "--emit") == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("novel: new_task") and "Prefect" in captured.err.strip().splitlines()[-1]
    assert not (project / "data/incoming/.cooldowns.json").exists()  # a failed emit starts no cooldown
