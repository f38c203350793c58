"""The LoRA-FT baseline (one shared adapter trained task after task) beside the isolated experts."""

from __future__ import annotations

import json
import shutil

import pytest

from tests import toy


@pytest.mark.slow
def test_one_shared_adapter_forgets_the_first_task(toy_root, tmp_path):
    """LoRA-FT, the baseline MR-LoRA must beat: after learning `where`, the shared adapter has lost `colour`."""
    from mllmcl.continual.baselines import sequential_lora

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    seen = []
    result = sequential_lora(
        list(toy.TASKS),
        toy.params(expert={"lr": 3e-3}),
        base_dir=root / "models/base",
        tasks_dir=root / "data/tasks",
        steps=150,
        progress=False,
        on_stage=lambda stage, row: seen.append(stage),
    )
    a = result["matrix"]
    assert seen == [0, 1]
    assert a[0][1] is None and all(v is not None for v in (a[0][0], a[1][0], a[1][1]))
    assert a[0][0] >= 0.5, a  # colour was learned (4 colours: chance 0.25)...
    assert a[1][0] <= a[0][0] - 0.2, a  # ...and forgotten once the same adapter learned `where`
    assert result["BWT"] <= -0.2 and result["forgetting"][0] >= 0.2
    assert not (root / "models/experts").exists()  # a baseline never touches the pipeline's experts


def test_isolated_methods_name_the_evaluation_behind_every_cell(tmp_path):
    from mllmcl.continual.baselines import isolated_rows, unmeasured_cells

    for task, (base, expert) in {"a": (0.1, 0.9), "b": (0.2, 0.8)}.items():
        folder = tmp_path / "models/experts" / task
        folder.mkdir(parents=True)
        (folder / "train_stats.json").write_text(json.dumps(_stats(task, base, expert)))
    rows = isolated_rows(["a", "b"], tmp_path / "models/experts")
    assert rows["oracle_experts"]["matrix"] == [[0.9, None], [0.9, 0.8]]
    assert rows["zero_shot_base"]["matrix"][-1] == [0.1, 0.2]
    assert "experts/a/train_stats.json expert_accuracy" in rows["oracle_experts"]["cells"][1][0]
    assert "experts/b/train_stats.json base_accuracy" in rows["zero_shot_base"]["cells"][1][1]
    assert unmeasured_cells({"methods": rows}) == []
    # a filled cell that no evaluation produced is caught, whatever its value
    rows["oracle_experts"]["cells"][1][0] = None
    assert unmeasured_cells({"methods": rows}) == ["oracle_experts[1][0]"]


def test_with_a_test_limit_oracle_and_zero_shot_are_scored_on_the_same_records_as_the_routed_methods(tmp_path):
    """--quick scores routed and shared-adapter methods on the first N test records; the bounds they are judged
    against must be scored on those records too, not read from the experts' whole-split stats."""
    from peft import PeftModel

    from mllmcl.continual.baselines import isolated_rows, unmeasured_cells
    from mllmcl.data.records import read_records
    from mllmcl.model.generation import score_records
    from mllmcl.model.loading import Prompting, load_base
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    toy.make_project(root)
    params = toy.params(expert={"steps": 20, "lr": 3e-3, "validation_size": 0})
    paths = ProjectPaths(root)
    for task in toy.TASKS:
        toy.train_one_expert(paths, task, params)
    rows = isolated_rows(
        list(toy.TASKS), paths.experts, params=params, base_dir=paths.base, tasks_dir=paths.tasks_dir, test_limit=5
    )
    assert unmeasured_cells({"methods": rows}) == []
    for j, task in enumerate(toy.TASKS):
        folder = paths.tasks_dir / task
        records = read_records(folder / "test.jsonl")
        assert len(records) > 5
        base, processor = load_base(str(paths.base))
        prompting = Prompting.for_model(base, processor)
        base_alone = score_records(base, prompting, records[:5], folder)[0]
        expert = PeftModel.from_pretrained(base, str(paths.expert(task)))
        expert_alone = score_records(expert, prompting, records[:5], folder)[0]
        assert rows["oracle_experts"]["matrix"][-1][j] == expert_alone
        assert rows["zero_shot_base"]["matrix"][-1][j] == base_alone
        assert "first 5 test records" in rows["oracle_experts"]["cells"][-1][j]


