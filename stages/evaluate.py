"""Stage `evaluate`: the routed system on EVERY task's test set plus the text-only language suite."""

from stages._common import context, parser, path_arg, run, write_json


def main(args) -> int:
    """Load the routed system once and score it on every learned task and the language suite; writes eval.json,
    experts.json and one predictions JSONL per task."""
    from mllmcl.continual.evaluation import evaluate_system, experts_report
    from mllmcl.continual.inference import RoutedModel
    from mllmcl.model.loading import resolve_base
    from mllmcl.release.evidence import as_record, inputs_to_evaluate, prediction_digests

    params, paths = context(args)
    base, experts, router = args.base or paths.base, args.experts or paths.experts, args.router or paths.router
    tasks_dir = args.tasks_dir or paths.tasks_dir
    judged = inputs_to_evaluate(params, base_dir=base, experts_dir=experts, router_dir=router, tasks_dir=tasks_dir)
    model = RoutedModel(
        resolve_base(params.base, base),
        experts,
        router,
        trust_remote_code=params.base.trust_remote_code,
        routing=params.routing,  # read now: a threshold change re-runs evaluate, never the router's training
    )
    result = evaluate_system(
        model,
        params.tasks,
        tasks_dir=tasks_dir,
        predictions_dir=args.predictions or paths.predictions,  # hashed into `judged` once written
        experts_dir=experts,
        language_suite=params.router.base_suite,
        batch_size=params.evaluate.batch_size,
    )
    predictions = args.predictions or paths.predictions
    judged["predictions"] = prediction_digests(predictions, [*params.tasks, params.router.base_suite])
    write_json(args.metrics or paths.eval_json, {**result.to_json(), "judged": as_record(judged)})
    write_json(
        args.experts_report or paths.experts_report,
        experts_report(params.tasks, experts_dir=experts, router_dir=router, base_dir=base),
    )
    per_task = ", ".join(f"{t} {v.accuracy:.3f}" for t, v in result.tasks.items())
    lang = result.language
    print(
        f"evaluate: {per_task}; language {lang.accuracy:.3f} (base {lang.base_accuracy:.3f}); "
        f"router {result.router_accuracy:.3f}"
    )
    return 0


def build_parser():
    """The stage's arguments: dvc.yaml passes every path explicitly."""
    p = parser(__doc__)
    path_arg(p, "--base", "the base model folder")
    path_arg(p, "--experts", "the folder of expert adapters")
    path_arg(p, "--router", "the router adapter folder")
    path_arg(p, "--tasks-dir", "the folder holding every task's data")
    path_arg(p, "--predictions", "folder for every answer, one JSONL per task")
    path_arg(p, "--metrics", "eval.json to write")
    path_arg(p, "--experts-report", "experts.json to write")
    return p


if __name__ == "__main__":
    run(main, build_parser().parse_args())
