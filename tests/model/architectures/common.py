"""Shared helpers for the tiny-architecture builders: a tiny byte-level BPE tokenizer and save/env setup."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

CORPUS = [
    "what color is the square in the image answer red green blue yellow black white",
    "how many objects are there one two three four five six seven eight nine ten",
    "is there a circle yes no the shape is a triangle square circle",
    "describe the picture a small red cat sits on the left of a blue box",
    "user assistant system question answer image picture photo",
] * 20


def tiny_tokenizer(
    special: list[str],
    extra: dict[str, str] | None = None,
    *,
    vocab_size: int = 400,
    pad="<pad>",
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    padding_side="left",
):
    """Byte-level BPE with `special` tokens (ids 0..), `extra` = named special tokens (image_token=...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = [t for t in (pad, bos, eos, unk) if t]
    specials = base + [t for t in special if t not in base]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials),
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        extra_special_tokens=extra or {},
        padding_side=padding_side,
    )


def save(model, processor, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_processor(processor, out)
    return out


def save_processor(processor, out) -> None:
    """processor.save_pretrained, or - when a sub-processor is None (no video processor) - the same files by hand:
    tokenizer files, chat_template.jinja and processor_config.json."""
    try:
        processor.save_pretrained(out)
        return
    except AttributeError:
        pass
    out = Path(out)
    tok = processor.tokenizer
    tok._set_processor_class(type(processor).__name__)
    tok.save_pretrained(out)
    if isinstance(processor.chat_template, str):
        (out / "chat_template.jinja").write_text(processor.chat_template)
    processor.to_json_file(str(out / "processor_config.json"))


def seed_all(seed: int = 0) -> None:
    """Fixed random weights: the same builder always writes the same model."""
    import torch

    torch.manual_seed(seed)