def test_the_bounds_scored_once_per_seed_follow_each_task_order():
    from mllmcl.continual.benchmark_run import _isolated_in_order

    rows = {
        "matrix": [[0.9, None, None], [0.9, 0.5, None], [0.9, 0.5, 0.7]],
        "cells": [["a", None, None], ["a", "b", None], ["a", "b", "c"]],
        "latency_ms": 2.0,
    }
    again = _isolated_in_order(rows, ["a", "b", "c"], ["c", "a", "b"])
    assert again["matrix"] == [[0.7, None, None], [0.7, 0.9, None], [0.7, 0.9, 0.5]]
    assert again["cells"][-1] == ["c", "a", "b"] and again["latency_ms"] == 2.0


@pytest.mark.slow
def test_mr_lora_is_measured_stage_by_stage_with_a_router_per_stage(tmp_path):
    """Stage 1 gets a router trained on task 1's replay alone, stage 2 reuses the DAG's router; each row is its own
    routed evaluation, and a second run reuses the stage-1 router instead of training it again."""
    from mllmcl.continual.baselines import mr_lora_stages, ncm_stages, unmeasured_cells
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    toy.make_project(root)
    params = toy.params(expert={"steps": 60, "lr": 3e-3}, router={"steps": 60, "lr": 3e-3})
    toy.train_models(root, params)
    paths = ProjectPaths(root)
    dag_router = (paths.router / "adapter_model.safetensors").read_bytes()
    rows = []
    result = mr_lora_stages(list(toy.TASKS), params, paths, progress=False, on_stage=lambda t, row: rows.append(t))
    a = result["matrix"]
    assert rows == [0, 1] and a[0][1] is None and all(v is not None for v in (a[0][0], a[1][0], a[1][1]))
    first, second = result["per_stage"]
    assert first["tasks"] == ["colour"] and not first["router_reused"] and first["router"].startswith(".cache/")
    assert second["router_reused"] and second["router"] == "models/router"
    assert first["language_accuracy"] is not None and first["language_base_accuracy"] is not None
    assert unmeasured_cells({"methods": {"mr_lora": result}}) == []
    assert result["cells"][0][0] != result["cells"][1][0]  # row 1 and row 2 of `colour`: two evaluations
    stage_one = paths.benchmark_work / "routers"
    trained = sorted(p.name for p in stage_one.iterdir())
    assert len(trained) == 1 and trained[0].startswith("1-")
    again = mr_lora_stages(list(toy.TASKS), params, paths, progress=False)
    assert again["per_stage"][0]["router_seconds"] < first["router_seconds"] / 2  # reused, not trained again
    assert again["matrix"] == a
    assert (paths.router / "adapter_model.safetensors").read_bytes() == dag_router  # the DAG's router untouched

    # the ablation: the same experts, routed by the nearest mean of the base's image embeddings (no router training)
    ncm = ncm_stages(list(toy.TASKS), params, paths)
    one, two = ncm["per_stage"]
    assert one["router_accuracy"] == 1.0  # one mean: every image request goes to the only expert
    assert one["language_accuracy"] == one["language_base_accuracy"]  # text-only requests go to the plain base
    assert ncm["matrix"][0][1] is None and None not in ncm["matrix"][1] and 0.0 <= two["router_accuracy"] <= 1.0
    assert unmeasured_cells({"methods": {"ncm": ncm}}) == []


def _stats(task, base, expert) -> dict:
    training = {
        "steps": 1,
        "resumed_from_step": 0,
        "seconds": 1.0,
        "seconds_per_step": 1.0,
        "final_loss": 0.1,
        "examples": 1,
        "config": {},
    }
    return {
        **training,
        "task": task,
        "base_accuracy": base,
        "expert_accuracy": expert,
        "train_seconds": 1.0,
        "trainable_params": 1,
        "n_test": 1,
    }


def test_soft_targets_spread_the_models_own_loss_over_the_vocabulary(toy_root):
    """mSGM's label smoothing: at 0 it is the model's own next-token loss; at alpha it is (1 - alpha) x that loss plus
    alpha x the mean negative log-probability over the vocabulary, on the answer tokens only."""
    import torch

    from mllmcl.data.records import read_records
    from mllmcl.model.batching import collate, encode_records
    from mllmcl.model.loading import Prompting, load_base
    from mllmcl.model.prefix import full_loss, smoothed_loss

    model, processor = load_base(str(toy_root / "models/base"))
    prompting = Prompting.for_model(model, processor)
    folder = toy_root / "data/tasks/colour"
    items = encode_records(prompting, read_records(folder / "train.jsonl")[:4], folder, with_answers=True)
    pad = prompting.tokenizer.pad_token_id
    with torch.no_grad():
        own = float(full_loss(model, items, pad))
        assert float(full_loss(model, items, pad, label_smoothing=0.0)) == own
        batch = collate(items, pad)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        assert abs(float(smoothed_loss(logits, labels, 0.0)) - own) < 1e-5
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = labels[:, 1:]
        mask = target != -100
        nll = -logp.gather(-1, target.clamp(min=0)[..., None])[..., 0][mask].mean()
        uniform = -logp.mean(dim=-1)[mask].mean()
        alpha = 0.1
        expected = (1 - alpha) * nll + alpha * uniform
        assert abs(float(full_loss(model, items, pad, label_smoothing=alpha)) - float(expected)) < 1e-4


