"""`mllmcl base inspect PATH`: what the pipeline makes of a base model before anything trains on it."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add `mllmcl base inspect PATH`."""
    p = sub.add_parser("base", help="inspect a base model (what `auto` module settings resolve to)")
    bs = p.add_subparsers(dest="base_command", metavar="ACTION")
    ins = bs.add_parser(
        "inspect",
        parents=[common],
        help="load a model folder or cached hub id and print its anatomy, processor and inputs",
        description="Loads PATH the way every stage does (AutoProcessor + AutoModelForImageTextToText, safetensors "
        "only) and prints what target_modules/language_model_scope/modules_to_save: auto resolve to, the processor "
        "class (and whether it was built without its video part), the sequence-aligned inputs and the context length.",
    )
    ins.add_argument("path", help="model folder or hub id already in the local cache")
    ins.add_argument("--trust-remote-code", action="store_true", help="let transformers run the model's own code")
    ins.set_defaults(handler=_inspect)
    p.set_defaults(help_parser=p)


def _inspect(args) -> int:
    from mllmcl.model.anatomy import inspect_model
    from mllmcl.model.batching import computes_own_positions
    from mllmcl.model.loading import Prompting, load_base

    model, processor = load_base(args.path, trust_remote_code=args.trust_remote_code)
    anatomy = inspect_model(model)
    prompting = Prompting.for_model(model, processor)
    video = getattr(processor, "video_processor", "n/a")
    print(f"model: {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params)")
    print(f"processor: {type(processor).__name__}" + (" (built without its video processor)" if video is None else ""))
    print(f"language_model_scope: {anatomy.language_model_scope}")
    print(f"target_modules: {', '.join(anatomy.target_modules)}")
    print(f"projector: {anatomy.projector or '-'}  (experts' modules_to_save: auto)")
    print(f"output head: {anatomy.output_head or '-'}  (router's modules_to_save: auto)")
    print(f"sequence-aligned inputs: {prompting.answer_fill or 'none'}  (value over answer tokens)")
    print(
        f"context: {prompting.max_tokens or 'unknown'} tokens; own positions: {'yes' if computes_own_positions(model) else 'no'}"
    )
    return 0
