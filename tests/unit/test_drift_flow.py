"""The Prefect side of the drift loop without a server: which incoming batches the monitor picks up, the name a
labelled batch is learned under, the labelled batch turned into a task, and the deployments' trigger and debounce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from flows.drift_monitor import _batch_signature, new_batches, task_name_for
from mllmcl.config import load_params
from mllmcl.data.tasks import add_labelled_batch
from mllmcl.errors import DataError
from mllmcl.paths import ProjectPaths

REPO = Path(__file__).resolve().parents[2]


def _batch(folder: Path, n: int, *, labelled: bool = True) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(folder / "images" / f"{i}.png")
        line = {"id": f"r{i}", "image": f"images/{i}.png", "question": "which shade?"}
        if labelled:
            line["answer"] = "dark" if i % 2 else "light"
        lines.append(line)
    (folder / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


@pytest.fixture()
def project(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def test_the_monitor_picks_up_only_batches_it_has_not_judged(project):
    paths = ProjectPaths(project)
    _batch(paths.incoming / "b1", 2)
    _batch(paths.incoming / "b2", 2)
    (paths.incoming / "traffic").mkdir()  # the traffic log folder is not a batch
    assert [p.parent.name for p in new_batches(paths, {})] == ["b1", "b2"]
    judged = {"b1": _batch_signature(paths.incoming / "b1" / "requests.jsonl")}
    assert [p.parent.name for p in new_batches(paths, judged)] == ["b2"]
    # annotators fill in the batch and drop it back: it is judged again
    with (paths.incoming / "b1" / "requests.jsonl").open("a") as f:
        f.write(json.dumps({"id": "r9", "image": "images/0.png", "question": "which shade?", "answer": "light"}) + "\n")
    assert [p.parent.name for p in new_batches(paths, judged)] == ["b1", "b2"]


def test_a_batch_is_learned_under_its_meta_name_or_a_legal_form_of_its_folder(tmp_path):
    named = tmp_path / "2026-11-26 Street Signs"
    named.mkdir()
    assert task_name_for(named) == ("task_2026_11_26_street_signs", None)  # a task name starts with a letter
    assert task_name_for(tmp_path / "Street-Signs!")[0] == "street_signs"
    (named / "meta.json").write_text(json.dumps({"task": "signs", "description": "road signs"}))
    assert task_name_for(named) == ("signs", "road signs")


def test_a_labelled_batch_becomes_a_task_in_llava_format(project):
    batch = _batch(ProjectPaths(project).incoming / "shades", 10)
    raw = add_labelled_batch("shades", batch, root=project, params_path=project / "params.yaml")
    assert load_params(project / "params.yaml").tasks[-1] == "shades"
    train, test = json.loads((raw / "train.json").read_text()), json.loads((raw / "test.json").read_text())
    assert len(train) == 8 and len(test) == 2  # 20% held out for the gate
    assert {t["question_id"] for t in test}.isdisjoint({t["id"] for t in train})
    assert train[0]["conversations"][0]["value"].startswith("<image>\n")
    assert (raw / "images" / "images" / "0.png").is_file()


def test_an_unlabelled_line_is_refused_by_line_and_nothing_is_added(project):
    batch = _batch(ProjectPaths(project).incoming / "mixed", 4)
    lines = (batch / "requests.jsonl").read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "answer": None})
    (batch / "requests.jsonl").write_text("\n".join(lines) + "\n")
    before = (project / "params.yaml").read_text()
    with pytest.raises(DataError, match=r"requests.jsonl: line 3: .*'answer'"):
        add_labelled_batch("mixed", batch, root=project, params_path=project / "params.yaml")
    assert (project / "params.yaml").read_text() == before
    assert not ProjectPaths(project).raw("mixed").exists()


def test_only_training_decisions_start_the_drift_stage_one_at_a_time(project):
    from flows.serve import DRIFT_EVENT, TRAINING_ACTIONS, build_deployments

    params = load_params(project / "params.yaml")
    deployments = {d.name: d for d in build_deployments(params, str(project))}
    assert set(deployments) == {params.schedule.name, "drift-monitor", "on-drift", "benchmark"}
    assert not deployments["benchmark"].schedules and deployments["benchmark"].concurrency_limit == 1
    on_drift = deployments["on-drift"]
    trigger = on_drift.triggers[0]
    assert trigger.expect == {DRIFT_EVENT}
    assert set(trigger.match.root["mllmcl.action"]) == set(TRAINING_ACTIONS) == {"new_task", "refresh", "stage"}
    assert on_drift.concurrency_limit == 1  # one stage at a time; a second new task waits its turn
    assert str(on_drift.concurrency_options.collision_strategy.value) == "ENQUEUE"
    monitor = deployments["drift-monitor"]
    assert monitor.concurrency_limit == 1  # a slow monitor run never overlaps the next one
    assert str(monitor.concurrency_options.collision_strategy.value) == "CANCEL_NEW"
    assert monitor.schedules[0].schedule.interval.total_seconds() == params.schedule.monitor_minutes * 60


def test_questions_about_one_image_stay_on_one_side_of_the_split(project):
    batch = _batch(ProjectPaths(project).incoming / "pairs", 10)
    lines = [json.loads(x) for x in (batch / "requests.jsonl").read_text().splitlines()]
    doubled = lines + [{**x, "id": f"{x['id']}-again", "question": "which shade is it?"} for x in lines]
    (batch / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in doubled))
    raw = add_labelled_batch("pairs", batch, root=project, params_path=project / "params.yaml")
    train, test = json.loads((raw / "train.json").read_text()), json.loads((raw / "test.json").read_text())
    assert len(train) + len(test) == 20 and len(test) == 4  # 2 of 10 images held out, with both their questions
    assert {t["image"] for t in train}.isdisjoint({t["image"] for t in test})
