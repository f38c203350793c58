"""MLLM-CL-mini: deterministic, well-formed, leakage-free, balanced, and shifted where the track says so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.data.benchmark import ABILITY_TRACK, DOMAIN_TRACK, GENERATORS, generate_task
from mllmcl.data.records import read_records, schema_problems


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", ["rs", "gui", "language"])
def test_same_seed_gives_byte_identical_files(tmp_path, name):
    generate_task(name, tmp_path / "a", train_size=24, test_size=12, seed=7)
    generate_task(name, tmp_path / "b", train_size=24, test_size=12, seed=7)
    generate_task(name, tmp_path / "c", train_size=24, test_size=12, seed=8)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_generator_writes_valid_balanced_leak_free_records(tmp_path, name):
    gen = GENERATORS[name]
    k = len(gen.question_types)
    summary = generate_task(name, tmp_path, train_size=8 * k, test_size=4 * k, seed=0)
    train, test = read_records(tmp_path / "train.jsonl"), read_records(tmp_path / "test.jsonl")
    assert (len(train), len(test)) == (8 * k, 4 * k) == (summary["train"], summary["test"])
    for r in train + test:
        assert schema_problems(r) == []
        if r["choices"] is not None:
            assert r["answer"] in r["choices"]
        if gen.track == "text":
            assert r["image"] is None
        else:
            with Image.open(tmp_path / r["image"]) as im:
                assert (im.mode, im.size) == ("RGB", (64, 64))
    for split in (train, test):
        counts = {qt: sum(r["question_type"] == qt for r in split) for qt in gen.question_types}
        assert max(counts.values()) - min(counts.values()) <= 1
    if gen.track == "text":
        assert not {r["question"] for r in train} & {r["question"] for r in test}
    else:
        train_hashes = {hashlib.sha256((tmp_path / r["image"]).read_bytes()).hexdigest() for r in train}
        assert not train_hashes & {hashlib.sha256((tmp_path / r["image"]).read_bytes()).hexdigest() for r in test}


def test_domain_answers_are_not_constant(tmp_path):
    """Each question type needs at least two answers in practice, or a task is trivial."""
    for name in DOMAIN_TRACK:
        generate_task(name, tmp_path / name, train_size=60, test_size=4, seed=0)
        by_type: dict[str, set[str]] = {}
        for r in read_records(tmp_path / name / "train.jsonl"):
            by_type.setdefault(r["question_type"], set()).add(r["answer"])
        assert all(len(a) >= 2 for a in by_type.values()), (name, by_type)


@pytest.mark.parametrize("name", ABILITY_TRACK)
def test_ability_tests_shift_every_stated_factor_to_values_training_never_shows(tmp_path, name):
    """The ability track's non-IID split, factor by factor: training varies each factor the test shifts (at least two
    values), and no test value of a factor ever appears in training; the shift is stated in meta.json."""
    from mllmcl.config.schema import DataConfig
    from mllmcl.data.ingest import ingest_task

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "spec.yaml").write_text(f"generator: {name}\n")
    meta = ingest_task(name, DataConfig(train_size=120, test_size=24), raw_dir=raw, out_dir=tmp_path / name)
    assert "training" in meta["shift"]
    values: dict[str, dict[str, set]] = {"train": {}, "test": {}}
    for split in values:
        for r in read_records(tmp_path / name / f"{split}.jsonl"):
            for factor, value in r["render"].items():
                values[split].setdefault(factor, set()).add(json.dumps(value))
    shifted = {"ocr": {"ink", "paper", "font_px"}, "math": {"ink", "paper", "font_px"}}.get(
        name, {"count": {"shape", "colour", "paper"}, "gui": {"theme"}}.get(name)
    )
    assert shifted <= set(values["train"]) and set(values["train"]) == set(values["test"])
    for factor in shifted:
        train, test = values["train"][factor], values["test"][factor]
        assert len(train) >= 2, (factor, train)  # nothing is learned invariant to a factor training holds fixed
        assert not train & test, (factor, train & test)


def test_image_size_is_configurable(tmp_path):
    generate_task("fin", tmp_path, train_size=3, test_size=3, seed=0, image_size=32)
    r = read_records(tmp_path / "train.jsonl")[0]
    with Image.open(tmp_path / r["image"]) as im:
        assert im.size == (32, 32)


def test_math_writes_one_glyph_to_each_patch_column_and_answers_what_it_shows():
    """The tiny base sees 16 px patches: a sum drawn as `a+b=` puts each glyph in its own column (ink in all four
    columns, none in the top and bottom patch rows), and the answer works out the sum it shows."""
    import re

    import numpy as np

    from mllmcl.data.benchmark.ability import MATH_OPERANDS, RENDER
    from mllmcl.data.benchmark.draw import CELL

    rng = np.random.default_rng(3)
    for i in range(40):
        split, qtype = ("train", "test")[i % 2], ("plus", "minus")[(i // 2) % 2]
        item = GENERATORS["math"].make(rng, split, 64, qtype)
        paper = np.array(RENDER[split]["paper"][item.render["paper"]], dtype=float)
        inked = np.abs(np.asarray(item.image, dtype=float) - paper).max(axis=2) > 60  # well above noise and jitter
        assert not inked[:CELL].any() and not inked[3 * CELL :].any(), i
        assert all(inked[:, c * CELL : (c + 1) * CELL].sum() > 15 for c in range(4)), i
        a, op, b, value = re.fullmatch(r"(\d)([+-])(\d)=(\d+)", item.answer).groups()
        assert op == {"plus": "+", "minus": "-"}[qtype] and max(int(a), int(b)) < MATH_OPERANDS
        assert int(value) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


def test_gui_answers_name_the_actions_icon_and_the_button_it_is_drawn_on(tmp_path):
    """gui's worked answer (`blue square: b`): the icon is the one the asked action has, and it is drawn on the button
    whose letter follows (the centre of that button's icon has the icon's colour), in both splits."""
    import re

    import numpy as np

    from mllmcl.data.benchmark.ability import ACTIONS, BUTTON_HEIGHT, BUTTON_ROWS, ICONS
    from mllmcl.data.benchmark.draw import COLOURS

    generate_task("gui", tmp_path, train_size=40, test_size=20, seed=0)
    action_of = {f"which button {text}?": action for action, text in ACTIONS.items()}
    for split in ("train", "test"):
        for r in read_records(tmp_path / f"{split}.jsonl"):
            kind, colour = ICONS[action_of[r["question"]]]
            m = re.fullmatch(r"(\w+) (\w+): ([abc])", r["answer"])
            assert m and m.group(1, 2) == (colour, kind), r["answer"]
            y = int(BUTTON_ROWS["abc".index(m.group(3))] + BUTTON_HEIGHT / 2)
            with Image.open(tmp_path / r["image"]) as im:
                centre = np.asarray(im.convert("RGB"), dtype=float)[y - 1 : y + 2, 23:26].mean(axis=(0, 1))
            assert np.abs(centre - COLOURS[colour]).max() < 10, (r["id"], centre, colour)
