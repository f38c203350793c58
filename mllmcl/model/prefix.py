"""A prompt prefix that every training example shares is computed once per step, not once per example.

The router's prompt starts with the pool of experts (about 12 tokens per task, 75 of 115 tokens with five tasks),
identical in every example. The loop runs that prefix once (batch 1), repeats its key/value cache over the batch,
and runs only each example's own suffix on top of it: the same loss and the same gradients (the prefix's graph is
shared), at a cost that no longer grows with the pool for every example. An architecture where the split pass
does not reproduce the full pass exactly is trained on full sequences, as before (`plan` checks it on real data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mllmcl.model.batching import Encoded, add_positions, collate, computes_own_positions

MIN_TOKENS = 16  # a shorter common prefix (a chat template's "USER:") is not worth a second forward pass
TOLERANCE = 1e-4  # relative: the split pass's loss must equal the full pass's


@dataclass(frozen=True)
class PrefixPlan:
    """How a training run batches: `tokens` > 0 shares that many leading tokens; `reason` says why not otherwise."""

    tokens: int
    reason: str = ""


def common_prefix(examples: Sequence[Encoded]) -> int:
    """Leading tokens that every example has alike (ids, labels masked, sequence-aligned inputs equal), leaving at
    least one token of each example to its own pass."""
    first = examples[0]
    limit = min(len(e.input_ids) for e in examples) - 1
    n = 0
    while n < limit and all(e.input_ids[n] == first.input_ids[n] and e.labels[n] == -100 for e in examples):
        n += 1
    for key, value in first.aligned.items():  # token_type_ids and the like must agree over the prefix too
        for e in examples:
            other = e.aligned.get(key)
            while n and (other is None or not bool((other[:, :n] == value[:, :n]).all())):
                n -= 1
    return n


def split_loss(model, items: Sequence[Encoded], prefix: int, pad_id: int, label_smoothing: float = 0.0):
    """The batch's loss from one pass over the shared `prefix` tokens and one over each item's suffix."""
    import torch

    ids = torch.tensor([items[0].input_ids[:prefix]])
    device = next(model.parameters()).device
    head = model(
        input_ids=ids.to(device),
        attention_mask=torch.ones_like(ids).to(device),
        position_ids=torch.arange(prefix)[None].to(device),
        use_cache=True,
    )
    cache = head.past_key_values
    cache.batch_repeat_interleave(len(items))
    tails = [
        Encoded(it.input_ids[prefix:], it.labels[prefix:], it.extras, {k: v[:, prefix:] for k, v in it.aligned.items()})
        for it in items
    ]
    batch = collate(tails, pad_id)
    mask = batch["attention_mask"]
    batch["position_ids"] = prefix + (mask.cumsum(-1) - 1).clamp(min=0)
    batch["attention_mask"] = torch.cat([torch.ones(len(items), prefix, dtype=mask.dtype), mask], dim=1)
    batch = {k: v.to(device) for k, v in batch.items()}
    return _loss(model, {**batch, "past_key_values": cache, "use_cache": True}, label_smoothing)


def full_loss(model, items: Sequence[Encoded], pad_id: int, label_smoothing: float = 0.0):
    """The batch's loss from full, left-padded sequences (every architecture)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(items, pad_id).items()}
    return _loss(model, add_positions(model, batch), label_smoothing)


def _loss(model, batch: dict, label_smoothing: float):
    """The model's own loss, or with `label_smoothing` > 0 the same next-token loss on soft targets (the model's loss
    functions take no smoothing)."""
    if not label_smoothing:
        return model(**batch).loss
    labels = batch.pop("labels")
    return smoothed_loss(model(**batch).logits, labels, label_smoothing)


def smoothed_loss(logits, labels, label_smoothing: float):
    """Next-token cross-entropy over the labelled tokens (label -100 elsewhere), with `label_smoothing` of the target's
    probability spread over the vocabulary: mSGM's soft targets."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(logits.device)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
    )


def plan(
    model, examples: Sequence[Encoded], pad_id: int, *, sample: Sequence[Encoded], processes: int = 1
) -> PrefixPlan:
    """Share the common prefix of `examples` when it is long enough and the split pass gives this model's full-pass
    loss on `sample` (a real batch; checked without gradients, dropout off)."""
    import torch

    if processes > 1:
        return PrefixPlan(0, "data parallel: DDP allows one forward pass per backward")
    if computes_own_positions(model):
        return PrefixPlan(0, "the model derives its own (multi-dimensional) positions")
    tokens = common_prefix(examples)
    if tokens < MIN_TOKENS:
        return PrefixPlan(0, f"common prefix of {tokens} tokens (< {MIN_TOKENS})")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = float(full_loss(model, sample, pad_id))
            split = float(split_loss(model, sample, tokens, pad_id))
    except Exception as e:  # an architecture whose forward does not take a shared cache this way
        return PrefixPlan(0, f"split pass failed ({type(e).__name__}: {e})")
    finally:
        model.train(was_training)
    if abs(full - split) > TOLERANCE * max(1.0, abs(full)):
        return PrefixPlan(0, f"split pass loss {split:.6f} != full pass loss {full:.6f}")
    return PrefixPlan(tokens)
