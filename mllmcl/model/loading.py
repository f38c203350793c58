"""Loading the base vision-language model and talking to it: one generic path for any Hugging Face
image-text-to-text model (the embedded tiny base included), never model-specific code."""

from __future__ import annotations

import functools
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    path = Path(name_or_path)
    if path.exists() and not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path}: no *.safetensors weights found (only safetensors are loaded)")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        processor = load_processor(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=getattr(torch, dtype),
        )
    except ModelLoadError:
        raise
    except Exception as e:
        # OSError: missing files or not in the hub cache; ValueError: remote code refused, unknown architecture;
        # SafetensorError/RuntimeError: corrupt or mismatched weights; ImportError: a missing processor dependency
        cause = " ".join(str(e).split())[:300]
        hint = (
            " (it needs its own code: set base.trust_remote_code: true if you trust it)"
            if "trust_remote_code" in cause
            else ""
        )
        raise ModelLoadError(f"cannot load base model '{name_or_path}': {type(e).__name__}: {cause}{hint}") from None
    if getattr(processor, "chat_template", None) is None:
        raise ModelLoadError(
            f"{name_or_path}: the processor has no chat template; add a chat_template.jinja to the model folder "
            "(the pipeline builds every prompt with the model's own template)"
        )
    model.eval()
    return model, processor


def load_processor(name_or_path: str, *, trust_remote_code: bool = False):
    """AutoProcessor, or - when it fails for want of torchvision (processors with a video part: Qwen-VL, InternVL,
    SmolVLM, LLaVA-OneVision) - the same processor class built from AutoTokenizer + AutoImageProcessor (its PIL
    backend) without the video processor. Images and text work; video is not used by this pipeline."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ImportError, ValueError) as e:
        message = str(e).lower()
        if "video" not in message and "torchvision" not in message:
            raise
        path = Path(name_or_path)
        if not path.is_dir():
            raise
        return _processor_without_video(path, trust_remote_code)


def _processor_without_video(path: Path, trust_remote_code: bool):
    import inspect

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    def read(name: str) -> dict:
        f = path / name
        return json.loads(f.read_text()) if f.is_file() else {}

    config = read("processor_config.json")
    name = (
        config.get("processor_class")
        or read("preprocessor_config.json").get("processor_class")
        or read("tokenizer_config.json").get("processor_class")
    )
    cls = getattr(transformers, name or "", None)
    if cls is None:
        raise ModelLoadError(f"{path}: its processor needs torchvision, and no processor class is recorded to build it")
    kwargs: dict = {}
    for attr in cls.get_attributes():
        if "tokenizer" in attr:
            kwargs[attr] = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        elif "image_processor" in attr:
            kwargs[attr] = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        elif "video" in attr:
            kwargs[attr] = None
        else:
            raise ModelLoadError(f"{path}: {cls.__name__} needs its {attr}, which cannot be built without torchvision")
    accepted = inspect.signature(cls.__init__).parameters
    kwargs.update({k: v for k, v in config.items() if k in accepted and k not in kwargs and not isinstance(v, dict)})
    template = path / "chat_template.jinja"
    if template.is_file():
        kwargs["chat_template"] = template.read_text()
    elif read("chat_template.json").get("chat_template"):
        kwargs["chat_template"] = read("chat_template.json")["chat_template"]
    with video_processor_optional():
        return cls(**kwargs)


@contextmanager
def video_processor_optional():
    """Let a processor whose __init__ takes a video_processor be built with video_processor=None: ProcessorMixin checks
    every sub-processor's class, and without torchvision the video base class cannot even be looked up."""
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def lenient(self, argument_name, argument):
        return None if argument is None and "video" in argument_name else original(self, argument_name, argument)

    ProcessorMixin.check_argument_for_proper_class = lenient
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = original


