"""One toy project per test session for the serving tests: a copy of the toy base and data with two experts and a
router trained briefly (the answers need not be good, only real), and helpers to talk to a server over HTTP."""

from __future__ import annotations

import base64
import shutil

import pytest
import yaml

from mllmcl.config import parse_params
from mllmcl.data.images import read_image_bytes
from tests import toy

SERVE = {"max_batch": 8, "max_wait_ms": 60, "max_image_bytes": 200_000, "max_question_chars": 500, "keep_images": True}


class Counting:
    """A RoutedModel wrapper that counts the model calls (one per batch) and their sizes."""

    def __init__(self, model):
        self.model = model
        self.sizes: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.sizes)

    @property
    def prompting(self):
        """The model's encoder, which the batcher asks which request a failed batch cannot take."""
        return self.model.prompting

    def predict(self, requests, *, batch_size=64):
        self.sizes.append(len(requests))
        return self.model.predict(requests, batch_size=batch_size)


@pytest.fixture(scope="session")
def serving_project(toy_root, tmp_path_factory):
    """(root, params): the toy base and data copied, experts for both toy tasks and a router trained into models/,
    a local registry at registry/ (empty)."""

    root = tmp_path_factory.mktemp("serving-project")
    shutil.copytree(toy_root / "models" / "base", root / "models" / "base")
    shutil.copytree(toy_root / "data", root / "data")
    raw = toy.raw_params(
        expert={"steps": 60, "lr": 3e-3}, router={"steps": 60, "lr": 3e-3}, registry={"uri": "registry", "model": "m"}
    )
    raw["serve"].update(SERVE)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    toy.train_models(root, params)
    return root, params


def png(root, task: str = "colour", i: int = 0) -> bytes:
    """A toy test image's PNG bytes."""
    return read_image_bytes(root / "data" / "tasks" / task / "images" / f"test_{i:04d}.png")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
