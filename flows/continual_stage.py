"""The `continual_stage` Prefect flow: one continual-learning stage around the DVC DAG.

lock -> dvc pull (if a remote is configured) -> every DVC stage in topological order, each its own Prefect
task (training stages retried; with `cluster.enabled`, stale experts first train on Dask workers and are then
restored here from DVC's run-cache, see flows.cluster) -> read the gate -> publish the gate report and per-task table as
artifacts -> optional human approval -> promote on pass -> dvc push -> summary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.input import RunInput
from prefect.states import Failed

from flows import dag, dvc_cli
from flows.lock import stage_lock
from mllmcl.paths import ProjectPaths

TRAINING_STAGES = ("base", "train_expert", "train_router")


class Approval(RunInput):
    """What a reviewer answers after reading the gate report."""

    approve: bool
    comment: str = ""


def _stage_kind(stage: str) -> str:
    return stage.split("@", 1)[0]


@task(name="dvc-stage", retries=0)
def run_stage(root: str, stage: str, stale: bool, pull: bool = False) -> dict:
    """One DVC stage. Cached stages return at once; DVC itself decides what is up to date. `pull`: a stage that a
    worker ran is restored from the run-cache (its outputs pulled), not run again."""
    logger = get_run_logger()
    if not stale:
        logger.info("%s: up to date (DVC cache)", stage)
        return {"stage": stage, "ran": False, "seconds": 0.0}
    t0 = time.perf_counter()
    output = dag.repro_stage(Path(root), stage, pull=pull)
    for line in output.strip().splitlines()[-30:]:
        logger.info("%s | %s", stage, line)
    restored = dag.restored_from_run_cache(output)
    if restored:
        logger.info("%s: restored from the run-cache (not run here)", stage)
    return {"stage": stage, "ran": True, "restored": restored, "seconds": round(time.perf_counter() - t0, 2)}


def _distributable(stages: list[str], stale: set[str]) -> list[str]:
    """Stale stages that depend on nothing but shared inputs and never on each other: the experts."""
    return [s for s in stages if _stage_kind(s) == "train_expert" and s in stale]


def _stage_task(stage: str, retries: int, retry_delay: float):
    kind = _stage_kind(stage)
    opts = {"name": f"dvc:{stage}", "task_run_name": stage}
    if kind in TRAINING_STAGES:
        opts.update(retries=retries, retry_delay_seconds=retry_delay)
    return run_stage.with_options(**opts)


def _publish_gate(root: Path, gate: dict, eval_json: dict | None) -> None:
    report = root / "reports" / "gate.md"
    markdown = report.read_text() if report.exists() else f"# Gate: {gate['decision']}\n"
    create_markdown_artifact(markdown=markdown, key="gate-report", description=f"gate {gate['decision']}")
    if eval_json:
        rows = [
            {"task": t, "accuracy": v["accuracy"], "router_accuracy": v.get("router_accuracy"), "n": v["n"]}
            for t, v in eval_json.get("tasks", {}).items()
        ]
        if "language" in eval_json:
            rows.append(
                {
                    "task": "language (text-only)",
                    "accuracy": eval_json["language"]["accuracy"],
                    "router_accuracy": eval_json["language"].get("router_accuracy"),
                    "n": eval_json["language"]["n"],
                }
            )
        create_table_artifact(table=rows, key="per-task-accuracy", description="candidate accuracy per task")


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


@flow(name="continual_stage", log_prints=True)
def continual_stage(
    root: str = ".",
    params_file: str = "params.yaml",
    require_approval: bool | None = None,
    promote: bool = True,
    push: bool = True,
    pull: bool = True,
    lock_wait_seconds: float = 0.0,
    stage_retries: int = 2,
    retry_delay_seconds: float = 5.0,
    approval_timeout_seconds: int = 3600,
    reason: str = "",
) -> dict:
    """Run one continual stage of the DAG and promote a passing candidate. Returns a summary."""
    logger = get_run_logger()
    project = Path(root).resolve()
    from mllmcl.config import load_params

    params = load_params(Path(params_file) if Path(params_file).is_absolute() else project / params_file)
    if require_approval is None:
        require_approval = params.gate.require_approval
    summary: dict = {"root": str(project), "stages": [], "promoted": None, "decision": None}
    with stage_lock(project, wait_seconds=lock_wait_seconds, holder=f"continual_stage {reason}".strip()):
        remote = bool(dvc_cli.configure(params, project)) or dag.has_remote(project)
        if remote and pull:
            logger.info("dvc pull")
            dag.pull(project)
        stages = dag.stage_order(project)
        stale = dag.stale_stages(project)
        logger.info("%d stages, %d stale: %s", len(stages), len(stale & set(stages)), sorted(stale & set(stages)))
        fan_out = _distributable(stages, stale) if params.cluster.enabled else []
        if fan_out and not remote:
            raise dvc_cli.DvcError(
                "cluster.enabled: workers share data only through a DVC remote; set storage.dvc_remote"
            )
        upstream = dag.upstream_stages(project, fan_out) if fan_out else set()

        def run_here(stage: str, pull: bool = False) -> None:
            nonlocal stale
            result = _stage_task(stage, stage_retries, retry_delay_seconds)(str(project), stage, stage in stale, pull)
            summary["stages"].append(result)
            if result["ran"]:
                stale = dag.stale_stages(project)  # a stage that ran may leave downstream stale

        for stage in stages:  # what the fanned-out stages depend on runs here first
            if stage in upstream:
                run_here(stage)
        if fan_out:
            logger.info("dvc push (workers pull the inputs of %s)", ", ".join(fan_out))
            dag.push(project)
            from flows.cluster import run_distributed

            summary["distributed"] = run_distributed(project, fan_out, params.cluster, params.storage.dvc_remote)
            dag.fetch_run_cache(project)
        for stage in stages:
            if stage not in upstream:
                run_here(stage, pull=bool(fan_out))
        for stage in fan_out:
            done = next(s for s in summary["stages"] if s["stage"] == stage)
            if not done.get("restored"):
                logger.warning("%s ran on a worker but was not restored from the run-cache here", stage)
        gate = _read_json(ProjectPaths(project).gate_json)
        if gate is None:
            raise RuntimeError("the DAG finished without metrics/gate.json")
        summary.update(decision=gate["decision"], candidate=gate.get("candidate"), baseline=gate.get("baseline"))
        _publish_gate(project, gate, _read_json(ProjectPaths(project).eval_json))
        if gate["decision"] != "pass":
            _finish(project, summary, push and remote, logger)
            failed = ", ".join(c["name"] for c in gate.get("checks", []) if not c["passed"])
            message = f"gate rejected candidate {gate.get('candidate')}: {failed}"
            logger.warning(message)
            # a distinct end state that alerting can match (type FAILED, name "Rejected"), not "Completed"
            return Failed(name="Rejected", message=message, data=GateRejected(message, summary))
        if promote:
            approved_by = None
            if require_approval:
                logger.info("waiting for a reviewer: approve or reject candidate %s", gate.get("candidate"))
                from prefect.flow_runs import pause_flow_run

                decision = pause_flow_run(wait_for_input=Approval, timeout=approval_timeout_seconds)
                summary["approval"] = {"approve": decision.approve, "comment": decision.comment}
                if not decision.approve:
                    logger.info("rejected by reviewer: %s", decision.comment)
                    return _finish(project, summary, push and remote, logger)
                approved_by = decision.comment or "approved"
            from mllmcl.release.promotion import promote_candidate

            if push and remote:  # the version's recipe must find its data and models in the remote
                logger.info("dvc push (before promotion)")
                dag.push(project)
            result = promote_candidate(
                params,
                ProjectPaths(project),
                reason=reason or "continual_stage flow",
                approved_by=approved_by,
                pushed=dvc_cli.outputs_pushed(project) if remote else None,
            )
            summary["promoted"] = result.version
            summary["reproducible"] = {"ok": result.reproducible, "problems": result.problems}
            logger.info("promoted %s to production", result.version)
            for problem in result.problems:
                logger.warning("NOT REPRODUCIBLE from its recipe: %s", problem)
        return _finish(project, summary, push and remote, logger)


class GateRejected(Exception):
    """The flow's result when the gate said no: carries the run's summary for whoever called the flow."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def _finish(project: Path, summary: dict, push: bool, logger) -> dict:
    if push:
        logger.info("dvc push")
        dag.push(project)
    summary["ran"] = [s["stage"] for s in summary["stages"] if s["ran"]]
    return summary


