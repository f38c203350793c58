"""A throwaway copy of this project for end-to-end runs of the real DAG (git + DVC in a temp folder),
with params shrunk so that every stage takes seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]  # tests/ -> the repo


def tiny_params(tasks: list[str]) -> dict:
    """The repo's params with a model and data small enough that every stage takes seconds, yet long enough
    training that experts and the router learn."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["tasks"] = tasks
    p["data"].update(train_size=400, test_size=60)
    p["validate"]["min_rows"] = {"train": 8, "test": 4}
    tiny = p["base"]["tiny"]
    tiny.update(tokenizer_samples=20, vocab_size=600)
    tiny["vision"].update(hidden_size=32, layers=1, heads=2)
    tiny["text"].update(hidden_size=64, intermediate_size=128, layers=2, heads=2)
    p["base"]["pretrain"].update(steps=500, batch_size=16, checkpoint_every=0, warmup_steps=20, lr=3e-3)
    p["expert"].update(steps=900, batch_size=16, checkpoint_every=0, warmup_steps=20, lr=3e-3)
    # question_swaps 0: at this budget (300-600 steps at lr 3e-3, a 64-wide base) the swapped copies left the router
    # below the gate (rs and router_accuracy failed); swaps need the long gentle schedule of params.yaml, and the toy
    # module (tests/model/test_experts_router.py) trains a router with them
    p["router"].update(steps=300, batch_size=16, checkpoint_every=0, warmup_steps=20, lr=3e-3, question_swaps=0)
    # base_samples: the text-only questions that teach the router the base; with 24 this tiny router sent up to 7 of
    # 60 held-out-wording questions to an expert, depending on the tokenizer its corpus happened to give
    p["router"].update(samples_per_task=24, base_samples=48, eval_samples_per_task=16)
    # Real thresholds, set below what this tiny model reaches (experts 0.68-0.87, router 0.97-1.0; zero-shot
    # 0.03-0.13) so that the gate's verdicts in these tests come from the model, never from a zeroed policy.
    # max_prior_drop 0.15: a prior task must SHOW non-inferiority on its 60 test questions, and at 0.05 even identical
    # answers cannot (p = 0.038, one lost answer fails); at 0.15 up to 4 lost answers pass, a routing collapse never.
    p["gate"].update(min_task_accuracy=0.6, min_new_task_accuracy=0.6, min_router_accuracy=0.9, max_prior_drop=0.15)
    p["storage"]["dvc_remote"] = None  # tests that need a remote configure one
    p["compute"] = {"threads": 1}
    return p


def env() -> dict:
    e = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    return e


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], root, check)


def make(root: Path, tasks: list[str], cache: Path | None = None) -> Path:
    """git + DVC project with this repo's dvc.yaml, the generator specs and tiny params; code comes from the
    installed package (the stages run `python -m stages.<name>`). `cache`: a DVC cache shared with other test
    projects, so a stage another project already ran with the same deps and params is restored from DVC's
    run-cache, not trained again (what a team sharing a cache or remote gets)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for name in ("general", "language", *tasks):
        (root / "data/raw" / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "data/raw" / name / "spec.yaml", root / "data/raw" / name / "spec.yaml")
    # stage deps name code paths (mllmcl/..., stages/...): the project carries its own copy of the code
    for code in ("mllmcl", "stages"):
        shutil.copytree(REPO / code, root / code, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tasks), sort_keys=False))
    (root / ".gitignore").write_text("/registry/\n/checkpoints/\n/.cache/\n__pycache__/\n")
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    if cache is not None:
        dvc(root, "cache", "dir", "--local", str(cache))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)
    return root


def ran_stages(output: str) -> list[str]:
    """Stage names DVC actually executed, from its own output."""
    from flows.dag import ran_stages as from_output

    return from_output(output)


def restored_stages(output: str) -> list[str]:
    """Stage names DVC restored from its run-cache instead of running them."""
    from flows.dag import restored_stages as from_output

    return from_output(output)


def seed_cache(root: Path, shared: Path) -> None:
    """Copy a shared DVC cache (objects and run-cache) into the project's own `.dvc/cache`: stages another test
    project ran are restored, yet this project can wipe its cache without touching anyone else's."""
    if shared.is_dir():
        shutil.copytree(shared, root / ".dvc" / "cache", dirs_exist_ok=True)
