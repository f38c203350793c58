"""LoRA adapters on the base: PEFT configs from params, saving exactly the adapter files, and loading them
as named adapters with errors that name the broken file."""

from __future__ import annotations

import json
import shutil
import tempfile
import types
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from mllmcl.config import AdapterConfig
from mllmcl.errors import ModelLoadError
from mllmcl.model.anatomy import resolve
from mllmcl.model.loading import lora_target_regex

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def lora_config(cfg: AdapterConfig, model=None, *, role: str = "expert"):
    """PEFT LoraConfig for one `expert:`/`router:` params section, `auto` settings resolved against `model`.
    `modules_to_save` are trained in full and stored in the adapter (the projector for experts; the output head for
    the router, whose letters the base never produced in pretraining, so LoRA alone barely moves their
    probabilities)."""
    from peft import LoraConfig

    targets, scope, save = list(cfg.target_modules), cfg.language_model_scope, cfg.modules_to_save
    if model is not None:
        targets, scope, save = resolve(model, cfg.target_modules, cfg.language_model_scope, save, role=role)
    elif "auto" in (cfg.target_modules, cfg.language_model_scope, cfg.modules_to_save):
        raise ValueError("lora_config: 'auto' settings need the model to resolve them")
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_regex(targets, scope),
        modules_to_save=list(save) or None,
        bias="none",
    )


def new_adapter(model, config, *, seed: int):
    """A fresh trainable LoRA adapter on `model`, initialised from `seed`. PEFT draws LoRA's A matrices from torch's
    global generator, whose state at that point depended on whatever ran before in the process: three fresh runs of
    one expert on the same data and base scored 0.567, 0.717 and 0.750 before this was seeded."""
    from peft import get_peft_model

    from mllmcl.model.training import seed_everything

    seed_everything(seed)
    return get_peft_model(model, config)


def save_adapter(peft_model, out_dir: Path, stats: dict, stats_name: str) -> None:
    """Write adapter weights + config + a stats JSON, and nothing else, replacing out_dir atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        for extra in tmp.iterdir():
            if extra.name not in ADAPTER_FILES:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        (tmp / stats_name).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_adapter_dir(path: Path) -> None:
    """Fail early and clearly on a missing, empty or truncated adapter."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: adapter folder not found")
    for name in ADAPTER_FILES:
        f = path / name
        if not f.exists():
            raise ModelLoadError(f"{f}: missing adapter file")
    weights = path / "adapter_model.safetensors"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as sf:
            for key in sf.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                sf.get_tensor(key)
    except Exception as e:  # safetensors raises several error types for damaged files
        raise ModelLoadError(f"{weights}: unreadable or truncated adapter weights ({e})") from None
    try:
        json.loads((path / "adapter_config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path / 'adapter_config.json'}: not valid JSON ({e})") from None


def attach_adapters(base_model, adapters: dict[str, Path]):
    """One PeftModel holding every adapter by name; switching is `set_adapter`, never a reload."""
    from peft import PeftModel

    model = None
    for name, path in adapters.items():
        check_adapter_dir(path)
        if model is None:
            model = PeftModel.from_pretrained(base_model, str(path), adapter_name=name, is_trainable=False)
        else:
            model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    if model is None:
        raise ModelLoadError("no adapters to load")
    model.eval()
    return model


@contextmanager
def mixed_batches(model, adapters: Sequence[str]):
    """Let one forward pass answer each row with its own adapter (`adapter_names`), full-weight module copies
    included. PEFT dispatches LoRA layers per row itself, but refuses `modules_to_save` copies of anything but a plain
    Linear/Embedding/Conv (an expert's projector is a small MLP), and silently falls back to the base copy when the
    active adapter has no copy of a module. Here the active adapter is set to one that owns a copy, and those wrappers
    get the same per-row dispatch PEFT uses for Linear (the base's module for an adapter without a copy). Rows must align with the module's inputs (one image per row
    for a projector): the caller groups requests so that they do."""
    from peft.utils.other import ModulesToSaveWrapper

    patched = []
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            module._mixed_batch_forward = types.MethodType(_mixed_rows, module)
            patched.append(module)
    owners = [a for a in adapters if any(a in m.modules_to_save for m in patched)]
    previous = model.active_adapter
    if owners:
        model.set_adapter(owners[0])
    try:
        yield model
    finally:
        for module in patched:
            del module._mixed_batch_forward
        model.set_adapter(previous)


def _mixed_rows(self, input, *args, adapter_names: list[str], **kwargs):
    """Row i through adapter_names[i]'s copy of the module (the base's for "__base__" or an adapter without one)."""
    import torch

    out = [None] * len(input)
    for name in dict.fromkeys(adapter_names):
        rows = [i for i, n in enumerate(adapter_names) if n == name]
        module = self.modules_to_save[name] if name in self.modules_to_save else self.original_module  # noqa: SIM401 - ModuleDict has no get
        for i, y in zip(rows, module(input[rows], *args, **kwargs)):
            out[i] = y
    return torch.stack(out)
