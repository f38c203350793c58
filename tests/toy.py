"""A toy project for fast model tests: two small visual tasks (colour of a square, its position), a few
text-only questions, and a tiny LLaVA base built from configs (not pretrained; tests train briefly)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from mllmcl.config import Params, parse_params
from mllmcl.config.schema import TinyConfig
from mllmcl.data.records import write_records

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (40, 40, 230), "yellow": (230, 220, 30)}
TASKS = ("colour", "where")
PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _square(rng: random.Random, size: int = 64):
    colour = rng.choice(list(COLOURS))
    left = rng.random() < 0.5
    img = Image.new("RGB", (size, size), (rng.randint(0, 40),) * 3)
    x = rng.randint(2, size // 2 - 22) if left else rng.randint(size // 2 + 2, size - 22)
    y = rng.randint(2, size - 22)
    ImageDraw.Draw(img).rectangle([x, y, x + 19, y + 19], fill=COLOURS[colour])
    return img, colour, "left" if left else "right"


def make_task(folder: Path, task: str, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = random.Random(f"{task}-{seed}")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            img, colour, side = _square(rng)
            name = f"images/{split}_{i:04d}.png"
            img.save(folder / name)
            if task == "colour":
                q, a, choices = "what colour is the square?", colour, list(COLOURS)
            else:
                q, a, choices = "is the square left or right?", side, ["left", "right"]
            rows.append(
                {
                    "id": f"{task}-{split}-{i}",
                    "image": name,
                    "question": q,
                    "answer": a,
                    "answer_type": "word",
                    "choices": choices,
                    "question_type": task,
                }
            )
        write_records(folder / f"{split}.jsonl", rows)
    (folder / "meta.json").write_text(
        json.dumps({"task": task, "source": "synthetic", "image_size": 64, "description": f"squares: {task}"})
    )


def make_language(folder: Path) -> None:
    pairs = [("hot", "cold"), ("up", "down"), ("big", "small"), ("left", "right"), ("yes", "no")]
    train = [
        {
            "id": f"lang-train-{i}",
            "image": None,
            "question": f"what is the opposite of {a}?",
            "answer": b,
            "answer_type": "word",
            "choices": None,
            "question_type": "opposite",
        }
        for i, (a, b) in enumerate(pairs)
    ]
    test = [
        {
            "id": f"lang-test-{i}",
            "image": None,
            "question": f"the opposite of {a} is?",
            "answer": b,
            "answer_type": "word",
            "choices": None,
            "question_type": "opposite",
        }
        for i, (a, b) in enumerate(pairs)
    ]
    write_records(folder / "train.jsonl", train * 4)
    write_records(folder / "test.jsonl", test)


def build_base(out: Path, *, hidden: int = 64, layers: int = 2) -> Path:
    import torch

    from mllmcl.model.tiny import build_processor, build_tiny_llava, save_base, train_tokenizer

    torch.manual_seed(1)  # the same base whatever ran before in the session (a random init is part of the fixture)

    words = "what colour is the square left or right red green blue yellow opposite of hot cold up down big small"
    texts = [f"USER: {words}\nASSISTANT: {w}" for w in words.split()] * 5
    texts += ["Models: A: B: C: Z: anything else Request: Which model? Answer with its letter. A B C Z"] * 5
    tok = train_tokenizer(texts, 300)
    cfg = TinyConfig(
        image_size=64,
        vision={"hidden_size": 32, "layers": 1, "heads": 2, "patch_size": 16},
        text={"hidden_size": hidden, "intermediate_size": hidden * 2, "layers": layers, "heads": 2},
    )
    save_base(build_tiny_llava(cfg, tok), build_processor(tok, 64, 16), out)
    return out


def raw_params(**sections) -> dict:
    """The project's params.yaml made tiny (few steps, toy tasks) as plain data; `sections` are merged in."""
    p = copy.deepcopy(yaml.safe_load(PROJECT_PARAMS.read_text()))
    p["tasks"] = list(TASKS)
    for section, steps in (("expert", 40), ("router", 40)):
        p[section].update(steps=steps, batch_size=8, checkpoint_every=10, warmup_steps=5)
    p["router"].update(samples_per_task=12, base_samples=12, eval_samples_per_task=10)
    p["compute"] = {"threads": 1}
    for name, values in sections.items():
        p[name].update(values)
    return p


def params(root: Path | None = None, **sections) -> Params:
    """Typed toy params (see `raw_params`)."""
    return parse_params(raw_params(**sections))


def make_project(root: Path) -> None:
    for task in TASKS:
        make_task(root / "data" / "tasks" / task, task, 48, 16)
    make_language(root / "data" / "tasks" / "language")
    build_base(root / "models" / "base")
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params(), sort_keys=False))


def train_models(root: Path, params: Params, tasks: tuple[str, ...] = TASKS) -> None:
    """An expert per task, each from the base in root/models/base, then a router over them (what the DAG's training
    stages do, in-process)."""
    from mllmcl.continual.router import train_router
    from mllmcl.paths import ProjectPaths

    paths = ProjectPaths(root)
    for task in tasks:
        train_one_expert(paths, task, params)
    train_router(
        list(tasks), params, base_dir=paths.base, tasks_dir=paths.tasks_dir, out_dir=paths.router, progress=False
    )


def train_one_expert(paths, task: str, params: Params, **kw):
    """One expert from the base, in-process, as the train_expert stage would (its resumable checkpoint included)."""
    from mllmcl.continual.experts import train_expert

    return train_expert(
        task,
        params,
        base_dir=paths.base,
        data_dir=paths.task_data(task),
        out_dir=paths.expert(task),
        checkpoint_dir=paths.checkpoints(f"expert-{task}"),
        progress=False,
        **kw,
    )
