"""Records -> model inputs, for any Hugging Face image-text-to-text processor. Encoding happens once per data set
(the processor expands image tokens and prepares pixels); batching is then cheap tensor work. Left padding serves
training and generation alike. The processor's outputs are of two kinds, told apart by shape, not by name:
sequence-aligned ones (same shape as input_ids: Gemma 3 / PaliGemma `token_type_ids`, Qwen-VL `mm_token_type_ids`)
are padded and extended with the text, and per-image ones (`pixel_values`, `image_sizes`, `image_grid_thw`,
`pixel_attention_mask`, ...) are concatenated, zero-padded where images give different numbers of tiles."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllmcl.errors import DataError
from mllmcl.model.loading import Prompting


@dataclass
class Encoded:
    """One prompt (and, for training, its answer) ready for batching."""

    input_ids: list[int]
    labels: list[int]
    extras: dict[str, Any] = field(default_factory=dict)  # per-image processor tensors (pixel_values, image_sizes...)
    aligned: dict[str, Any] = field(default_factory=dict)  # tensors aligned with input_ids (token_type_ids, ...)


ANSWER_ROOM = 16  # tokens kept free for the answer
MAX_IMAGE_SIDE = 4096  # pixels: larger images are refused before they are decoded (memory, decompression bombs)


def open_image(path: Path, *, where: str = ""):
    """Decode an image as RGB, turning any decoding problem into a clear error that names the file (and `where`, e.g.
    the request's line). The size is checked from the header, before a single pixel is decoded."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    from mllmcl.data.images import read_image_bytes

    prefix = f"{where}: " if where else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(read_image_bytes(path))) as im:
                w, h = im.size
                if max(w, h) > MAX_IMAGE_SIDE:
                    raise DataError(
                        f"{prefix}{path}: image is {w}x{h} pixels; the largest side accepted is {MAX_IMAGE_SIDE}"
                    )
                im.load()
                return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{prefix}{path}: image not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{prefix}{path}: refused as a decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{prefix}{path}: not a readable image ({e})") from None


def encode(
    prompting: Prompting,
    question: str,
    image=None,
    answer: str | None = None,
    prefix: str | None = None,
) -> Encoded:
    """Tokenize one prompt (the processor expands the image) and, with `answer`, append it; prompt tokens are labelled
    -100 so only the answer is learned."""
    import torch

    processor = prompting.processor
    text = prompting.prompt(question, has_image=image is not None, prefix=prefix)
    kwargs = {"text": [text], "return_tensors": "pt"}
    if image is not None:
        kwargs["images"] = [image]
    try:
        out = dict(processor(**kwargs))
    except ValueError:
        if image is not None:
            raise
        # a processor that refuses text without an image (PaliGemma): the tokenizer alone encodes a text-only prompt
        out = dict(prompting.tokenizer([text], return_tensors="pt", return_token_type_ids=True))
    out.pop("labels", None)  # some processors make their own (PaliGemma): the answer's labels are ours
    ids = out.pop("input_ids")
    out.pop("attention_mask", None)
    prompt_ids = ids[0].tolist()
    if prompting.max_tokens and len(prompt_ids) + ANSWER_ROOM > prompting.max_tokens:
        raise DataError(
            f"the question is {len(prompt_ids)} tokens with its prompt; the base's context holds "
            f"{prompting.max_tokens} (answer room {ANSWER_ROOM} included): shorten it"
        )
    aligned = {k: v for k, v in out.items() if torch.is_tensor(v) and v.shape == ids.shape}
    extras = {k: v for k, v in out.items() if k not in aligned}
    if answer is None:
        return Encoded(prompt_ids, [-100] * len(prompt_ids), extras, aligned)
    ans = prompting.answer_ids(answer)
    aligned = {  # over the answer, the value generate() gives a generated token (PaliGemma: 1, others: 0)
        k: torch.cat([v, torch.full((1, len(ans)), prompting.answer_fill.get(k, 0), dtype=v.dtype)], dim=1)
        for k, v in aligned.items()
    }
    return Encoded(prompt_ids + ans, [-100] * len(prompt_ids) + ans, extras, aligned)


def encode_records(
    prompting: Prompting,
    records: Sequence[dict],
    task_folder: Path | None,
    *,
    with_answers: bool,
    question_fn=None,
    answer_fn=None,
    progress: bool = False,
) -> list[Encoded]:
    """Encode task records; `question_fn`/`answer_fn` rewrite them (the router asks a different question)."""
    from tqdm.auto import tqdm

    out = []
    for rec in tqdm(records, desc="encode", disable=not progress, leave=False):
        where = f"{task_folder}: record {rec.get('id')}"
        image = open_image(Path(task_folder) / rec["image"], where=where) if rec.get("image") else None
        question = question_fn(rec) if question_fn else rec["question"]
        answer = (answer_fn(rec) if answer_fn else rec["answer"]) if with_answers else None
        try:
            out.append(encode(prompting, question, image, answer))
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    return out


def collate(items: Iterable[Encoded], pad_id: int) -> dict[str, Any]:
    """Left-pad items to the longest (labels with -100) and concatenate tensor extras such as pixel_values; text-only
    items add no extras."""
    import torch

    items = list(items)
    width = max(len(it.input_ids) for it in items)
    ids, mask, labels = [], [], []
    for it in items:
        pad = width - len(it.input_ids)
        ids.append([pad_id] * pad + it.input_ids)
        mask.append([0] * pad + [1] * len(it.input_ids))
        labels.append([-100] * pad + it.labels)
    batch: dict[str, Any] = {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }
    for k in sorted({k for it in items for k in it.aligned}):
        rows = []
        for it in items:
            value = it.aligned.get(k)  # an item without it (text-only beside image items) is all text: 0
            if value is None:
                value = torch.zeros((1, len(it.input_ids)), dtype=torch.long)
            rows.append(torch.nn.functional.pad(value, (width - len(it.input_ids), 0)))
        batch[k] = torch.cat(rows, dim=0)
    for k in sorted({k for it in items for k in it.extras}):
        parts = [it.extras[k] for it in items if k in it.extras]
        if parts and all(torch.is_tensor(p) for p in parts):
            batch[k] = _pad_cat(parts)
    return batch


def _pad_cat(parts: list) -> Any:
    """Concatenate per-image tensors on dim 0, zero-padding the other dims to the largest (any-res patches,
    image-splitting tiles: models skip the all-zero padding by their image_sizes / pixel masks)."""
    import torch

    if len({tuple(p.shape[1:]) for p in parts}) == 1:
        return torch.cat(parts, dim=0)
    target = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
    padded = []
    for p in parts:
        pad: list[int] = []
        for d in reversed(range(1, p.dim())):
            pad += [0, target[d - 1] - p.shape[d]]
        padded.append(torch.nn.functional.pad(p, pad))
    return torch.cat(padded, dim=0)


_OWN_POSITIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def computes_own_positions(model) -> bool:
    """Models with multi-dimensional rotary positions (Qwen-VL's M-RoPE, GLM-4V, ...) derive them from the inputs
    themselves; every other model gets 1-D positions that skip left padding."""
    cached = _OWN_POSITIONS.get(model)
    if cached is None:
        cached = _OWN_POSITIONS[model] = any(hasattr(module, "get_rope_index") for module in model.modules())
    return cached


def add_positions(model, batch: dict) -> dict:
    """Positions that ignore left padding (a padded prompt sees the positions of an unpadded one), unless the model
    computes its own."""
    if not computes_own_positions(model):
        batch["position_ids"] = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return batch