@pytest.mark.slow
def test_replay_msgm_and_joint_train_on_what_they_say_and_measure_every_cell_they_fill(toy_root, tmp_path):
    """The replay memory holds the stated records of every earlier task and joins the next stage's data; mSGM is the
    same loop on soft targets; joint LoRA trains once on all tasks with one expert's budget per task and fills only the
    final row. Every method reports the text-only suite; no filled cell lacks an evaluation."""
    from mllmcl.continual.baselines import compare, unmeasured_cells
    from mllmcl.continual.experts import split_validation
    from mllmcl.data.records import read_records
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    paths = ProjectPaths(root)
    with pytest.raises(ValueError, match="unknown benchmark methods"):
        compare(list(toy.TASKS), toy.params(), paths, methods=["ewc"])
    seen = []
    result = compare(
        list(toy.TASKS),
        toy.params(expert={"lr": 3e-3}),
        paths,
        steps=8,
        methods=["msgm_replay", "joint"],
        replay_per_task=5,
        progress=False,
        on_stage=lambda method, stage, row: seen.append((method, stage)),
    )
    assert list(result["methods"]) == ["msgm_replay", "joint"]
    assert seen == [("msgm_replay", 0), ("msgm_replay", 1), ("joint", 1)]
    msgm, joint = result["methods"]["msgm_replay"], result["methods"]["joint"]
    colour, where = (  # the training records left after the experts' validation split
        len(
            split_validation(
                read_records(root / f"data/tasks/{t}/train.jsonl"), toy.params().expert.validation_size, t
            )[0]
        )
        for t in toy.TASKS
    )
    first, second = msgm["per_stage"]
    assert (first["train_examples"], first["memory_records"]) == (colour, 5)
    assert (second["train_examples"], second["memory_records"]) == (where + 5, 10)
    assert msgm["label_smoothing"] == 0.01 and msgm["replay_per_task"] == 5
    assert all(s["language_accuracy"] is not None for s in msgm["per_stage"])
    assert first["language_base_accuracy"] is not None
    assert joint["steps"] == 16 and joint["per_stage"][0]["train_examples"] == colour + where
    assert joint["per_stage"][0]["language_base_accuracy"] == first["language_base_accuracy"]
    assert joint["matrix"][0] == [None, None] and None not in joint["matrix"][1]
    assert joint["MFN"] is not None and joint["BWT"] is None and joint["MFT"] is None
    assert unmeasured_cells(result) == []
    assert not (root / "models/experts").exists()


class _Killed(Exception):
    """Stands in for the process being killed between two units."""


