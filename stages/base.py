"""Stage `base`: build + pretrain the embedded tiny base, or record the Hugging Face base named in params."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.base import build_and_pretrain, reference_external
    from mllmcl.config import load_params

    params = load_params(args.params)
    root = Path(args.root)
    if params["base"].get("build", "tiny") == "tiny":
        info = build_and_pretrain(params, root)
        print(f"base: tiny LLaVA, {info['params'] / 1e6:.2f} M params, vocab {info['vocab_size']}, "
              f"pretrained in {info['pretrain_seconds']:.0f} s; suite accuracy {info['suite_accuracy']}")
    else:
        info = reference_external(params, root)
        print(f"base: using {info['name_or_path']} as is")
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__).parse_args())
