"""What a loaded image-text-to-text model is made of, found by introspection so that `auto` settings work for any
architecture: the language model (its decoder), its linear layers, the vision-language projector and the output
head. The few names that differ between architectures are listed here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from mllmcl.errors import ModelLoadError

# the module that maps vision features into the language model, by architecture family
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "merger", "mlp1", "projector")


@dataclass(frozen=True)
class Anatomy:
    """Resolved module names: what `target_modules`, `language_model_scope` and `modules_to_save` mean for a model."""

    language_model_scope: str
    target_modules: list[str]
    projector: str | None
    output_head: str | None


def _qualified_name(model, module) -> str | None:
    return next((name for name, m in model.named_modules() if m is module), None)


def inspect_model(model) -> Anatomy:
    """The decoder (`get_decoder()`), every distinct linear layer name inside it, the projector and the head."""
    import torch

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    path = _qualified_name(model, decoder) if decoder is not None else None
    if not path:
        raise ModelLoadError(f"{type(model).__name__}: cannot find its language model (no get_decoder())")
    scope = path.split(".")[-1]
    targets = sorted({name.split(".")[-1] for name, m in decoder.named_modules() if isinstance(m, torch.nn.Linear)})
    names = {name.split(".")[-1] for name, _ in model.named_modules()}
    projector = next((p for p in PROJECTOR_NAMES if p in names), None)
    head = "lm_head" if "lm_head" in names else None
    return Anatomy(scope, targets, projector, head)


def resolve(model, target_modules, scope, modules_to_save, *, role: str) -> tuple[list[str], str, list[str]]:
    """`auto` values resolved against the model; explicit names checked to exist (PEFT would silently train nothing
    for a `modules_to_save` name that matches no module)."""
    anatomy = inspect_model(model)
    targets = anatomy.target_modules if target_modules == "auto" else list(target_modules)
    scope = anatomy.language_model_scope if scope == "auto" else scope
    if modules_to_save == "auto":
        wanted = anatomy.output_head if role == "router" else anatomy.projector
        save = [wanted] if wanted else []
    else:
        save = list(modules_to_save)
    names = {name.split(".")[-1] for name, _ in model.named_modules()}
    missing = [m for m in save if m not in names]
    if missing:
        raise ModelLoadError(
            f"{type(model).__name__} has no module named {', '.join(missing)} (modules_to_save); this model's "
            f"projector is {anatomy.projector!r} and its head {anatomy.output_head!r}: use those, or 'auto'"
        )
    if not any(scope in name for name, _ in model.named_modules()):
        raise ModelLoadError(
            f"{type(model).__name__} has no module under {scope!r} (language_model_scope); its language model is "
            f"{anatomy.language_model_scope!r}: use that, or 'auto'"
        )
    return targets, scope, save
