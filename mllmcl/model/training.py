"""One training loop for every model the pipeline trains (base pretraining, task experts, the router):
seeded, loss on answer tokens only, Accelerate for device placement, a progress bar, and checkpoints
every N steps so an interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.config import TrainingConfig
from mllmcl.errors import DataError
from mllmcl.model.batching import Encoded
from mllmcl.model.prefix import full_loss, plan, split_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyStopping:
    """Checks on a held-out validation split while training: `score()` (higher is better) every `every` steps and at
    the end; the weights of the best check are kept, and the run stops after `patience` checks without improvement
    (0: train every step, still keep the best)."""

    score: Callable[[], float]
    every: int
    patience: int = 0


@dataclass
class TrainStats:
    """What one training run did; stored in each model's stats JSON."""

    steps: int
    resumed_from_step: int
    seconds: float
    seconds_per_step: float
    final_loss: float
    examples: int
    config: dict
    threads: int = 0  # torch CPU threads the run used (compute.threads: auto picks the free cores)
    processes: int = 1  # data-parallel processes (compute.gpus under accelerate launch)
    precision: str = "no"  # mixed precision the run used (bf16 on a CUDA device that supports it)
    shared_prefix_tokens: int = 0  # prompt tokens every example shares, computed once per step (model/prefix.py)
    best_step: int | None = None  # with a validation split: the step whose weights were kept (early stopping)
    stopped_at: int | None = None  # the last step trained (< steps when early stopping ended the run)
    validation: list[list[float]] | None = None  # [step, validation accuracy] at every check
    first_loss: float | None = None  # mean loss of the first quarter of the steps (at most 20): did it learn at all?

    def to_json(self) -> dict:
        return asdict(self)


def training_fields(cfg: TrainingConfig) -> dict:
    """Only the settings the loop uses (a section may carry others, e.g. LoRA rank): the resume fingerprint."""
    return {name: getattr(cfg, name) for name in TrainingConfig.model_fields}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch from one integer (NumPy takes it modulo 2**32)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, cfg: TrainingConfig) -> float:
    """Linear warm-up to lr at step warmup_steps-1, then cosine decay reaching min_lr_ratio * lr at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - 1 - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def batch_order(n: int, cfg: TrainingConfig) -> list[list[int]]:
    """Every step's example indices, fixed by the seed: epochs of shuffled data, so resume is exact."""
    if n <= 0:
        raise DataError("no training examples to order into batches")
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
    cfg: TrainingConfig,
    *,
    pad_id: int,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    desc: str = "train",
    stop_after: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    fingerprint_extra: dict | None = None,
    precision: str = "no",
    label_smoothing: float = 0.0,
    early_stopping: EarlyStopping | None = None,
) -> TrainStats:
    """Train the parameters of `model` that require grad.

    `stop_after` ends the run early (after a checkpoint) - the way tests simulate an interruption.
    `fingerprint_extra` identifies the inputs (data, base) so a checkpoint of other inputs is never resumed.
    `precision`: compute.mixed_precision (`auto`: bf16 on CUDA devices that support it).
    `label_smoothing`: soft targets (mSGM, the benchmark's baseline); 0 trains on the model's own loss.
    `early_stopping`: validation checks, the best weights kept (a resumed run starts its checks afresh)."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if not examples:
        raise DataError("no training examples")
    from mllmcl.model.compute import mixed_precision as resolve_precision

    seed_everything(cfg.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=resolve_precision(precision))
    # data parallel (accelerate launch): every rank takes its share of each step's batch, so the global batch and
    # the example order stay those of one process; DDP averages the gradients
    rank, ranks = accelerator.process_index, accelerator.num_processes
    params = [p for _, p in _trainable(model)]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    extra = {**(fingerprint_extra or {}), **({"label_smoothing": label_smoothing} if label_smoothing else {})}
    fingerprint = json.dumps({**training_fields(cfg), "n": len(examples), **extra}, sort_keys=True, default=str)
    start = _load_checkpoint(checkpoint_dir, model, optimizer, fingerprint) if checkpoint_dir else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    batches = batch_order(len(examples), cfg)
    first = [examples[i] for i in batches[min(start, cfg.steps - 1)]]
    shared = plan(accelerator.unwrap_model(model), examples, pad_id, sample=first, processes=ranks)
    if shared.reason:
        log.debug("%s: full sequences (%s)", desc, shared.reason)
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=desc,
        disable=not (progress and accelerator.is_main_process),
        dynamic_ncols=True,
        mininterval=1.0,
    )
    watch = _Watch(early_stopping, accelerator.unwrap_model(model)) if early_stopping else None
    done = start
    for step in range(start, cfg.steps):
        items = [examples[i] for i in batches[step][rank::ranks]]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        if shared.tokens:
            loss = split_loss(model, items, shared.tokens, pad_id, label_smoothing)
        else:
            loss = full_loss(model, items, pad_id, label_smoothing)
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
            if accelerator.is_main_process:
                _save_checkpoint(Path(checkpoint_dir), accelerator.unwrap_model(model), optimizer, done, fingerprint)
            accelerator.wait_for_everyone()
        if stop_after is not None and done >= stop_after:
            bar.close()
            raise TrainingInterrupted(done)
        if watch and done % early_stopping.every == 0 and done < cfg.steps:
            model.eval()
            stop = watch.check(done)
            model.train()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", val=f"{watch.curve[-1][1]:.3f}")
            if stop:
                break
    bar.close()
    model.eval()
    if watch:
        if not watch.curve or watch.curve[-1][0] != done:
            watch.check(done)
        watch.restore_best()
    seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    if checkpoint_dir and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    tail = losses[-20:] or [float("nan")]
    head = losses[: max(1, min(20, len(losses) // 4))] or [float("nan")]
    return TrainStats(
        steps=cfg.steps,
        resumed_from_step=start,
        seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(1, done - start), 4),
        final_loss=round(sum(tail) / len(tail), 4),
        first_loss=round(sum(head) / len(head), 4),
        examples=len(examples),
        config=training_fields(cfg),
        threads=torch.get_num_threads(),
        processes=ranks,
        precision=accelerator.mixed_precision,
        shared_prefix_tokens=shared.tokens,
        best_step=watch.best_step if watch else None,
        stopped_at=done,
        validation=watch.curve if watch else None,
    )


class _Watch:
    """Early stopping's state: the validation curve, the best score and a copy of the trainable weights at it."""

    def __init__(self, rule: EarlyStopping, model):
        self.rule, self.model = rule, model
        self.curve: list[list[float]] = []
        self.best_score = -math.inf
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self.since_best = 0

    def check(self, step: int) -> bool:
        """Score now; keep the weights when they are the best so far. Returns whether to stop."""
        score = float(self.rule.score())
        self.curve.append([step, round(score, 4)])
        if score > self.best_score:
            self.best_score, self.best_step, self.since_best = score, step, 0
            self.best_state = {n: p.detach().clone() for n, p in _trainable(self.model)}
        else:
            self.since_best += 1
        return bool(self.rule.patience) and self.since_best >= self.rule.patience

    def restore_best(self) -> None:
        import torch

        if self.best_state is None:
            return
        with torch.no_grad():
            for name, param in _trainable(self.model):
                param.copy_(self.best_state[name])


class TrainingInterrupted(RuntimeError):
    """Raised by `stop_after`: the run stopped on purpose with a checkpoint kept."""

    def __init__(self, step: int):
        super().__init__(f"training stopped after step {step} (checkpoint kept)")
        self.step = step
