"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Prefect's test harness (a temporary server and database) for one test module, in a PREFECT_HOME of its own."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def shared_dvc_cache(tmp_path_factory):
    """One DVC cache (and run-cache) for the end-to-end projects that only need a trained tiny project to start from:
    the first to train a stage pays for it, the others restore it. test_pipeline copies it into a cache of its own,
    which its S3 test wipes."""
    return tmp_path_factory.mktemp("dvc-cache")