@pytest.mark.slow
def test_a_benchmark_over_seeds_and_orders_resumes_where_it_was_killed(toy_root, tmp_path):
    """Two seeds x two task orders: experts are trained per seed, every figure becomes mean +- std over the four runs,
    costs are measured, and a run killed after its second trained unit continues from there: the units it finished are
    read back, not trained again, and a third run trains nothing at all."""
    from mllmcl.continual.baselines import unmeasured_cells
    from mllmcl.continual.benchmark_report import render_markdown, write_reports
    from mllmcl.continual.benchmark_run import BenchmarkSettings, run_benchmark
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    paths = ProjectPaths(root)
    params = toy.params(expert={"lr": 3e-3})
    methods = ("zero_shot_base", "oracle_experts", "lora_ft", "joint")
    settings = BenchmarkSettings(track="toy", tasks=toy.TASKS, methods=methods, seeds=2, orders=2, steps=6)

    trained = []

    def kill_after_two(unit):
        if not unit["reused"] and unit["method"] in ("lora_ft", "joint"):
            trained.append(unit)
            if len(trained) == 2:
                raise _Killed

    with pytest.raises(_Killed):
        run_benchmark(settings, params, paths, progress=False, on_unit=kill_after_two)
    units = []
    result = run_benchmark(settings, params, paths, progress=False, on_unit=units.append)
    assert len(units) == 2 * 2 * len(methods)
    first_two = [(u["method"], u["seed"], u["order"]) for u in trained]
    again = {(u["method"], u["seed"], tuple(u["order"])): u["reused"] for u in units}
    assert all(again[(m, s, tuple(o))] for m, s, o in first_two)  # finished before the kill: read back
    assert not again[("lora_ft", 1, toy.TASKS)]  # never reached before the kill: trained now
    # joint training has no order: its second order in a seed reuses the first's run
    assert again[("joint", 0, tuple(reversed(toy.TASKS)))]

    assert [r["tasks"] for r in result["runs"]] == [list(toy.TASKS), list(reversed(toy.TASKS))] * 2
    assert [r["seed"] for r in result["runs"]] == [0, 0, 1, 1]
    figures = result["aggregate"]["lora_ft"]
    assert figures["MFN"]["n"] == 4 and figures["MFN"]["std"] is not None and figures["BWT"]["n"] == 4
    assert result["aggregate"]["joint"]["BWT"]["n"] == 0  # not defined without a sequence: left out, not zero
    for run in result["runs"]:
        assert unmeasured_cells(run) == []
    experts = sorted((paths.benchmark_work / "experts").iterdir())
    assert len(experts) == 2  # one set of experts per seed
    seeds = {json.loads((e / "colour/train_stats.json").read_text())["config"]["seed"] for e in experts}
    assert len(seeds) == 2
    lora = result["methods"]["lora_ft"]
    assert lora["adapter_bytes"] > 0 and lora["latency_ms"] > 0 and lora["train_seconds"] > 0
    oracle = result["methods"]["oracle_experts"]
    assert oracle["adapter_bytes"] == 2 * lora["adapter_bytes"]  # two experts of the same shape as one shared adapter
    assert (
        result["methods"]["zero_shot_base"]["latency_ms"] > 0
        and result["methods"]["zero_shot_base"]["adapter_bytes"] == 0
    )
    assert lora["language_accuracy"] is not None and lora["linguistic_drop"] is not None

    units.clear()
    again = run_benchmark(settings, params, paths, progress=False, on_unit=units.append)
    assert all(u["reused"] for u in units if u["method"] in ("lora_ft", "joint"))
    assert again["aggregate"] == result["aggregate"]

    written = write_reports(result, paths.benchmark_reports / "toy")
    assert [p.suffix for p in written] == [".json", ".md", ".html", ".png"]
    md = render_markdown(result)
    assert "LoRA-FT (one shared adapter)" in md and " ± " in md and "4 run(s): 2 seed(s) x 2 task order(s)" in md
    page = written[2].read_text()
    assert page.count("data:image/png") >= len(methods) + 2 and "http" not in page


def test_kept_units_in_a_folder_of_their_own_need_no_models_on_another_machine(toy_root, tmp_path):
    """A grid kept with --units (a tracked folder) is read back on a machine that has none of the run's models: with
    .cache/benchmark gone no expert is trained again and every figure is the same; a new seed trains only its own."""
    from mllmcl.continual.benchmark_run import BenchmarkSettings, run_benchmark
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    paths = ProjectPaths(root)
    params = toy.params(expert={"lr": 3e-3})
    kept = tmp_path / "tracked-units"
    methods = ("zero_shot_base", "oracle_experts", "lora_ft")
    settings = BenchmarkSettings(track="toy", tasks=toy.TASKS, methods=methods, steps=6, units_dir=kept)
    first = run_benchmark(settings, params, paths, progress=False)
    assert sorted(p.name.split("-")[0] for p in kept.iterdir()) == ["bounds", "lora_ft"]
    assert not (paths.benchmark_work / "units").exists()  # the units went to the folder asked for

    shutil.rmtree(paths.benchmark_work)  # another machine, another session: no experts, no routers
    # ...whose own build of the same base wrote another record (it took another time to pretrain)
    (paths.base / "base.json").write_text(json.dumps({"build": "tiny", "pretrain_seconds": 12345.6}))
    units = []
    again = run_benchmark(settings, params, paths, progress=False, on_unit=units.append)
    assert all(u["reused"] for u in units) and len(units) == len(methods)
    assert not (paths.benchmark_work / "experts").exists()  # nothing was trained to read them back
    assert again["aggregate"] == first["aggregate"] and again["runs"] == first["runs"]
    assert len(first["settings"]["base"]["sha256"]) == 64 and again["settings"]["base"] == first["settings"]["base"]

    wider = BenchmarkSettings(track="toy", tasks=toy.TASKS, methods=methods, steps=6, seeds=2, units_dir=kept)
    units.clear()
    grown = run_benchmark(wider, params, paths, progress=False, on_unit=units.append)
    assert {(u["seed"], u["reused"]) for u in units} == {(0, True), (1, False)}
    assert [p.name for p in (paths.benchmark_work / "experts").iterdir()] != []  # seed 1's experts only
    assert len(list((paths.benchmark_work / "experts").iterdir())) == 1
    assert grown["runs"][0] == first["runs"][0]


