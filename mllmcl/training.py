"""One training loop for every model the pipeline trains (base pretraining, task experts, the router):
seeded, loss on answer tokens only, Accelerate for device placement, a progress bar, and checkpoints
every N steps so an interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from mllmcl.batching import Encoded, collate, position_ids


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    progress: bool = True

    @classmethod
    def from_section(cls, section: dict, **override) -> "TrainConfig":
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        known.update(override)
        return cls(**known)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def batch_order(n: int, cfg: TrainConfig) -> list[list[int]]:
    """Every step's example indices, fixed by the seed: epochs of shuffled data, so resume is exact."""
    rng = random.Random(cfg.seed)
    order: list[int] = []
    need = cfg.steps * cfg.batch_size
    while len(order) < need:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(cfg.steps)]


def _trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _save_checkpoint(ckpt: Path, model, optimizer, step: int, fingerprint: str) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(model)}, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def _load_checkpoint(ckpt: Path, model, optimizer, fingerprint: str) -> int:
    """Resume from a finished checkpoint of the same run; anything else starts from step 0."""
    import torch
    from safetensors.torch import load_file

    state_file = ckpt / "state.json"
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    if state.get("fingerprint") != fingerprint:
        return 0
    weights = load_file(str(ckpt / "trainable.safetensors"))
    params = dict(_trainable(model))
    if set(weights) != set(params):
        return 0
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    return int(state["step"])


def train(
    model,
    examples: Sequence[Encoded],
    cfg: TrainConfig,
    *,
    pad_id: int,
    checkpoint_dir: Path | None = None,
    desc: str = "train",
    stop_after: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the parameters of `model` that require grad. Returns stats for the stage's JSON.

    `stop_after` ends the run early (after a checkpoint) - the way tests simulate an interruption."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if not examples:
        raise ValueError("no training examples")
    seed_everything(cfg.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    params = [p for _, p in _trainable(model)]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    fingerprint = json.dumps({**asdict(cfg), "progress": None, "n": len(examples)}, sort_keys=True)
    start = _load_checkpoint(checkpoint_dir, model, optimizer, fingerprint) if checkpoint_dir else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    batches = batch_order(len(examples), cfg)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not cfg.progress, dynamic_ncols=True, mininterval=1.0)
    for step in range(start, cfg.steps):
        batch = collate([examples[i] for i in batches[step]], pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        batch["position_ids"] = position_ids(batch["attention_mask"])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(**batch).loss
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
        if on_step:
            on_step(step, losses[-1])
        done = step + 1
        if checkpoint_dir and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            _save_checkpoint(Path(checkpoint_dir), accelerator.unwrap_model(model), optimizer, done, fingerprint)
        if stop_after is not None and done >= stop_after:
            bar.close()
            raise TrainingInterrupted(done)
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    tail = losses[-20:] or [float("nan")]
    return {
        "steps": cfg.steps,
        "resumed_from_step": start,
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(1, cfg.steps - start), 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "examples": len(examples),
        "config": asdict(cfg),
    }


class TrainingInterrupted(RuntimeError):
    def __init__(self, step: int):
        super().__init__(f"training stopped after step {step} (checkpoint kept)")
        self.step = step
