"""Router kinds behind one interface on the toy project: the prototype routes by the base's own features with no
adapter and no training steps, the cascade asks its MLLM router exactly where the prototype is unsure, routing
thresholds are read when answering (no retraining), and a registry version answers with the thresholds it was
gated with."""

from __future__ import annotations

import json
import shutil

import pytest

from mllmcl.config import RoutingConfig
from mllmcl.paths import ProjectPaths
from tests import toy


@pytest.fixture(scope="module")
def kinds(toy_root, tmp_path_factory):
    """One project, experts barely trained (routing does not need them to answer well), and a router of each kind:
    `prototype` trained for real, `cascade` trained for real (its MLLM router: 300 steps at 3e-3, as the toy
    router of test_experts_router), and `mllm`: the cascade's own adapter and profiles read as an MLLM router."""
    from mllmcl.continual.router import train_router

    root = tmp_path_factory.mktemp("kinds")
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    paths = ProjectPaths(root)
    for task in toy.TASKS:
        toy.train_one_expert(paths, task, toy.params(expert={"steps": 5}))
    stats, folders = {}, {}
    for kind in ("prototype", "cascade"):
        params = toy.params(router={"steps": 300, "lr": 3e-3, "kind": kind})
        folders[kind] = root / "routers" / kind
        stats[kind] = train_router(
            list(toy.TASKS),
            params,
            base_dir=paths.base,
            tasks_dir=paths.tasks_dir,
            out_dir=folders[kind],
            progress=False,
        )
    folders["mllm"] = root / "routers" / "mllm"
    shutil.copytree(folders["cascade"], folders["mllm"])
    pool = json.loads((folders["mllm"] / "pool.json").read_text())
    (folders["mllm"] / "pool.json").write_text(json.dumps({**pool, "kind": "mllm"}))
    return {"root": root, "paths": paths, "stats": stats, "folders": folders}


def _model(kinds, kind: str, **routing):
    from mllmcl.continual.inference import RoutedModel

    paths = kinds["paths"]
    return RoutedModel(str(paths.base), paths.experts, kinds["folders"][kind], routing=RoutingConfig(**routing))


def _held_out(kinds):
    from mllmcl.continual.router import held_out_set, labelled_request

    tasks_dir = kinds["paths"].tasks_dir
    held = held_out_set(list(toy.TASKS), tasks_dir, toy.params().router, 16)
    return [label for label, _ in held], [labelled_request(label, rec, tasks_dir) for label, rec in held]


def test_the_prototype_routes_without_an_adapter_or_a_training_step(kinds):
    folder, stats = kinds["folders"]["prototype"], kinds["stats"]["prototype"]
    assert not (folder / "adapter_model.safetensors").exists() and "steps" not in stats
    assert stats["kind"] == "prototype" and stats["mllm_share"] == 0.0
    assert stats["accuracy"] >= 0.95 and stats["base_routing_accuracy"] == 1.0, stats["confusion"]
    assert stats["router_seconds"] < kinds["stats"]["cascade"]["router_seconds"] / 3  # no decoder pass, no training


@pytest.mark.parametrize("kind", ["mllm", "prototype", "cascade"])
def test_each_kind_routes_the_toy_requests_right(kinds, kind):
    labels, requests = _held_out(kinds)
    routes = _model(kinds, kind).router.route(requests)
    right = sum(route.task == label for label, route in zip(labels, routes))
    assert right / len(labels) >= 0.9, [(label, r.task, r.raw) for label, r in zip(labels, routes)]


def test_the_cascade_asks_the_mllm_router_exactly_where_the_prototype_is_unsure(kinds):
    labels, requests = _held_out(kinds)
    prototype = _model(kinds, "prototype").router.route(requests)
    posteriors = sorted(r.confidence for (image, _), r in zip(requests, prototype) if image is not None)
    cut = posteriors[len(posteriors) // 2]  # about half the image requests are "unsure" at this confidence
    cascade = _model(kinds, "cascade", cascade_confidence=cut)
    routes = cascade.router.route(requests)
    expected = {i for i, ((image, _), r) in enumerate(zip(requests, prototype)) if image is None or r.confidence < cut}
    assert {i for i, r in enumerate(routes) if r.by == "mllm"} == expected and 0 < len(expected) < len(requests)
    assert cascade.router.asked == len(expected) and cascade.router.routed == len(requests)
    for i, r in enumerate(routes):
        if i not in expected:
            assert (r.task, r.confidence) == (prototype[i].task, prototype[i].confidence)


def test_a_routing_threshold_is_read_when_answering_and_never_retrains(kinds):
    folder = kinds["folders"]["mllm"]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    labels, requests = _held_out(kinds)
    text_only = [i for i, (image, _) in enumerate(requests) if image is None]
    asked = _model(kinds, "mllm").router.route(requests)
    skipped = _model(kinds, "mllm", text_only_to_base=True).router.route(requests)
    assert text_only and all("sent to base" not in asked[i].raw for i in text_only)  # the router read them
    assert all(skipped[i].raw == "(text-only: sent to base)" for i in text_only)  # not asked at all now
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_registry_version_answers_with_the_thresholds_it_was_gated_with():
    from mllmcl.serving.models import gated_routing

    judged = {"candidate": "v-1", "files": [], "routing": [["min_confidence", 0.8], ["cascade_confidence", 0.7]]}
    manifest = {"version": "v-1", "eval": {"judged": judged}, "params": {"routing": {"min_confidence": 0.1}}}
    assert gated_routing(manifest) == RoutingConfig(min_confidence=0.8, cascade_confidence=0.7)  # not the params
    assert gated_routing({"version": "v-0", "params": {}}) is None  # older: its router folder keeps them


def test_an_older_params_file_is_told_where_the_thresholds_went():
    from mllmcl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"router.min_confidence moved to routing.min_confidence \(read when answ"):
        toy.params(router={"min_confidence": 0.5})


def test_evaluation_reports_the_kind_and_the_share_that_asked_the_mllm_router(kinds, tmp_path):
    from mllmcl.continual.evaluation import evaluate_system

    paths, shares = kinds["paths"], {}
    for kind in ("mllm", "prototype", "cascade"):
        result = evaluate_system(
            _model(kinds, kind, cascade_confidence=0.0),  # the cascade asks only for the text-only requests
            list(toy.TASKS),
            tasks_dir=paths.tasks_dir,
            predictions_dir=tmp_path / kind,
            experts_dir=paths.experts,
            max_per_task=8,
        )
        assert result.router_kind == kind
        shares[kind] = result.mllm_share
    from mllmcl.data.records import read_records

    language = min(8, len(read_records(paths.tasks_dir / "language" / "test.jsonl")))  # its text-only requests
    assert shares == {"mllm": 1.0, "prototype": 0.0, "cascade": round(language / (8 * len(toy.TASKS) + language), 4)}
