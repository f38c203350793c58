"""Stage `base`: build + pretrain the embedded tiny base, or record the Hugging Face base named in params."""

from pathlib import Path

from stages._common import context, parser, path_arg, run


def main(args) -> int:
    """Build and pretrain the tiny base (its tokenizer also learns the router's prompt words), or, with
    `base.build: none`, only record which Hugging Face model is the base."""
    from mllmcl.continual.router import router_vocabulary
    from mllmcl.data.benchmark import GENERATORS
    from mllmcl.model.pretrain import PRETRAIN_SUITES, build_and_pretrain, reference_external

    params, paths = context(args)
    out = args.out or paths.base
    if params.base.build != "tiny":
        info = reference_external(params.base, out)
        print(f"base: using {info['name_or_path']} as is")
        return 0
    suites = dict(zip(PRETRAIN_SUITES, args.suites or [paths.task_data(s) for s in PRETRAIN_SUITES]))
    vocabulary = router_vocabulary([(g.name, g.description) for g in GENERATORS.values()])
    info = build_and_pretrain(
        params.base, suites, out, checkpoint_dir=paths.checkpoints("base"), extra_vocabulary=vocabulary
    )
    print(
        f"base: tiny LLaVA, {info['params'] / 1e6:.2f} M params, vocab {info['vocab_size']}, "
        f"pretrained in {info['pretrain_seconds']:.0f} s; suite accuracy {info['suite_accuracy']}"
    )
    return 0


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__)
    p.add_argument(
        "--suites",
        type=Path,
        nargs=2,
        default=None,
        help="the general and language suite folders (default: the project's layout)",
    )
    path_arg(p, "--out", "where the base model is written")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
