"""Stage `train_expert@<task>`: one LoRA expert for the task, trained from the base (never from another expert)."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.config import load_params
    from mllmcl.experts import train_expert

    s = train_expert(args.task, load_params(args.params), Path(args.root))
    print(f"expert {args.task}: accuracy {s['expert_accuracy']:.3f} (base zero-shot {s['base_accuracy']:.3f}), "
          f"{s['train_seconds']:.0f} s, {s['trainable_params']} trainable params")
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__, task=True).parse_args())
