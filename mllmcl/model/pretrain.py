"""The base stage: either reference a Hugging Face image-text-to-text model as is, or build the embedded
tiny LLaVA (tokenizer, configs) and pretrain it on the `general` + `language` suites so it has the
visual vocabulary (colours, shapes, counts, positions) and text-only skills the tasks reuse."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mllmcl.config import BaseConfig
from mllmcl.data import records as rec_io
from mllmcl.model.loading import BASE_REF, Prompting

PRETRAIN_SUITES = ("general", "language")


def tokenizer_corpus(samples_per_generator: int, seed: int, image_size: int, extra: Sequence[str] = ()) -> list[str]:
    """Text of every benchmark generator and the chat scaffolding, plus `extra` (the router's prompt words), so
    that their words become whole tokens and prompts stay short (sequence length is most of a CPU step's cost)."""
    import numpy as np

    from mllmcl.data.benchmark import GENERATORS

    texts: list[str] = []
    rng = np.random.default_rng(seed)
    for gen in GENERATORS.values():
        texts.append(gen.description)
        for i in range(samples_per_generator):
            for split in ("train", "test"):
                item = gen.make(rng, split, image_size, gen.question_types[i % len(gen.question_types)])
                texts.append(f"USER: {item.question}\nASSISTANT: {item.answer}")
    texts.extend(list(extra) * samples_per_generator)
    return texts


def build_and_pretrain(
    cfg: BaseConfig,
    suites: dict[str, Path],
    out_dir: Path,
    *,
    checkpoint_dir: Path | None = None,
    extra_vocabulary: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """Build the tiny base, pretrain it on the suites' train splits, score their test splits, and save it to
    `out_dir` atomically (a crash leaves the previous base, never half of one)."""
    import torch

    from mllmcl.model.batching import encode_records
    from mllmcl.model.generation import score_records
    from mllmcl.model.tiny import build_processor, build_tiny_llava, save_base, train_tokenizer
    from mllmcl.model.training import train

    tiny, pre = cfg.tiny, cfg.pretrain
    t0 = time.perf_counter()
    corpus = tokenizer_corpus(tiny.tokenizer_samples, pre.seed, tiny.image_size, extra_vocabulary)
    tokenizer = train_tokenizer(corpus, tiny.vocab_size)
    torch.manual_seed(pre.seed)
    model = build_tiny_llava(tiny, tokenizer)
    processor = build_processor(tokenizer, tiny.image_size, tiny.vision.patch_size)
    for name, p in model.named_parameters():
        p.requires_grad = "vision_tower" not in name or tiny.train_vision
    prompting = Prompting.for_model(model, processor)
    examples = []
    for folder in suites.values():
        examples += encode_records(prompting, rec_io.read_records(folder / "train.jsonl"), folder, with_answers=True)
    stats = train(
        model,
        examples,
        pre,
        pad_id=tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir,
        desc="pretrain base",
        progress=progress,
    )
    suite_accuracy = {}
    for suite, folder in suites.items():
        suite_accuracy[suite], _ = score_records(model, prompting, rec_io.read_records(folder / "test.jsonl"), folder)
    info = {
        "build": "tiny",
        "name_or_path": str(out_dir),
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_seconds": round(time.perf_counter() - t0, 2),
        "pretrain": stats.to_json(),
        "suite_accuracy": suite_accuracy,
    }
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=out_dir.parent))
    try:
        save_base(model, processor, tmp)
        (tmp / BASE_REF).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def reference_external(cfg: BaseConfig, out_dir: Path) -> dict:
    """For a real base: record which model it is (it is loaded from its own path or the hub cache)."""
    info = {"build": cfg.build, "name_or_path": cfg.name_or_path, "pretrain_seconds": 0.0}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BASE_REF).write_text(json.dumps(info, indent=2) + "\n")
    return info
