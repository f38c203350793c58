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
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each, in the workers and in every process they start (two
    # threads beside a busy neighbour made a training step ~10x slower here). Set before torch is imported.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

import pytest

from tests import toy

# The longest test files, longest first (wall seconds on one of `make test`'s two workers, 2026-12-03): collected first,
# they start at once on the two workers instead of one of them starting last and running alone at the end (xdist keeps
# this order under --no-loadscope-reorder, Makefile). Every other file follows in its usual order.
HEAVIEST_FIRST = (
    "tests/e2e/test_flows.py",  # a trained DVC project and a Prefect harness: ~600 s
    "tests/e2e/test_prefect_server.py",  # the drift loop on a live Prefect server: ~500 s
    "tests/e2e/test_distributed.py",  # experts on a local Dask cluster: ~410 s
    "tests/e2e/test_pipeline.py",  # dvc repro of the whole DAG: ~400 s
)


def pytest_collection_modifyitems(config, items):
    """Heaviest files first (HEAVIEST_FIRST), each file's tests kept together and in their order."""
    rank = {path: i for i, path in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    """A project root with two small image tasks, the language suite and a tiny base in models/base."""
    root = tmp_path_factory.mktemp("toy-project")
    toy.make_project(root)
    return root


@pytest.fixture()
def toy_params(toy_root):
    return toy.params(toy_root)


BUCKET = "mllmcl-test"


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto) with one bucket; fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield {"server": server, "url": url, "port": port, "bucket": BUCKET}
    server.stop()
