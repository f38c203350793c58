"""Batched greedy decoding and next-token probabilities: the two ways the pipeline asks a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mllmcl.data.scoring import accuracy, is_correct
from mllmcl.model.batching import Encoded, add_positions, collate, encode_records


def _batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def generate_texts(
    model,
    tokenizer,
    encoded: Sequence[Encoded],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 6,
    adapter_names: Sequence[str] | None = None,
) -> list[str]:
    """Greedy answers for prompts (no answer tokens in `encoded`); `adapter_names`, one per prompt, answers each
    row with its own LoRA adapter in the same pass (PEFT mixed-adapter batches; "__base__" = none)."""
    import torch

    device = next(model.parameters()).device
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            chunk = list(encoded[start : start + batch_size])
            batch = collate(chunk, tokenizer.pad_token_id)
            batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            if adapter_names is not None:
                batch["adapter_names"] = list(adapter_names[start : start + batch_size])
            width = batch["input_ids"].shape[1]
            ids = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            out.extend(t.strip() for t in tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True))
    return out


def next_token_probs(model, tokenizer, encoded: Sequence[Encoded], *, batch_size: int = 64):
    """Softmax over the vocabulary at the first generated position, one row per prompt."""
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.inference_mode():
        for chunk in _batches(list(encoded), batch_size):
            batch = collate(chunk, tokenizer.pad_token_id)
            batch.pop("labels")
            batch = add_positions(model, {k: v.to(device) for k, v in batch.items()})
            logits = model(**batch).logits[:, -1, :]
            rows.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(rows) if rows else torch.empty(0)


def score_records(
    model, prompting, records: list[dict], task_folder: Path, *, batch_size: int = 64, max_new_tokens: int = 6
) -> tuple[float, list[str]]:
    """Accuracy of `model` (whatever adapter is active) on task records, with its raw answers."""
    enc = encode_records(prompting, records, task_folder, with_answers=False)
    preds = generate_texts(model, prompting.tokenizer, enc, batch_size=batch_size, max_new_tokens=max_new_tokens)
    flags = [is_correct(p, r["answer"], r.get("choices")) for p, r in zip(preds, records)]
    return accuracy(flags), preds
