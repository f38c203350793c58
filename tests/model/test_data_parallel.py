"""`compute.gpus` > 1 runs an expert data parallel. Without GPUs here, the same ranks run on CPU through torchrun
(gloo): each rank trains on its share of every batch, DDP keeps them in step, and rank 0 alone evaluates and writes
the expert."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mllmcl.model.compute import launch_command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_expert_trains_on_two_data_parallel_ranks(toy_root, tmp_path):
    out = tmp_path / "expert"
    argv = ["--root", str(toy_root), "--task", "colour", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        launch_command(2, "stages.train_expert", argv, "no", cpu=True),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["processes"] == 2
    assert proc.stdout.count("expert colour: accuracy") == 1  # rank 0 alone evaluates and reports
    assert list(out.glob("*.safetensors")), "no adapter written"


def test_more_gpus_than_the_machine_has_is_one_line():
    """compute.gpus: 4 on a machine without 4 CUDA devices stops before training, naming the key."""
    from mllmcl.errors import ConfigError
    from stages._common import data_parallel
    from tests import toy

    with pytest.raises(ConfigError, match=r"compute.gpus: 4, but torch sees \d+ CUDA device"):
        data_parallel(toy.params(compute={"gpus": 4}), "stages.train_expert")
