"""Tiny random models of the architectures teams use as a base, built from their transformers config classes (no
weights, offline). Each module's `build()` returns (model, processor); `common.save` writes them as a model folder
that `base.name_or_path` can name. The config rules that keep each one tiny and valid are in its docstring."""

from importlib import import_module
from pathlib import Path

ARCHITECTURES = ("llava", "llava_next", "qwen2_vl", "idefics3", "gemma3", "paligemma", "internvl")


def build(name: str, out: Path) -> Path:
    """Write the tiny random `name` model (and its processor) to `out`."""
    from tests.model.architectures.common import save

    module = import_module(f"tests.model.architectures.{name}")
    return save(*module.build(), out)