def main(args) -> int:
    """Run the flow once from the command line: 0 when the gate passed, 1 when it failed (nothing promoted); bad params
    stop before Prefect starts."""
    from mllmcl.entry import load_params

    load_params(args)  # bad params stop here in one line, before Prefect logs a traceback of a failed run
    state = continual_stage(
        return_state=True,
        root=str(args.root),
        params_file=str(args.params),
        require_approval=args.require_approval,
        promote=not args.no_promote,
        pull=not args.no_pull,
        push=not args.no_push,
        lock_wait_seconds=args.lock_wait,
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, GateRejected):
        print(json.dumps(result.summary, indent=2))
        print(f"{state.name}: {result}", file=sys.stderr)
        return 1
    if isinstance(result, BaseException):
        raise result
    print(json.dumps(result, indent=2))
    return 0


def parser():
    """Options of `python -m flows.continual_stage`: --root/--params plus switches for approval, promotion, pull/push
    and the lock wait."""
    import argparse

    from mllmcl.entry import add_common_options

    p = argparse.ArgumentParser(
        description="Run one continual stage now (Prefect flow around dvc repro). "
        "Exit 0: the gate passed; 1: it failed (nothing promoted); 2: bad input."
    )
    add_common_options(p)
    p.add_argument("--require-approval", action="store_true", default=None, help="pause for a reviewer")
    p.add_argument("--no-promote", action="store_true", help="run and gate, never promote")
    p.add_argument("--no-pull", action="store_true", help="skip `dvc pull` before the stages")
    p.add_argument("--no-push", action="store_true", help="skip `dvc push` after them")
    p.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a running continual stage to finish (default: fail at once)",
    )
    return p


if __name__ == "__main__":
    from mllmcl.entry import main_of

    main_of(main, parser())
