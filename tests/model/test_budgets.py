"""Training budgets that fit the task: a validation split held out of the training records, early stopping that keeps
the best check's weights, and a task's own expert settings from its spec."""

from __future__ import annotations

import json
import shutil

import pytest

from tests import toy


def _toy_model(toy_root):
    from mllmcl.data.records import read_records
    from mllmcl.model.adapters import lora_config, new_adapter
    from mllmcl.model.batching import encode_records
    from mllmcl.model.loading import Prompting, load_base

    params = toy.params()
    model, processor = load_base(str(toy_root / "models/base"))
    prompting = Prompting.for_model(model, processor)
    folder = toy_root / "data/tasks/colour"
    examples = encode_records(prompting, read_records(folder / "train.jsonl"), folder, with_answers=True)
    peft = new_adapter(model, lora_config(params.expert, model, role="expert"), seed=0)
    return params, peft, prompting, examples


def test_early_stopping_stops_after_patience_checks_and_keeps_the_best_checks_weights(toy_root):
    """Scripted validation scores 0.2, 0.5, 0.4, 0.3 at steps 5..20 with patience 2: the run stops at step 20 of 60 and
    its weights are those it had at step 10, not at step 20."""
    import torch

    from mllmcl.model.training import EarlyStopping, _trainable, train

    params, peft, prompting, examples = _toy_model(toy_root)
    scores = iter([0.2, 0.5, 0.4, 0.3, 0.9, 0.9])
    at_step: dict[int, dict] = {}

    def snapshot(step, loss):
        if step + 1 in (10, 20):
            at_step[step + 1] = {n: p.detach().clone() for n, p in _trainable(peft)}

    stats = train(
        peft,
        examples,
        params.expert.model_copy(update={"steps": 60, "checkpoint_every": 0}),
        pad_id=prompting.tokenizer.pad_token_id,
        progress=False,
        on_step=snapshot,
        early_stopping=EarlyStopping(score=lambda: next(scores), every=5, patience=2),
    )
    assert stats.validation == [[5, 0.2], [10, 0.5], [15, 0.4], [20, 0.3]]
    assert (stats.best_step, stats.stopped_at, stats.steps) == (10, 20, 60)
    kept = dict(_trainable(peft))
    assert all(torch.equal(kept[n], p) for n, p in at_step[10].items())
    assert not all(torch.equal(kept[n], p) for n, p in at_step[20].items())


def test_the_validation_split_holds_out_whole_images_and_at_most_a_tenth(toy_root):
    from mllmcl.continual.experts import split_validation
    from mllmcl.data.records import read_records

    records = read_records(toy_root / "data/tasks/colour/train.jsonl")
    doubled = records + [{**r, "id": r["id"] + "-again", "question": "which colour?"} for r in records]
    train, held = split_validation(doubled, 200, "colour")
    assert 0 < len(held) <= len(doubled) // 10 + 1 and len(train) + len(held) == len(doubled)
    assert {r["image"] for r in train}.isdisjoint({r["image"] for r in held})  # both questions of an image together
    assert split_validation(doubled, 200, "colour") == (train, held)  # the same split every time
    assert split_validation(records, 0, "colour") == (records, [])


@pytest.mark.slow
def test_a_tasks_spec_sets_its_own_expert_budget_and_the_expert_records_the_step_it_kept(toy_root, tmp_path):
    """`expert: {steps: 30, eval_every: 10}` in a task's spec reaches its meta.json and only its expert: the expert
    trains 30 steps (params say 40), checks its validation split every 10 and records the step it kept."""
    from mllmcl.config.schema import DataConfig
    from mllmcl.continual.experts import ExpertStats
    from mllmcl.data.ingest import ingest_task
    from mllmcl.paths import ProjectPaths

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    shutil.copytree(toy_root / "models/base", root / "models/base")
    raw = root / "data/raw/count"
    raw.mkdir(parents=True)
    (raw / "spec.yaml").write_text("generator: count\nexpert: {steps: 30, eval_every: 10, patience: 0}\n")
    meta = ingest_task("count", DataConfig(train_size=60, test_size=12), raw_dir=raw, out_dir=root / "data/tasks/count")
    assert meta["expert"] == {"steps": 30, "eval_every": 10, "patience": 0}
    paths = ProjectPaths(root)
    toy.train_one_expert(paths, "count", toy.params(expert={"lr": 3e-3}))
    stats = ExpertStats.read(paths.expert("count"))
    assert stats.training.steps == 30 and stats.overrides == meta["expert"]
    assert [s for s, _ in stats.training.validation] == [10, 20, 30] and stats.n_validation == 6
    best = max(stats.training.validation, key=lambda c: c[1])
    assert stats.training.best_step == next(s for s, v in stats.training.validation if v == best[1])
    saved = json.loads((paths.expert("count") / "train_stats.json").read_text())
    assert saved["best_step"] == stats.training.best_step and saved["stopped_at"] == 30


