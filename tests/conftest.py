"""Shared fixtures. Tests run offline and quiet; anything heavy (a tiny base, toy tasks) is built once
per session in a temporary project root."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest  # noqa: E402

from tests import toy  # noqa: E402


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    """A project root with two small image tasks, the language suite and a tiny base in models/base."""
    root = tmp_path_factory.mktemp("toy-project")
    toy.make_project(root)
    return root


@pytest.fixture()
def toy_params(toy_root):
    return toy.params(toy_root)
