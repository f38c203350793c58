"""Task experts: one LoRA per task, always trained from the base and never touched again
(parameter isolation, MR-LoRA). Also measures the expert alone and the zero-shot base on the task."""

from __future__ import annotations

import time
from pathlib import Path

from mllmcl import records as rec_io
from mllmcl.adapters import lora_config, save_adapter
from mllmcl.batching import encode_records
from mllmcl.generation import generate_texts
from mllmcl.model import Prompting, load_base, resolve_base, set_threads
from mllmcl.scoring import accuracy, is_correct
from mllmcl.training import TrainConfig, train

EXPERTS_DIR = Path("models/experts")
STATS_FILE = "train_stats.json"


def score(model, prompting: Prompting, records: list[dict], task_folder: Path, *, batch_size: int = 64) -> tuple[float, list[str]]:
    """Accuracy of `model` (whatever adapter is active) on records, with its raw answers."""
    enc = encode_records(prompting, records, task_folder, with_answers=False)
    preds = generate_texts(model, prompting.tokenizer, enc, batch_size=batch_size)
    flags = [is_correct(p, r["answer"], r.get("choices")) for p, r in zip(preds, records)]
    return accuracy(flags), preds


def train_expert(task: str, params: dict, root: Path = Path("."), *, stop_after: int | None = None) -> dict:
    cfg = params["expert"]
    set_threads(cfg.get("threads"))
    task_folder = rec_io.task_dir(root / "data", task)
    train_records = rec_io.read_records(task_folder / "train.jsonl")
    test_records = rec_io.read_records(task_folder / "test.jsonl")

    model, processor = load_base(resolve_base(params["base"], root))
    prompting = Prompting(processor)
    base_acc, _ = score(model, prompting, test_records, task_folder)

    from peft import get_peft_model

    examples = encode_records(prompting, train_records, task_folder, with_answers=True)
    peft_model = get_peft_model(model, lora_config(cfg))
    train_cfg = TrainConfig.from_section(cfg, seed=int(cfg.get("seed", 0)) + task_seed(task))
    t0 = time.perf_counter()
    stats = train(
        peft_model,
        examples,
        train_cfg,
        pad_id=prompting.tokenizer.pad_token_id,
        checkpoint_dir=root / "checkpoints" / f"expert-{task}",
        desc=f"expert {task}",
        stop_after=stop_after,
    )
    train_seconds = time.perf_counter() - t0
    expert_acc, _ = score(peft_model, prompting, test_records, task_folder)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    stats.update(
        task=task,
        expert_accuracy=expert_acc,
        base_accuracy=base_acc,
        train_seconds=round(train_seconds, 2),
        trainable_params=trainable,
        n_test=len(test_records),
    )
    save_adapter(peft_model, root / EXPERTS_DIR / task, stats, STATS_FILE)
    return stats


def task_seed(task: str) -> int:
    import zlib

    return zlib.crc32(task.encode()) % 10_000
