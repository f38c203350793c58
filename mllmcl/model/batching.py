"""Records -> model inputs. Encoding happens once per data set (the processor expands image tokens and
prepares pixels), batching is then cheap tensor work; left padding serves training and generation alike."""

from __future__ import annotations

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
    extras: dict[str, Any] = field(default_factory=dict)  # processor tensors besides the text (pixel_values, ...)


ANSWER_ROOM = 16  # tokens kept free for the answer
MAX_IMAGE_SIDE = 4096  # pixels: larger images are refused before they are decoded (memory, decompression bombs)


def open_image(path: Path, *, where: str = ""):
    """Decode an image as RGB, turning any decoding problem into a clear error that names the file (and `where`, e.g.
    the request's line). The size is checked from the header, before a single pixel is decoded."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    prefix = f"{where}: " if where else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
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
    processor = prompting.processor
    text = prompting.prompt(question, has_image=image is not None, prefix=prefix)
    kwargs = {"text": [text], "return_tensors": "pt"}
    if image is not None:
        kwargs["images"] = [image]
    out = processor(**kwargs)
    prompt_ids = out["input_ids"][0].tolist()
    if prompting.max_tokens and len(prompt_ids) + ANSWER_ROOM > prompting.max_tokens:
        raise DataError(
            f"the question is {len(prompt_ids)} tokens with its prompt; the base's context holds "
            f"{prompting.max_tokens} (answer room {ANSWER_ROOM} included): shorten it"
        )
    extras = {k: v for k, v in out.items() if k not in ("input_ids", "attention_mask")}
    if answer is None:
        return Encoded(prompt_ids, [-100] * len(prompt_ids), extras)
    ans = prompting.answer_ids(answer)
    return Encoded(prompt_ids + ans, [-100] * len(prompt_ids) + ans, extras)


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
    keys = sorted({k for it in items for k in it.extras})
    for k in keys:
        parts = [it.extras[k] for it in items if k in it.extras]
        if parts and all(torch.is_tensor(p) for p in parts):
            batch[k] = torch.cat(parts, dim=0)
    return batch


def position_ids(attention_mask):
    """Positions that ignore left padding, so a padded prompt sees the same positions as an unpadded one."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
