"""The shared training loop's learning-rate schedule (linear warm-up, then cosine decay to lr * min_lr_ratio) and
its batch order (seeded epochs of shuffled data, so that an interrupted run resumes on exactly the same batches)."""

from __future__ import annotations

import math

import pytest

from mllmcl.config import TrainingConfig
from mllmcl.model.training import batch_order, lr_at

CFG = TrainingConfig(steps=200, batch_size=8, lr=0.01, warmup_steps=20, min_lr_ratio=0.1, seed=3)


def test_warm_up_rises_linearly_to_lr():
    lrs = [lr_at(s, CFG) for s in range(CFG.warmup_steps)]
    assert lrs[0] == pytest.approx(CFG.lr / CFG.warmup_steps)
    assert lrs[-1] == pytest.approx(CFG.lr)  # reached at step warmup_steps - 1
    steps = [b - a for a, b in zip(lrs, lrs[1:])]
    assert all(d == pytest.approx(CFG.lr / CFG.warmup_steps) for d in steps)
    assert max(lrs) <= CFG.lr * (1 + 1e-12)


def test_the_first_step_after_warm_up_is_the_peak():
    assert lr_at(CFG.warmup_steps, CFG) == pytest.approx(CFG.lr)


def test_the_cosine_decays_monotonically_towards_the_floor():
    after = [lr_at(s, CFG) for s in range(CFG.warmup_steps, CFG.steps)]
    assert all(b < a for a, b in zip(after, after[1:])), "the decay must be strictly decreasing"
    floor = CFG.lr * CFG.min_lr_ratio
    assert min(after) >= floor * (1 - 1e-12)
    # half-way through the decay the cosine is at its mid-point
    mid = CFG.warmup_steps + (CFG.steps - 1 - CFG.warmup_steps) / 2
    assert lr_at(int(mid), CFG) == pytest.approx(floor + (CFG.lr - floor) / 2, rel=2e-2)
    # the last step that runs is exactly at the floor
    assert lr_at(CFG.steps - 1, CFG) == pytest.approx(floor)
    # and never below it, however long one keeps stepping
    assert lr_at(CFG.steps, CFG) == pytest.approx(floor)
    assert lr_at(10 * CFG.steps, CFG) == pytest.approx(floor)


def test_the_last_step_reaches_the_floor_on_a_short_run():
    cfg = TrainingConfig(steps=10, batch_size=2, lr=0.01, warmup_steps=2, min_lr_ratio=0.1)
    assert lr_at(cfg.steps - 1, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio, rel=1e-6)


def test_no_warm_up_starts_at_lr():
    cfg = CFG.model_copy(update={"warmup_steps": 0})
    assert lr_at(0, cfg) == pytest.approx(cfg.lr)
    assert lr_at(1, cfg) < cfg.lr


def test_min_lr_ratio_one_is_a_constant_lr_after_warm_up():
    cfg = CFG.model_copy(update={"min_lr_ratio": 1.0})
    assert {round(lr_at(s, cfg), 12) for s in range(cfg.warmup_steps - 1, cfg.steps)} == {cfg.lr}


def test_the_shipped_expert_schedule_shape():
    cfg = TrainingConfig()  # the schema defaults (= params.yaml's expert section)
    assert lr_at(cfg.warmup_steps - 1, cfg) == pytest.approx(cfg.lr)
    assert lr_at(cfg.steps - 1, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio, rel=1e-3)


# --- batch order ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 8, 37, 100])
def test_batch_order_has_steps_batches_of_batch_size(n):
    batches = batch_order(n, CFG)
    assert len(batches) == CFG.steps
    assert all(len(b) == CFG.batch_size for b in batches)
    assert all(0 <= i < n for b in batches for i in b)


@pytest.mark.parametrize("n", [5, 37, 100])
def test_every_example_is_seen_once_per_epoch(n):
    flat = [i for b in batch_order(n, CFG) for i in b]
    full_epochs = len(flat) // n
    assert full_epochs >= 1
    for e in range(full_epochs):
        assert sorted(flat[e * n : (e + 1) * n]) == list(range(n)), f"epoch {e} is not a permutation"
    tail = flat[full_epochs * n :]
    assert len(tail) == len(set(tail)), "a partial epoch repeats an example"


def test_epochs_are_shuffled_differently():
    n = 50
    flat = [i for b in batch_order(n, CFG) for i in b]
    assert flat[:n] != list(range(n))
    assert flat[:n] != flat[n : 2 * n]


def test_the_same_seed_gives_the_same_order_and_another_seed_another():
    a = batch_order(100, CFG)
    assert batch_order(100, CFG) == a
    assert batch_order(100, CFG.model_copy(update={"seed": CFG.seed + 1})) != a


def test_the_order_does_not_depend_on_global_random_state():
    import random

    random.seed(123)
    a = batch_order(100, CFG)
    random.seed(456)
    random.random()
    assert batch_order(100, CFG) == a


def test_a_longer_run_extends_the_same_order():
    """Batches are a prefix of the seeded stream: more steps never reorders the earlier ones."""
    short = batch_order(100, CFG)
    long = batch_order(100, CFG.model_copy(update={"steps": CFG.steps * 2}))
    assert long[: CFG.steps] == short


def test_the_lr_is_positive_and_finite_at_every_step():
    assert all(math.isfinite(lr_at(s, CFG)) and lr_at(s, CFG) > 0 for s in range(CFG.steps))
