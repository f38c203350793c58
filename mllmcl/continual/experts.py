"""Task experts: one LoRA per task, always trained from the base and never touched again
(parameter isolation, MR-LoRA). Also measures the expert alone and the zero-shot base on the task."""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.config import Params
from mllmcl.config.schema import ExpertConfig
from mllmcl.data import records as rec_io
from mllmcl.model.adapters import lora_config, new_adapter, save_adapter
from mllmcl.model.batching import encode_records
from mllmcl.model.compute import is_main_process
from mllmcl.model.generation import score_records
from mllmcl.model.loading import Prompting, base_identity, load_base, resolve_base
from mllmcl.model.training import EarlyStopping, TrainStats, train

STATS_FILE = "train_stats.json"


@dataclass
class ExpertStats:
    """An expert's training run and its accuracy alone (oracle routing) vs the zero-shot base."""

    task: str
    expert_accuracy: float
    base_accuracy: float
    train_seconds: float
    trainable_params: int
    n_test: int
    training: TrainStats
    base_eval_seconds: float | None = None  # answering the test split: the benchmark's per-request latency
    expert_eval_seconds: float | None = None
    n_validation: int = 0  # training records held out for early stopping
    overrides: dict | None = None  # the task's own `expert:` settings from its spec (meta.json)
    base: dict | None = None  # the base it was trained on (model.loading.base_identity): evaluate refuses another

    def to_json(self) -> dict:
        """Flat, as train_stats.json has always been (training fields at the top level)."""
        out = {k: v for k, v in asdict(self).items() if k != "training"}
        return {**self.training.to_json(), **out}

    @classmethod
    def read(cls, expert_dir: Path) -> ExpertStats:
        data = json.loads((Path(expert_dir) / STATS_FILE).read_text())
        training = TrainStats(**{k: data[k] for k in TrainStats.__dataclass_fields__ if k in data})
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "training" and k in data}
        return cls(**fields, training=training)  # stats from before a field was added leave it at its default


def task_seed(task: str) -> int:
    """Each task trains with its own seed offset, so experts do not share a batch order by accident."""
    return zlib.crc32(task.encode()) % 10_000


def inputs_fingerprint(*files: Path) -> str:
    """What a resumable checkpoint was trained on: the bytes of the data and the base's identity."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.name).encode())
        h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()[:16]


def task_overrides(data_dir: Path) -> dict:
    """A task's own expert settings: its spec's `expert:`, which ingest validated and copied into meta.json."""
    meta = Path(data_dir) / "meta.json"
    return (json.loads(meta.read_text()).get("expert") or {}) if meta.is_file() else {}


def applied_overrides(data_dir: Path, budget_scale: float = 1.0) -> dict:
    """The task's own settings as they apply: `budget_scale` shrinks (or grows) its own step budget and validation
    interval with a benchmark's budget (`--quick`), so that a task that needs 2.5x the default steps gets 2.5x the
    benchmark's, not its full own budget."""
    overrides = dict(task_overrides(data_dir))
    if budget_scale != 1.0:
        for key in ("steps", "eval_every"):
            if key in overrides:
                overrides[key] = max(1, round(overrides[key] * budget_scale))
    return overrides


def expert_config(cfg: ExpertConfig, data_dir: Path, *, budget_scale: float = 1.0) -> ExpertConfig:
    """The expert settings of one task: params.yaml `expert`, then the task's own overrides (applied_overrides)."""
    overrides = applied_overrides(data_dir, budget_scale)
    return ExpertConfig.model_validate({**cfg.model_dump(), **overrides}) if overrides else cfg


def split_validation(records: list[dict], size: int, task: str) -> tuple[list[dict], list[dict]]:
    """(training, validation): about `size` records (at most a tenth of the split) held out with a seed of the task,
    whole images at a time, so no question about a validation image is trained on."""
    import random
    from collections import Counter

    size = min(size, len(records) // 10)
    if size <= 0:
        return records, []

    def key(r: dict) -> str:
        return r.get("image") or r["id"]

    per_image = Counter(key(r) for r in records)
    images = sorted(per_image)
    random.Random(f"validation-{task}").shuffle(images)
    held: set[str] = set()
    count = 0
    for image in images:
        if count >= size:
            break
        held.add(image)
        count += per_image[image]
    return [r for r in records if key(r) not in held], [r for r in records if key(r) in held]


def train_expert(
    task: str,
    params: Params,
    *,
    base_dir: Path,
    data_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    budget_scale: float = 1.0,
) -> ExpertStats | None:
    """Train task's LoRA expert from the base on `data_dir`'s train split and save it to `out_dir` (atomically).
    Returns None on the helper ranks of a data-parallel run (only rank 0 evaluates and saves). `budget_scale`: see
    expert_config (the benchmark's reduced budgets)."""
    cfg = expert_config(params.expert, data_dir, budget_scale=budget_scale)
    train_records, validation = split_validation(
        rec_io.read_records(data_dir / "train.jsonl"), cfg.validation_size, task
    )
    test_records = rec_io.read_records(data_dir / "test.jsonl")

    model, processor = load_base(resolve_base(params.base, base_dir), trust_remote_code=params.base.trust_remote_code)
    prompting = Prompting.for_model(model, processor)
    main = is_main_process()  # under `accelerate launch` the other ranks only help train
    t0 = time.perf_counter()
    base_acc = (
        score_records(model, prompting, test_records, data_dir, batch_size=params.evaluate.batch_size)[0]
        if main
        else float("nan")
    )
    base_eval_seconds = time.perf_counter() - t0

    examples = encode_records(prompting, train_records, data_dir, with_answers=True)
    adapter = lora_config(cfg, model, role="expert")
    adapter_fingerprint = adapter.to_dict()
    train_cfg = cfg.model_copy(update={"seed": cfg.seed + task_seed(task)})
    peft_model = new_adapter(model, adapter, seed=train_cfg.seed)
    fingerprint = inputs_fingerprint(
        data_dir / "train.jsonl", Path(base_dir) / "config.json", Path(base_dir) / "base.json"
    )
    early = (
        EarlyStopping(
            score=lambda: score_records(
                peft_model, prompting, validation, data_dir, batch_size=params.evaluate.batch_size
            )[0],
            every=cfg.eval_every,
            patience=cfg.patience,
        )
        if validation
        else None
    )
    t0 = time.perf_counter()
    stats = train(
        peft_model,
        examples,
        train_cfg,
        pad_id=prompting.tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir,
        desc=f"expert {task}",
        stop_after=stop_after,
        progress=progress,
        fingerprint_extra={"inputs": fingerprint, "lora": adapter_fingerprint},
        precision=params.compute.mixed_precision,
        early_stopping=early,
    )
    train_seconds = time.perf_counter() - t0
    if not main:
        return None
    t0 = time.perf_counter()
    expert_acc, _ = score_records(peft_model, prompting, test_records, data_dir, batch_size=params.evaluate.batch_size)
    expert_eval_seconds = time.perf_counter() - t0
    result = ExpertStats(
        task=task,
        expert_accuracy=expert_acc,
        base_accuracy=base_acc,
        train_seconds=round(train_seconds, 2),
        trainable_params=sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        n_test=len(test_records),
        training=stats,
        base_eval_seconds=round(base_eval_seconds, 3),
        expert_eval_seconds=round(expert_eval_seconds, 3),
        n_validation=len(validation),
        overrides=applied_overrides(data_dir, budget_scale) or None,  # what this run trained with
        base=base_identity(params.base, Path(base_dir)),
    )
    save_adapter(peft_model, out_dir, result.to_json(), STATS_FILE)
    return result
