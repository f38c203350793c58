"""The Prefect side of the drift loop without a server: which incoming batches the monitor picks up, the name a
labelled batch is learned under (and the names refused), the labelled batch turned into a task, and the deployments'
trigger and debounce. The flows themselves run in tests/unit/test_drift_loop.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from flows.drift_monitor import (
    LEARNED,
    BatchRefused,
    _batch_signature,
    batch_folder,
    check_new_task,
    event_batch,
    new_batches,
    task_name_for,
)
from mllmcl.config import load_params
from mllmcl.data.tasks import add_labelled_batch
from mllmcl.errors import DataError, UserError
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


@pytest.mark.parametrize("batch", ["/etc", "../x", "a/../../x", "", "./../b1"])
def test_an_event_names_a_batch_under_data_incoming_or_is_refused_in_one_line(project, batch):
    with pytest.raises(BatchRefused) as e:
        batch_folder(ProjectPaths(project), batch)
    assert "\n" not in str(e.value) and "data/incoming" in str(e.value)


def test_a_batch_that_leads_out_through_a_link_is_refused(project, tmp_path_factory):
    paths = ProjectPaths(project)
    paths.incoming.mkdir(parents=True)
    (paths.incoming / "link").symlink_to(tmp_path_factory.mktemp("elsewhere"))
    with pytest.raises(BatchRefused, match="leads outside"):
        batch_folder(paths, "link")
    assert batch_folder(paths, "b1/part") == paths.incoming / "b1" / "part"


def test_an_event_names_a_folder_by_its_place_under_data_incoming(project, tmp_path_factory):
    paths = ProjectPaths(project)
    assert event_batch(paths, paths.incoming / "b1", "new_task") == "b1"
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "pets"
    assert event_batch(paths, elsewhere, "alert") == "pets"  # a label only: the stage learns nothing from it
    with pytest.raises(BatchRefused, match="under .*data/incoming only"):
        event_batch(paths, elsewhere, "new_task")


@pytest.mark.parametrize(
    ("name", "words"),
    [("../evil", "not a task name"), ("./../../x", "not a task name"), ("Signs", "not a task name"),
     ("language", "reserved"), ("rs", "not supported yet")],
)  # fmt: skip
def test_a_new_task_name_follows_task_add_s_rule_and_must_be_new(tmp_path, name, words):
    with pytest.raises(BatchRefused, match=words) as e:
        check_new_task(name, ["rs", "med"], tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path / "meta.json") in str(e.value)
    check_new_task("signs", ["rs", "med"], tmp_path)


def test_only_the_batch_learned_as_a_task_may_go_on_under_its_name(tmp_path):
    (tmp_path / LEARNED).write_text(json.dumps({"task": "signs"}))
    check_new_task("signs", ["rs", "signs"], tmp_path, retry=True)  # a retried drift stage of this very batch
    with pytest.raises(BatchRefused, match="already learned"):
        check_new_task("signs", ["rs", "signs"], tmp_path)  # the monitor: a changed batch is not a new task
    with pytest.raises(BatchRefused, match="already learned"):
        check_new_task("rs", ["rs", "signs"], tmp_path, retry=True)


def test_a_bad_meta_json_is_one_line_and_fixing_it_queues_the_batch_again(project):
    paths = ProjectPaths(project)
    folder = _batch(paths.incoming / "b1", 2)
    (folder / "meta.json").write_text("{task: rs")
    with pytest.raises(UserError, match=r"meta.json: not a JSON object") as e:
        task_name_for(folder)
    assert "\n" not in str(e.value)
    judged = {"b1": _batch_signature(folder / "requests.jsonl")}
    (folder / "meta.json").write_text(json.dumps({"task": "signs"}) + "\n")
    assert [p.parent.name for p in new_batches(paths, judged)] == ["b1"]
