"""Loading the base vision-language model and talking to it: one generic path for any Hugging Face
image-text-to-text model (the embedded tiny base included), never model-specific code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmcl.errors import UserError

BASE_DIR = Path("models/base")
BASE_REF = "base.json"  # written by the base stage: which model is the base and how it was made


def resolve_base(base_cfg: dict[str, Any], root: Path = Path(".")) -> str:
    """The path or hub id every stage loads as the base: the locally built tiny model, or `name_or_path`."""
    if base_cfg.get("build", "tiny") == "tiny":
        return str(root / BASE_DIR)
    name = base_cfg.get("name_or_path")
    if not name:
        raise UserError("params.yaml: base.build is not 'tiny', so base.name_or_path must name a model")
    return str(name)


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(int(n))


def load_base(name_or_path: str, *, trust_remote_code: bool = False, dtype: str = "float32"):
    """Model + processor through the Auto classes only, weights from safetensors only."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    path = Path(name_or_path)
    if path.exists() and not any(path.glob("*.safetensors")):
        raise UserError(f"{path}: no *.safetensors weights found (only safetensors are loaded)")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=getattr(torch, dtype),
        )
    except OSError as e:
        raise UserError(f"cannot load base model '{name_or_path}': {e}") from None
    model.eval()
    return model, processor


@dataclass(frozen=True)
class Prompting:
    """How questions become prompts for one processor (the model's own chat template)."""

    processor: Any

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def prompt(self, question: str, has_image: bool, prefix: str | None = None) -> str:
        """`prefix` goes before the image: long instructions first keep the image close to the answer."""
        content = [{"type": "text", "text": prefix}] if prefix else []
        content += ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of the answer as the model should produce it, ending with EOS."""
        tok = self.tokenizer
        ids = tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        return list(ids) + [tok.eos_token_id]


def lora_target_regex(modules: list[str], scope: str = "language_model") -> str:
    """PEFT target regex limited to the language model: plain names would also wrap the vision tower."""
    return rf".*{scope}.*\.({'|'.join(modules)})$"


def read_base_ref(base_path: str) -> dict:
    ref = Path(base_path) / BASE_REF
    return json.loads(ref.read_text()) if ref.exists() else {"name_or_path": base_path}
