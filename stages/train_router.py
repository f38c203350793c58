"""Stage `train_router`: the router LoRA on a replay sample of every task in `tasks` plus text-only samples."""

from pathlib import Path

from stages._common import parser, run


def main(args) -> int:
    from mllmcl.config import load_params, tasks
    from mllmcl.router import train_router

    params = load_params(args.params)
    s = train_router(tasks(params), params, Path(args.root))
    print(f"router: accuracy {s['accuracy']:.3f}, text-only to base {s['base_routing_accuracy']:.3f}, "
          f"{s['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__).parse_args())
