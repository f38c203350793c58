"""The base stage: either reference a Hugging Face image-text-to-text model as is, or build the embedded
tiny LLaVA (tokenizer, configs) and pretrain it on the `general` + `language` suites so it has the
visual vocabulary (colours, shapes, counts, positions) and text-only skills the tasks reuse."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from mllmcl import records as rec_io
from mllmcl.model import BASE_DIR, BASE_REF, Prompting

PRETRAIN_SUITES = ("general", "language")


def tokenizer_corpus(samples_per_generator: int, seed: int, image_size: int) -> list[str]:
    """Text of every benchmark generator, the chat scaffolding and the router prompt, so that their words
    become whole tokens and prompts stay short (sequence length is most of a CPU step's cost)."""
    import numpy as np

    from mllmcl.benchmark import GENERATORS
    from mllmcl.router import BASE, BASE_LETTER, PoolEntry, router_pool_text, router_question

    texts: list[str] = []
    rng = np.random.default_rng(seed)
    for gen in GENERATORS.values():
        texts.append(gen.description)
        for i in range(samples_per_generator):
            for split in ("train", "test"):
                item = gen.make(rng, split, image_size, gen.question_types[i % len(gen.question_types)])
                texts.append(f"USER: {item.question}\nASSISTANT: {item.answer}")
    pool = [PoolEntry(chr(ord("A") + i), g.name, g.description) for i, g in enumerate(GENERATORS.values())]
    pool_text = router_pool_text(pool + [PoolEntry(BASE_LETTER, BASE, "anything else")]) + router_question(pool, "")
    letters = " ".join(f" {chr(c)}" for c in range(ord("A"), ord("Z") + 1)) + f" {BASE_LETTER}"
    texts.extend([pool_text, letters] * samples_per_generator)
    return texts


def _suite_records(root: Path, suite: str, split: str) -> tuple[list[dict], Path]:
    folder = rec_io.task_dir(root / "data", suite)
    return rec_io.read_records(folder / f"{split}.jsonl"), folder


def build_and_pretrain(params: dict, root: Path = Path(".")) -> dict:
    """Build the tiny base, pretrain it and save it to models/base (atomically)."""
    from mllmcl.batching import encode_records
    from mllmcl.experts import score
    from mllmcl.model import set_threads
    from mllmcl.tiny_base import build_processor, build_tiny_llava, save_base, train_tokenizer
    from mllmcl.training import TrainConfig, train

    cfg = params["base"]
    tiny, pre = cfg["tiny"], cfg["pretrain"]
    set_threads(pre.get("threads"))
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(
        tokenizer_corpus(int(tiny["tokenizer_samples"]), int(pre.get("seed", 0)), int(tiny["image_size"])),
        int(tiny["vocab_size"]),
    )
    import torch

    torch.manual_seed(int(pre.get("seed", 0)))
    model = build_tiny_llava(tiny, tokenizer)
    processor = build_processor(tokenizer, int(tiny["image_size"]), int(tiny["vision"]["patch_size"]))
    for name, p in model.named_parameters():
        p.requires_grad = "vision_tower" not in name or bool(tiny.get("train_vision", False))
    prompting = Prompting(processor)
    examples = []
    for suite in PRETRAIN_SUITES:
        records, folder = _suite_records(root, suite, "train")
        examples += encode_records(prompting, records, folder, with_answers=True)
    stats = train(model, examples, TrainConfig.from_section(pre), pad_id=tokenizer.pad_token_id,
                  checkpoint_dir=root / "checkpoints" / "base", desc="pretrain base")
    suites = {}
    for suite in PRETRAIN_SUITES:
        records, folder = _suite_records(root, suite, "test")
        suites[suite], _ = score(model, prompting, records, folder)
    info = {
        "build": "tiny",
        "name_or_path": str(BASE_DIR),
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_seconds": round(time.perf_counter() - t0, 2),
        "pretrain": stats,
        "suite_accuracy": suites,
    }
    out = root / BASE_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=out.parent))
    try:
        save_base(model, processor, tmp)
        (tmp / BASE_REF).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def reference_external(params: dict, root: Path = Path(".")) -> dict:
    """For a real base: record which model it is (it is loaded from its own path or the hub cache)."""
    cfg = params["base"]
    info = {"build": cfg.get("build"), "name_or_path": cfg["name_or_path"], "pretrain_seconds": 0.0}
    out = root / BASE_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / BASE_REF).write_text(json.dumps(info, indent=2) + "\n")
    return info
