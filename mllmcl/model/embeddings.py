"""The base model's own view of a request, as two small vectors: what drift monitoring and the open-set check
compare, because a handcrafted image statistic misses what the model actually sees.

- Image: the mean of the language model's input embeddings at the image-token positions, i.e. the projector's
  output for the image (no LoRA trains it unless a params section lists the projector in `modules_to_save`).
  It is read off a forward pass the router makes anyway, so it costs nothing extra.
- Question: the mean of the base's token embeddings of the question text alone (no prompt template)."""

from __future__ import annotations

from collections.abc import Sequence


def image_token_id(model) -> int | None:
    """The id that marks image positions in input_ids (LLaVA, Qwen-VL, Gemma 3, Idefics/SmolVLM, InternVL...), or
    None for an architecture that does not expand image tokens in the text."""
    config = getattr(model, "config", None)
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def pooled_image_embeddings(inputs_embeds, input_ids, token_id: int | None) -> list:
    """One vector per row (numpy float32): the mean over that row's image positions; None for a text-only row."""
    out = []
    for row in range(input_ids.shape[0]):
        where = (input_ids[row] == token_id) if token_id is not None else None
        if where is None or not bool(where.any()):
            out.append(None)
        else:
            out.append(inputs_embeds[row][where].float().mean(dim=0).cpu().numpy())
    return out


class _Stop(Exception):
    """Raised by the decoder's pre-hook once it holds the input embeddings: the decoder itself never runs."""


def decoder_input_embeddings(model, batch: dict):
    """hidden_states[0] of a forward pass (the decoder's input embeddings, image features merged in) without running
    the decoder: the vision tower and projector are all it costs. Architectures that do not pass `inputs_embeds` to
    their decoder get a full forward pass instead."""
    import torch

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None:
        return model(**batch, output_hidden_states=True).hidden_states[0]
    captured = {}

    def grab(_module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if isinstance(embeds, torch.Tensor):
            captured["embeds"] = embeds
            raise _Stop

    handle = decoder.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(**batch)
    except _Stop:
        return captured["embeds"]
    finally:
        handle.remove()
    return model(**batch, output_hidden_states=True).hidden_states[0]


def question_embeddings(model, tokenizer, questions: Sequence[str]):
    """(n, hidden) float32: mean token embedding of each question (an empty question: zeros)."""
    import numpy as np
    import torch

    table = model.get_input_embeddings()
    rows = []
    with torch.inference_mode():
        for q in questions:
            ids = tokenizer(q, add_special_tokens=False)["input_ids"]
            if not ids:
                rows.append(np.zeros(table.weight.shape[1], dtype=np.float32))
                continue
            vec = table(torch.tensor(ids, device=table.weight.device)).float().mean(dim=0)
            rows.append(vec.cpu().numpy())
    return np.stack(rows) if rows else np.zeros((0, table.weight.shape[1]), dtype=np.float32)
