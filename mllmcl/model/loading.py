"""Loading the base vision-language model and talking to it: one generic path for any Hugging Face
image-text-to-text model (the embedded tiny base included), never model-specific code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmcl.config import BaseConfig
from mllmcl.errors import ModelLoadError

BASE_REF = "base.json"  # written by the base stage: which model is the base and how it was made


def resolve_base(cfg: BaseConfig, base_dir: Path) -> str:
    """What every stage loads as the base: the tiny model the base stage built in `base_dir`, or `name_or_path`."""
    return str(base_dir) if cfg.build == "tiny" else str(cfg.name_or_path)


def load_base(name_or_path: str, *, trust_remote_code: bool = False, dtype: str = "float32"):
    """Model + processor through the Auto classes only, weights from safetensors only. Anything that stops the
    load becomes one `ModelLoadError` naming the folder and the cause."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    path = Path(name_or_path)
    if path.exists() and not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path}: no *.safetensors weights found (only safetensors are loaded)")
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
    except (OSError, ValueError, ImportError, KeyError, RuntimeError) as e:
        # OSError: missing files/hub; ValueError: remote code refused, unknown architecture; ImportError: a
        # processor dependency (torchvision); RuntimeError/KeyError: corrupt or mismatched safetensors
        cause = " ".join(str(e).split())[:300]
        raise ModelLoadError(f"cannot load base model '{name_or_path}': {type(e).__name__}: {cause}") from None
    model.eval()
    return model, processor


@dataclass(frozen=True)
class Prompting:
    """How questions become prompts for one processor (the model's own chat template)."""

    processor: Any
    max_tokens: int | None = None  # the base's context: longer prompts are refused, never silently truncated

    @classmethod
    def for_model(cls, model, processor) -> Prompting:
        """Prompting with the context length the model's config declares (text config for multimodal models)."""
        config = getattr(model, "config", None)
        text = getattr(config, "text_config", None) or config
        limit = getattr(text, "max_position_embeddings", None)
        return cls(processor, int(limit) if isinstance(limit, int) and limit > 0 else None)

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
    """The base stage's base.json in `base_path` (which model, how it was made); a folder without one is described by
    its own path."""
    ref = Path(base_path) / BASE_REF
    return json.loads(ref.read_text()) if ref.exists() else {"name_or_path": base_path}