@dataclass(frozen=True)
class Prompting:
    """How questions become prompts for one processor (the model's own chat template)."""

    processor: Any
    max_tokens: int | None = None  # the base's context: longer prompts are refused, never silently truncated
    answer_fill: dict = field(default_factory=dict)  # sequence-aligned inputs: their value over answer tokens

    @classmethod
    def for_model(cls, model, processor) -> Prompting:
        """Prompting with the context length the model's config declares (text config for multimodal models) and the
        values its own generation step gives sequence-aligned inputs for a generated token."""
        config = getattr(model, "config", None)
        text = getattr(config, "text_config", None) or config
        limit = getattr(text, "max_position_embeddings", None)
        plain = cls(processor, int(limit) if isinstance(limit, int) and limit > 0 else None)
        return cls(plain.processor, plain.max_tokens, _answer_fill(model, plain._aligned_keys()))

    def _aligned_keys(self) -> set[str]:
        """Names of the processor's outputs that have the shape of input_ids (probed on a tiny image and on text)."""
        from PIL import Image

        keys: set[str] = set()
        for image in (Image.new("RGB", (32, 32)), None):
            kwargs = {"text": [self.prompt("?", has_image=image is not None)], "return_tensors": "pt"}
            if image is not None:
                kwargs["images"] = [image]
            try:
                out = self.processor(**kwargs)
            except Exception:
                continue
            ids = out["input_ids"]
            keys |= {
                k
                for k, v in out.items()
                if k not in ("input_ids", "attention_mask", "labels") and hasattr(v, "shape") and v.shape == ids.shape
            }
        return keys

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


def _answer_fill(model, keys: set[str]) -> dict[str, int]:
    """Per sequence-aligned input, the value generate() appends for a new token (PaliGemma's token_type_ids: 1, so
    answer tokens attend causally; Gemma 3 / Qwen-VL: 0), asked of the model's own generation step."""
    import torch

    fill = {}
    for key in sorted(keys):
        kwargs = {key: torch.zeros((1, 1), dtype=torch.long), "attention_mask": torch.ones((1, 1), dtype=torch.long)}
        try:
            from transformers.utils import ModelOutput

            kwargs = model._update_model_kwargs_for_generation(ModelOutput(), kwargs, num_new_tokens=1)
            fill[key] = int(kwargs[key][0, -1])
        except Exception:
            fill[key] = 0
    return fill


def lora_target_regex(modules: list[str], scope: str = "language_model") -> str:
    """PEFT target regex limited to the language model: plain names would also wrap the vision tower."""
    return rf".*{scope}.*\.({'|'.join(modules)})$"


def read_base_ref(base_path: str) -> dict:
    """The base stage's base.json in `base_path` (which model, how it was made); a folder without one is described by
    its own path."""
    ref = Path(base_path) / BASE_REF
    return json.loads(ref.read_text()) if ref.exists() else {"name_or_path": base_path}


_FULL_HASH_BYTES = 256 << 20  # files up to this size are hashed whole; larger ones by size, head and tail
_EDGE_BYTES = 1 << 20


def folder_digest(folder: Path) -> str:
    """sha256 of a local model folder's files, base.json left out: it also records how long pretraining took, so two
    bit-identical builds would otherwise look like two bases. Files over 256 MB count by size, first and last MB (a
    7B model's shards are hashed in seconds, not minutes). Kept per process while no file changes."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != BASE_REF)
    stamp = tuple((f.relative_to(folder).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _folder_digest(str(folder.resolve()), stamp)


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for name, size, _ in stamp:
        h.update(f"{name}:{size}\n".encode())
        with open(Path(folder) / name, "rb") as f:
            if size <= _FULL_HASH_BYTES:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            else:
                h.update(f.read(_EDGE_BYTES))
                f.seek(size - _EDGE_BYTES)
                h.update(f.read(_EDGE_BYTES))
    return h.hexdigest()


def base_identity(cfg: BaseConfig, base_dir: Path) -> dict:
    """Which base a result was measured on, the same on every machine that built or copied the same model: a local
    folder by its files (folder_digest), a hub id by its name."""
    where = resolve_base(cfg, base_dir)
    if not Path(where).is_dir():
        return {"build": cfg.build, "name_or_path": where}
    return {"build": cfg.build, "sha256": folder_digest(Path(where))}  # no path: it differs between machines
