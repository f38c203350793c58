"""The one place that knows where a project keeps things. `dvc.yaml` passes the same paths to the stages as
arguments; a test checks that every stage's arguments are the paths this module gives and that DVC tracks them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    """Paths of one project checkout (the folder holding params.yaml and dvc.yaml)."""

    root: Path = Path(".")

    # --- inputs and data --------------------------------------------------------------------------------------
    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def dvc_lock(self) -> Path:
        return self.root / "dvc.lock"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def raw(self, task: str) -> Path:
        """A task's input: a generator spec or LLaVA-format files (what `task add` writes)."""
        return self.data / "raw" / task

    @property
    def tasks_dir(self) -> Path:
        return self.data / "tasks"

    def task_data(self, task: str) -> Path:
        """A task's normalised records: train.jsonl, test.jsonl, images/, meta.json."""
        return self.tasks_dir / task

    @property
    def incoming(self) -> Path:
        """Production batches waiting for the drift monitor: labelled batches in folders, traffic under traffic/."""
        return self.data / "incoming"

    def traffic(self, traffic_dir: str) -> Path:
        """The serving endpoint's traffic log folder (params `serve.traffic_dir`, relative to the root)."""
        return self.root / traffic_dir

    # --- models -------------------------------------------------------------------------------------------------
    @property
    def base(self) -> Path:
        return self.root / "models" / "base"

    @property
    def experts(self) -> Path:
        return self.root / "models" / "experts"

    def expert(self, task: str) -> Path:
        return self.experts / task

    @property
    def router(self) -> Path:
        return self.root / "models" / "router"

    def checkpoints(self, name: str) -> Path:
        """Resumable training state of one run (removed when the run finishes)."""
        return self.root / "checkpoints" / name

    # --- metrics and reports ------------------------------------------------------------------------------------
    @property
    def eval_json(self) -> Path:
        return self.root / "metrics" / "eval.json"

    @property
    def gate_json(self) -> Path:
        return self.root / "metrics" / "gate.json"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def validation_reports(self) -> Path:
        return self.reports / "validation"

    def validation_report(self, task: str) -> Path:
        return self.validation_reports / f"{task}.json"

    @property
    def predictions(self) -> Path:
        return self.reports / "predictions"

    @property
    def experts_report(self) -> Path:
        return self.reports / "experts.json"

    @property
    def gate_lineage(self) -> Path:
        """What the gate judged besides metrics: commit, dvc.lock hashes, params diff (kept out of metrics/)."""
        return self.reports / "gate_lineage.json"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def drift_reports(self) -> Path:
        return self.reports / "drift"

    @property
    def benchmark_reports(self) -> Path:
        return self.reports / "benchmark"

    # --- local state --------------------------------------------------------------------------------------------
    @property
    def benchmark_work(self) -> Path:
        """Models the benchmark trains besides the DAG's (routers of earlier stages), kept so a run resumes."""
        return self.root / ".cache" / "benchmark"

    @property
    def embedding_cache(self) -> Path:
        """The base's image embeddings, kept between router retrainings (mllmcl/continual/embedding_cache.py)."""
        return self.root / ".cache" / "embeddings"

    @property
    def registry_cache(self) -> Path:
        return self.root / ".cache" / "registry"

    @property
    def state(self) -> Path:
        """Locks and other local bookkeeping of the orchestration (never versioned)."""
        return self.root / ".mllmcl"
