"""Stage `evaluate`: the routed system on EVERY task's test set plus the text-only language suite."""

from pathlib import Path

from stages._common import parser, run, write_json


def main(args) -> int:
    from mllmcl.config import load_params, tasks
    from mllmcl.evaluation import evaluate_system, experts_report
    from mllmcl.inference import RoutedModel
    from mllmcl.model import resolve_base, set_threads

    params = load_params(args.params)
    root = Path(args.root)
    cfg = params.get("evaluate", {})
    set_threads(cfg.get("threads"))
    learned = tasks(params)
    model = RoutedModel(resolve_base(params["base"], root), root / "models/experts", root / "models/router",
                        trust_remote_code=bool(params["base"].get("trust_remote_code", False)))
    result = evaluate_system(model, learned, root, language_suite=params["router"].get("base_suite", "language"))
    write_json(root / "metrics/eval.json", result)
    write_json(root / "reports/experts.json", experts_report(root, learned))
    per_task = ", ".join(f"{t} {v['accuracy']:.3f}" for t, v in result["tasks"].items())
    print(f"evaluate: {per_task}; language {result['language']['accuracy']:.3f} "
          f"(base {result['language']['base_accuracy']:.3f}); router {result['router_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    run(main, parser(__doc__).parse_args())
