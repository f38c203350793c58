"""`make test` starts the heaviest files first: a renamed or moved one would silently fall back to running last."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVIEST_FIRST

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_named_heaviest_first_exists_and_is_named_once():
    assert len(set(HEAVIEST_FIRST)) == len(HEAVIEST_FIRST)
    missing = [path for path in HEAVIEST_FIRST if not (ROOT / path).is_file()]
    assert not missing, f"tests/conftest.py HEAVIEST_FIRST names files that do not exist: {missing}"