@pytest.mark.parametrize(
    "override, named",
    [
        ("expert: {steps: -5}", "expert.steps"),
        ("expert: {stpes: 900}", "expert.stpes: not an expert setting"),
        ("expert: 900", "expert: must be a mapping"),
    ],
)
def test_a_bad_expert_override_in_a_spec_is_named_with_its_file_and_key(tmp_path, override, named):
    from mllmcl.config.schema import DataConfig
    from mllmcl.data.ingest import ingest_task
    from mllmcl.errors import DataError

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "spec.yaml").write_text(f"generator: count\n{override}\n")
    with pytest.raises(DataError) as e:
        ingest_task("count", DataConfig(train_size=20, test_size=4), raw_dir=raw, out_dir=tmp_path / "out")
    assert str(raw / "spec.yaml") in str(e.value) and named in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_benchmarks_reduced_budget_scales_a_tasks_own_budget_alike(tmp_path):
    """--quick's 150 of 1200 steps give a task whose spec asks 2000 steps 250 of them (and its validation interval
    with them), not its whole own budget; a task without its own budget trains the benchmark's steps."""
    from mllmcl.continual.benchmark_run import (
        BenchmarkSettings,
        budget_scale,
        own_budgets,
        scaled_budgets,
        seeded_params,
    )
    from mllmcl.continual.experts import expert_config

    for task, meta in {"own": {"expert": {"steps": 2000, "eval_every": 200}}, "plain": {}}.items():
        (tmp_path / task).mkdir()
        (tmp_path / task / "meta.json").write_text(json.dumps(meta))
    params = toy.params(expert={"steps": 1200, "eval_every": 100})
    settings = BenchmarkSettings.quick("t", ["own", "plain"])
    scale = budget_scale(settings, params)
    assert scale == 150 / 1200
    p = seeded_params(params, 0, settings)
    own = expert_config(p.expert, tmp_path / "own", budget_scale=scale)
    assert (own.steps, own.eval_every) == (250, 25)
    assert expert_config(p.expert, tmp_path / "own").steps == 2000  # the pipeline's own run: the spec's budget
    assert expert_config(p.expert, tmp_path / "plain", budget_scale=scale).steps == 150
    assert own_budgets(["own", "plain"], tmp_path, scale) == {"own": 250}
    assert own_budgets(["own", "plain"], tmp_path, 1.0) == {"own": 2000}
    full = BenchmarkSettings(track="t", tasks=("own", "plain"))
    assert budget_scale(full, params) == 1.0
    # kept results key on what scaling changes, and only then: at scale 1 (and without own budgets) keys stay as they
    # were; a quick run keys on the scale and the settings each task applies
    assert scaled_budgets(["own", "plain"], tmp_path, 1.0) is None
    assert scaled_budgets(["plain"], tmp_path, scale) is None
    assert scaled_budgets(["own", "plain"], tmp_path, scale) == {
        "scale": 0.125,
        "tasks": {"own": {"steps": 250, "eval_every": 25}},
    }
    assert scaled_budgets(["own"], tmp_path, 1.0, unscaled_too=True)["tasks"]["own"]["steps"] == 2000  # joint


def test_quick_gives_the_ability_track_a_smaller_budget_and_explicit_figures_still_win():
    """--quick on the ability track (tasks with 2000-3000-step budgets of their own, longer router prompts) trains less
    than on the domain track, so both stay runs of minutes; a figure given on the command line overrides either."""
    from mllmcl.continual.benchmark_run import settings_for

    params = toy.params(expert={"steps": 1200})
    domain = settings_for(params, track="domain", quick=True)
    ability = settings_for(params, tasks=["ocr", "math", "count", "gui"], quick=True)  # the track, named by its tasks
    assert ability.track == "ability" and domain.track == "domain"
    assert ability.steps < domain.steps and ability.router_steps < domain.router_steps
    assert (ability.seeds, ability.orders, ability.test_limit) == (domain.seeds, domain.orders, domain.test_limit)
    assert settings_for(params, track="ability", quick=True, steps=150, router_steps=600).steps == 150
    assert settings_for(params, track="ability", quick=True, router_steps=600).router_steps == 600
