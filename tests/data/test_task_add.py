"""`mllmcl task add` turns MLLM-CL/LLaVA files into a validated, DVC-tracked task and registers it in
params.yaml without losing the file's comments."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.cli.main import main
from mllmcl.config import load_params
from mllmcl.config.schema import MinRows
from mllmcl.data.images import image_exists

REPO = Path(__file__).resolve().parents[2]


def _run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)


@pytest.fixture()
def project(tmp_path):
    """A fresh git + DVC project with this repo's params.yaml."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    _run(["git", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root)
    return root


def add_llava_task(root: Path, name: str, train: Path, test: Path, images: Path, *extra: str) -> int:
    """`mllmcl task add NAME --train --test --images` on the project at `root`, as a user types it."""
    args = ["task", "add", name, "--train", str(train), "--test", str(test), "--images", str(images)]
    return main([*args, *extra, "--root", str(root)])


def make_llava_fixture(folder: Path, n_train: int = 12, n_test: int = 6) -> tuple[Path, Path, Path]:
    """Files in MLLM-CL's formats: train {id, image, conversations}, test {question_id, image, text, answer}."""
    images = folder / "imgs"
    images.mkdir(parents=True)
    train, test = [], []
    for i in range(n_train + n_test):
        colour = ["red", "blue"][i % 2]
        name = f"pic_{i}.png"
        Image.new("RGB", (48, 48), (200, 30, 30) if colour == "red" else (30, 30, 200)).putpixel((i % 48, 0), (i, i, i))
        img = Image.new("RGB", (48, 48), (200, 30, 30) if colour == "red" else (30, 30, 200))
        img.putpixel((i % 48, i // 48), (i * 3 % 255, 7, 9))
        img.save(images / name)
        if i < n_train:
            train.append(
                {
                    "id": f"q{i}",
                    "image": name,
                    "conversations": [
                        {"from": "human", "value": "<image>\nWhat colour is the pet's collar?"},
                        {"from": "gpt", "value": colour},
                    ],
                }
            )
        else:
            test.append(
                {"question_id": f"t{i}", "image": name, "text": "Which colour is the collar?", "answer": colour}
            )
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    return folder / "train.json", folder / "test.json", images


def test_llava_files_become_a_validated_dvc_tracked_task(project, tmp_path):
    from mllmcl.data.ingest import ingest_task
    from mllmcl.data.records import read_records
    from mllmcl.data.validation import validate_task

    train, test, images = make_llava_fixture(tmp_path / "src")
    code = add_llava_task(project, "pets", train, test, images, "--description", "photos of pets")
    assert code == 0
    assert (project / "data/raw/pets.dvc").exists()  # tracked by DVC, not git
    assert "/pets" in (project / "data/raw/.gitignore").read_text()
    params_text = (project / "params.yaml").read_text()
    assert "# The ordered list of tasks learned so far" in params_text  # comments kept
    params = load_params(project / "params.yaml")
    assert params.tasks[-1] == "pets" and params.tasks[:5] == ["rs", "med", "ad", "sci", "fin"]

    meta = ingest_task("pets", params.data, raw_dir=project / "data/raw/pets", out_dir=project / "data/tasks/pets")
    assert meta["counts"] == {"train": 12, "test": 6}
    folder = project / "data/tasks/pets"
    rec = read_records(folder / "train.jsonl")[0]
    assert rec["question"] == "What colour is the pet's collar?" and rec["answer"] in {"red", "blue"}
    assert image_exists(folder / rec["image"]) and not (folder / "images").exists()  # packed into images.zip
    cfg = params.validate_.model_copy(update={"min_rows": MinRows(train=4, test=2)})
    result = validate_task(folder, "pets", cfg)
    assert result.passed, result.summary()


def test_synthetic_task_add_registers_a_generator_spec(project, capsys):
    assert (
        main(
            [
                "--params",
                str(project / "params.yaml"),
                "task",
                "add",
                "ocr",
                "--synthetic",
                "ocr",
                "--root",
                str(project),
            ]
        )
        == 0
    )
    assert "generator: ocr" in (project / "data/raw/ocr/spec.yaml").read_text()
    assert load_params(project / "params.yaml").tasks[-1] == "ocr"
    diff = difflib.unified_diff(
        (REPO / "params.yaml").read_text().splitlines(), (project / "params.yaml").read_text().splitlines(), n=0
    )
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["+  - ocr"], changed  # one line; every null, comment and blank line as it was
    lines = (project / "params.yaml").read_text().splitlines()
    assert lines[lines.index("  - ocr") - 1] == "  - fin"  # right below the last task, above the next section


def test_a_shipped_generator_spec_is_learned_and_a_clash_refused(project, capsys):
    shipped = project / "data/raw/count"
    shipped.mkdir(parents=True)
    (shipped / "spec.yaml").write_text("generator: count\n")
    args = ["--params", str(project / "params.yaml"), "task", "add"]
    assert main([*args, "count", "--synthetic", "math", "--root", str(project)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "count", "--synthetic", "count", "--root", str(project)]) == 0
    assert load_params(project / "params.yaml").tasks[-1] == "count"
    assert (shipped / "spec.yaml").read_text() == "generator: count\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["rs", "--synthetic", "rs"], "already in"),
        (["Bad-Name", "--synthetic", "rs"], "lowercase"),
        (["newtask", "--synthetic", "nope"], "unknown generator"),
        (["newtask", "--train", "missing.json", "--test", "x.json", "--images", "."], "file not found"),
    ],
)
def test_bad_task_add_is_refused_and_changes_nothing(project, capsys, args, message):
    before = (project / "params.yaml").read_text()
    assert main(["--params", str(project / "params.yaml"), "task", "add", *args, "--root", str(project)]) == 2
    assert message in capsys.readouterr().err
    assert (project / "params.yaml").read_text() == before
    assert not (project / "data/raw/newtask").exists()
