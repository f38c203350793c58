"""Parameter isolation, resume, routing and routed inference on the toy project (tiny models, few steps)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mllmcl.errors import ModelLoadError
from mllmcl.paths import ProjectPaths
from tests import toy

_train = toy.train_one_expert


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def trained(toy_root):
    """Experts for both toy tasks and a router, trained once for this module (long enough to learn: the toy
    base is random, so 150 steps at 3e-3 take colour from 0.0 to ~0.7; the router, whose question swaps make it learn
    to route by the question, needs 300 to reach ~1.0)."""
    from mllmcl.continual.router import train_router

    params = toy.params(expert={"steps": 150, "lr": 3e-3}, router={"steps": 300, "lr": 3e-3})
    paths = ProjectPaths(toy_root)
    first = _train(paths, "colour", params)
    before = _hashes(paths.expert("colour"))
    second = _train(paths, "where", params)
    router = train_router(
        list(toy.TASKS), params, base_dir=paths.base, tasks_dir=paths.tasks_dir, out_dir=paths.router, progress=False
    )
    return {"first": first, "second": second, "router": router, "colour_hashes_before": before}


def test_new_expert_leaves_earlier_experts_byte_identical(trained, toy_root):
    assert _hashes(toy_root / "models/experts/colour") == trained["colour_hashes_before"]


def test_expert_folder_holds_adapter_and_stats_only(trained, toy_root):
    names = {p.name for p in (toy_root / "models/experts/where").iterdir()}
    assert names == {"adapter_config.json", "adapter_model.safetensors", "train_stats.json"}
    stats = json.loads((toy_root / "models/experts/where/train_stats.json").read_text())
    assert {"expert_accuracy", "base_accuracy", "train_seconds"} <= set(stats)
    cfg = json.loads((toy_root / "models/experts/where/adapter_config.json").read_text())
    assert "language_model" in str(cfg["target_modules"])  # never the vision tower


def test_router_pool_lists_experts_and_base(trained, toy_root):
    pool = json.loads((toy_root / "models/router/pool.json").read_text())
    assert [e["task"] for e in pool["experts"]] == ["colour", "where", "base"]
    assert pool["kind"] == "mllm" and "base model" in pool["fallback"]


def test_an_expert_learns_its_task_and_the_router_routes(trained):
    colour = trained["first"]
    assert colour.expert_accuracy >= colour.base_accuracy + 0.3, colour  # 4 colours: chance is 0.25
    router = trained["router"]
    assert router["accuracy"] >= 0.9 and router["base_routing_accuracy"] >= 0.9, router["confusion"]
    # the replay's image requests twice (each question is one task's: a swapped copy each), then the text-only ones
    assert router["question_swaps"] == 1
    assert router["examples"] == 2 * len(toy.TASKS) * router["samples_per_task"] + router["base_samples"]


def test_interrupted_expert_training_resumes_from_checkpoint(toy_root, tmp_path):
    from mllmcl.data.records import read_records, write_records
    from mllmcl.model.training import TrainingInterrupted

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    paths, params = ProjectPaths(root), toy.params()
    with pytest.raises(TrainingInterrupted):
        _train(paths, "colour", params, stop_after=20)
    assert (root / "checkpoints/expert-colour/state.json").exists()
    assert not (root / "models/experts/colour").exists()  # nothing half-written
    stats = _train(paths, "colour", params)
    assert stats.training.resumed_from_step == 20
    assert not (root / "checkpoints/expert-colour").exists()
    # a checkpoint of other inputs is never resumed: changed labels start from step 0
    with pytest.raises(TrainingInterrupted):
        _train(paths, "colour", params, stop_after=20)
    train = paths.task_data("colour") / "train.jsonl"
    write_records(train, [{**r, "answer": "red"} for r in read_records(train)])
    assert _train(paths, "colour", params).training.resumed_from_step == 0


def test_batch_predict_writes_one_answer_per_request(trained, toy_root, tmp_path):
    from mllmcl.cli.main import main

    img_dir = toy_root / "data/tasks/colour"
    reqs = tmp_path / "requests.jsonl"
    src = [json.loads(line) for line in (img_dir / "test.jsonl").read_text().splitlines()[:3]]
    for r in src:
        shutil.copy(img_dir / r["image"], tmp_path / Path(r["image"]).name)
    lines = [{"id": r["id"], "image": Path(r["image"]).name, "question": r["question"]} for r in src]
    lines.append({"id": "text", "question": "what is the opposite of hot?"})
    reqs.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "answers.jsonl"
    code = main(
        [
            "predict",
            "--root",
            str(toy_root),
            "--input",
            str(reqs),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == [x["id"] for x in lines]
    assert [a["expert"] for a in answers] == ["colour", "colour", "colour", "base"]
    for a in answers:
        assert 0.0 <= a["confidence"] <= 1.0 and a["latency_ms"] > 0


def test_predict_rejects_a_non_image_and_survives_unknown_words(trained, toy_root, tmp_path, capsys):
    from mllmcl.cli.main import main

    bogus = tmp_path / "not-an-image.png"
    bogus.write_text("hello")
    args = ["predict", "--root", str(toy_root)]
    assert main(args + ["--image", str(bogus), "--question", "what colour?"]) == 2
    assert "not-an-image.png" in capsys.readouterr().err
    weird = "zxqv ünïcödé 🦜 flibbertigibbet?"
    assert main(args + ["--question", weird]) == 0
    assert "expert:" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_adapter_is_reported_by_file(trained, toy_root, tmp_path, damage):
    from mllmcl.continual.inference import RoutedModel

    experts = tmp_path / "experts"
    shutil.copytree(toy_root / "models/experts", experts)
    weights = experts / "where" / "adapter_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="where/adapter_model.safetensors"):
        RoutedModel(str(toy_root / "models/base"), experts, toy_root / "models/router")


def test_a_differently_sized_base_works_through_name_or_path(toy_root, tmp_path):
    """Swapping the base is a params change only: experts, router and predict run on it unchanged."""
    from safetensors import safe_open

    from mllmcl.continual.inference import Request, RoutedModel
    from mllmcl.continual.router import train_router

    other = toy.build_base(tmp_path / "other-base", hidden=96, layers=3)
    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    paths = ProjectPaths(root)
    params = toy.params(base={"build": "none", "name_or_path": str(other)}, expert={"steps": 10}, router={"steps": 10})
    for task in toy.TASKS:
        _train(paths, task, params)
    train_router(list(toy.TASKS), params, base_dir=paths.base, tasks_dir=paths.tasks_dir, out_dir=paths.router)
    with safe_open(str(paths.expert("colour") / "adapter_model.safetensors"), framework="pt") as f:
        widths = {f.get_slice(k).get_shape()[-1] for k in f.keys() if "lora_A" in k and "q_proj" in k}  # noqa: SIM118
    assert widths == {96}  # the expert was trained on the swapped base, not the project's own
    model = RoutedModel(str(other), paths.experts, paths.router)
    assert model.model.base_model.model.config.text_config.hidden_size == 96
    pred = model.predict([Request("what is the opposite of up?")])[0]
    assert isinstance(pred.answer, str) and 0.0 <= pred.confidence <= 1.0


def _requests(toy_root: Path, per_task: int = 4):
    from mllmcl.continual.inference import Request
    from mllmcl.model.batching import open_image

    out = []
    for task in toy.TASKS:
        folder = toy_root / "data/tasks" / task
        for line in (folder / "test.jsonl").read_text().splitlines()[:per_task]:
            r = json.loads(line)
            out.append(Request(r["question"], open_image(folder / r["image"]), r["id"]))
    out.append(Request("what is the opposite of hot?", None, "text"))
    return out


def test_mixed_adapter_batch_answers_as_one_pass_per_expert(trained, toy_root):
    from mllmcl.continual.inference import RoutedModel

    model = RoutedModel.from_dir(toy_root / "models")
    requests = _requests(toy_root)
    mixed, grouped = model.predict(requests), model.predict_grouped(requests)
    assert {p.expert for p in mixed} >= {"colour", "where"}  # the batch really mixes experts
    assert [(p.answer, p.expert) for p in mixed] == [(p.answer, p.expert) for p in grouped]
    for p in mixed:
        assert p.question_embedding and len(p.question_embedding) <= 64
        assert (p.image_embedding is None) == (p.id == "text")


def test_open_set_sends_an_unseen_kind_of_image_to_the_base(trained, toy_root):
    from PIL import Image, ImageDraw

    from mllmcl.continual.inference import Request, RoutedModel

    stats = json.loads((toy_root / "models/router/router_stats.json").read_text())["open_set"]
    assert stats["enabled"] and stats["fit_images"] > 0 and stats["calibration_images"] > 0
    model = RoutedModel.from_dir(toy_root / "models")
    known = [p for p in model.predict(_requests(toy_root, per_task=8)) if p.id != "text"]
    assert sum(p.known for p in known) >= 0.8 * len(known)
    novel = []
    for i in range(12):  # stripes of text-like ink on white paper: nothing like a square on a dark background
        img = Image.new("RGB", (64, 64), (250, 250, 245))
        draw = ImageDraw.Draw(img)
        for y in range(4 + i % 3, 64, 9):
            draw.line([(3, y), (60, y)], fill=(10 * i, 20, 30), width=2)
        novel.append(Request("how many lines of text are there?", img, f"novel-{i}"))
    flagged = model.predict(novel)
    assert sum(not p.known and p.expert == "base" for p in flagged) >= 11, [(p.expert, p.novelty) for p in flagged]
    assert min(p.novelty for p in flagged) > max(p.novelty for p in known)
    # a learned task in a new look (the ability track's shifted renders): the toy's square on tinted backgrounds it was
    # never shown, asked the colour question. The image is novel, the question is known: its expert answers, and the
    # request is still flagged for drift monitoring.
    tinted = []
    for i in range(12):
        img = Image.new("RGB", (64, 64), (44 + 4 * i, 34 + 4 * i, 64 + 4 * i))
        ImageDraw.Draw(img).rectangle([8 + 2 * i, 20, 27 + 2 * i, 39], fill=list(toy.COLOURS.values())[i % 3])
        tinted.append(Request("what colour is the square?", img, f"tinted-{i}"))
    asked = model.predict(tinted)
    shifted = [p for p in asked if p.novelty > model.router.open_set.threshold]
    assert len(shifted) >= 8 and all(p.expert == "colour" and not p.known for p in shifted), [
        (p.expert, p.known, p.novelty) for p in asked
    ]


def test_a_router_retraining_reuses_the_bases_image_embeddings_and_refuses_stale_ones(trained, toy_root, tmp_path):
    """The open-set profile is fitted on the frozen base's image embeddings: a later retraining reads them from the
    cache instead of embedding every image again, gets the same profile, and a cache that disagrees with the model
    (a changed base, a poisoned file) is thrown away rather than trusted."""
    import numpy as np

    from mllmcl.continual.embedding_cache import EmbeddingCache, base_key
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.continual.router import fit_open_set

    params = toy.params(router={"steps": 150, "lr": 3e-3})
    router = RoutedModel.from_dir(toy_root / "models").router
    tasks, tasks_dir = list(toy.TASKS), toy_root / "data/tasks"
    key = base_key(str(toy_root / "models/base"))
    fresh, s0 = fit_open_set(router, tasks, tasks_dir, params.router)
    first, s1 = fit_open_set(router, tasks, tasks_dir, params.router, EmbeddingCache(tmp_path, key))
    again, s2 = fit_open_set(router, tasks, tasks_dir, params.router, EmbeddingCache(tmp_path, key))
    total = s0["embeddings_computed"]
    assert total > 0 and (s1["embeddings_cached"], s1["embeddings_computed"]) == (0, total)
    assert (s2["embeddings_cached"], s2["embeddings_computed"]) == (total, 0)
    for profile in (first, again):
        assert np.allclose(profile.means, fresh.means, atol=1e-5) and abs(profile.threshold - fresh.threshold) < 1e-4

    for shard in (tmp_path / key).glob("*.npz"):  # a stale cache: every vector moved
        with np.load(shard) as z:
            keys, vectors = z["keys"], z["vectors"]
        np.savez(shard, keys=keys, vectors=vectors + 1.0)
    healed, s3 = fit_open_set(router, tasks, tasks_dir, params.router, EmbeddingCache(tmp_path, key))
    assert (s3["embeddings_cached"], s3["embeddings_computed"]) == (0, total)
    assert np.allclose(healed.means, fresh.means, atol=1e-5)