def test_the_base_is_known_by_its_weights_not_by_how_long_it_took_to_build(toy_root, tmp_path):
    """Kept benchmark results are keyed by the base's bytes: a rebuild that took another time is the same base, one
    changed weight is another, and the report names the digest it was measured on."""
    from mllmcl.continual.benchmark_report import render_markdown
    from mllmcl.model.loading import base_identity

    params = toy.params()
    base = tmp_path / "base"
    shutil.copytree(toy_root / "models/base", base)
    first = base_identity(params.base, base)
    assert base_identity(params.base, toy_root / "models/base") == first  # where it lies is no part of it
    (base / "base.json").write_text("{}")
    assert base_identity(params.base, base) == first
    weights = next(base.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert base_identity(params.base, base)["sha256"] != first["sha256"]
    hub = params.base.model_copy(update={"build": "none", "name_or_path": "org/some-vlm"})
    assert base_identity(hub, base) == {"build": "none", "name_or_path": "org/some-vlm"}

    result = {"tasks": ["a"], "methods": {}, "settings": {"base": first}}
    assert f"weights sha256 {first['sha256'][:12]}" in render_markdown(result)
    assert "base not recorded" in render_markdown({"tasks": ["a"], "methods": {}, "settings": {}})


def test_two_workers_measure_what_one_process_measures_and_keep_every_unit(toy_root, tmp_path):
    """--workers 2: experts, stage routers and units trained in two processes at once give the figures one process
    gives, and leave every unit kept, so the run that reports trains nothing; shared-adapter methods alone train no
    expert at all."""
    from mllmcl.continual.benchmark_run import BenchmarkSettings, run_benchmark
    from mllmcl.paths import ProjectPaths

    def project(name):
        root = tmp_path / name
        shutil.copytree(toy_root / "data", root / "data")
        shutil.copytree(toy_root / "models/base", root / "models/base")
        return ProjectPaths(root)

    params = toy.params(expert={"lr": 3e-3})  # compute.threads 1: each worker and the single process alike
    methods = ("zero_shot_base", "oracle_experts", "mr_lora", "lora_ft", "joint")
    settings = BenchmarkSettings(track="toy", tasks=toy.TASKS, methods=methods, steps=6, router_steps=10)

    one = project("one")
    run_benchmark(
        BenchmarkSettings(track="toy", tasks=toy.TASKS, methods=("lora_ft",), steps=6), params, one, progress=False
    )
    assert not (one.benchmark_work / "experts").exists()
    sequential = run_benchmark(settings, params, one, progress=False)

    two = project("two")
    jobs, read_back = [], []
    parallel = run_benchmark(
        settings, params, two, progress=False, workers=2, on_job=jobs.append, on_unit=read_back.append
    )
    assert len(read_back) == len(methods) and all(u["reused"] for u in read_back)  # the workers measured every unit
    routers = sorted(p.name for p in (two.benchmark_work / "routers").iterdir())
    assert len(routers) == 2 and not [r for r in routers if "partial" in r]  # one per stage, none trained twice
    (experts,) = (two.benchmark_work / "experts").iterdir()
    assert sorted(p.name for p in experts.iterdir()) == sorted(toy.TASKS)
    a, b = toy.TASKS
    assert sorted(j["job"] for j in jobs) == sorted(
        [f"seed 0: expert {a}", f"seed 0: expert {b}", f"seed 0: router over {a}", f"seed 0: router over {a} {b}"]
        + [f"seed 0: {m} on {a} -> {b}" for m in ("bounds", "mr_lora", "lora_ft", "joint")]
    )
    assert [j["done"] for j in jobs] == list(range(1, 9)) and {j["of"] for j in jobs} == {8}
    units = []
    again = run_benchmark(settings, params, two, progress=False, on_unit=units.append)
    assert all(u["reused"] for u in units) and len(units) == len(methods)
    for method in methods:
        for key in ("matrix", "cells", "language_accuracy", "router_accuracy"):
            assert parallel["methods"][method].get(key) == sequential["methods"][method].get(key), (method, key)
        assert again["methods"][method]["matrix"] == parallel["methods"][method]["matrix"]
