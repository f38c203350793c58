"""The promotion gate: the candidate against the registry's `production` version (or, for a first
candidate, absolute thresholds). Every check is named so that a refusal says exactly what regressed, and every
check fails closed: an input it needs that is missing is a failure, never a skipped check."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mllmcl.config import GateConfig
from mllmcl.continual import metrics
from mllmcl.release.stats import Paired, paired_noninferiority, unpaired_noninferiority, wilson


@dataclass
class Check:
    """One named gate check: pass or fail, the value measured against its threshold (rounded to 4 places; None when not
    numeric), and a sentence for the report."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    n: int | None = None  # questions behind `value`
    interval: list[float] | None = None  # 95% interval of `value` (Wilson)
    p_value: float | None = None  # non-inferiority test against production, for prior tasks
    power: float | None = None  # that test's power at this n against a candidate with no real drop

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)
        self.value = None if self.value is None else round(float(self.value), 4)
        self.threshold = None if self.threshold is None else round(float(self.threshold), 4)
        self.interval = None if self.interval is None else [round(float(v), 4) for v in self.interval]
        self.p_value = None if self.p_value is None else round(float(self.p_value), 6)
        self.power = None if self.power is None else round(float(self.power), 4)


@dataclass
class GateResult:
    """metrics/gate.json: the decision and its checks, plus the CL metrics of the accuracy matrix."""

    decision: str  # "pass" | "fail"
    candidate: str
    baseline: str | None
    checks: list[Check]
    metrics: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)  # the thresholds applied, and where they came from
    examples: dict[str, list[dict]] = field(default_factory=dict)  # a few failing questions per failing task

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GateResult:
        return cls(
            data["decision"],
            data["candidate"],
            data.get("baseline"),
            [Check(**c) for c in data.get("checks", [])],
            data.get("metrics", {}),
            data.get("policy", {}),
            data.get("examples", {}),
        )


def _number(value) -> float | None:
    """A metric as a float, or None when it is missing or not a number (the check then fails closed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- policy ------------------------------------------------------------------------------------------------
# Which way each threshold is stricter. A candidate may tighten the policy in force; loosening it fails
# `policy_unchanged` unless promoted on purpose (--force --reason, recorded in the audit log).
STRICTER_WHEN_HIGHER = {
    "min_task_accuracy": True,
    "min_new_task_accuracy": True,
    "min_router_accuracy": True,
    "max_prior_drop": False,
    "max_language_drop": False,
    "alpha": False,  # a prior task passes when p < alpha: a higher alpha lets more drops through
}


def effective_policy(cfg: GateConfig, production: dict | None) -> tuple[GateConfig, list[str], list[str]]:
    """The thresholds to apply: per key the stricter of the candidate's params and the policy production was
    promoted under (its manifest). Returns (policy, loosened keys described, tightened keys described)."""
    in_force = ((production or {}).get("params") or {}).get("gate") or {}
    strict, loosened, tightened = {}, [], []
    for key, higher in STRICTER_WHEN_HIGHER.items():
        mine, theirs = getattr(cfg, key), _number(in_force.get(key))
        if theirs is None or theirs == mine:
            continue
        if (mine > theirs) == higher:
            tightened.append(f"{key} {theirs:g} -> {mine:g}")
        else:
            loosened.append(f"{key} {theirs:g} -> {mine:g}")
            strict[key] = theirs
    return cfg.model_copy(update=strict), loosened, tightened


def _policy_check(production: dict | None, loosened: list[str], tightened: list[str]) -> Check:
    if production is None:
        detail = "no production yet: this candidate's gate policy becomes the policy in force"
    elif loosened:
        detail = (
            f"params loosen the policy production was promoted under ({'; '.join(loosened)}); the stricter "
            "values were applied, and only `registry promote --force --reason` can change the policy"
        )
    else:
        detail = "same policy as production" + (f" (tightened: {'; '.join(tightened)})" if tightened else "")
    return Check("policy_unchanged", not loosened, None, None, detail)


# --- tasks --------------------------------------------------------------------------------------------------
def _accuracy_stats(entry: dict, acc: float) -> dict:
    n = entry.get("n")
    if isinstance(n, int) and n > 0:
        return {"n": n, "interval": list(wilson(round(acc * n), n))}
    return {}


def _task_checks(
    tasks: list[str], eval_json: dict, production: dict | None, cfg: GateConfig, pairs: dict[str, Paired]
) -> list[Check]:
    prod_tasks = list(production.get("tasks", [])) if production else []
    prod_eval = _dict((production or {}).get("eval"))
    checks = []
    for task in prod_tasks:
        if task not in tasks:  # production would silently lose this expert
            checks.append(
                Check(
                    f"prior_task:{task}",
                    False,
                    None,
                    None,
                    f"{task}: production serves it but the candidate does not learn it (removed from tasks)",
                )
            )
    for task in tasks:
        entry = _dict(eval_json.get("tasks")).get(task)
        acc = _number(entry.get("accuracy")) if isinstance(entry, dict) else None
        if acc is None:
            checks.append(
                Check(
                    f"task:{task}",
                    False,
                    None,
                    None,
                    f"{task}: no evaluation result with a numeric accuracy in eval.json (fails closed)",
                )
            )
            continue
        stats = _accuracy_stats(entry, acc)
        if production and task in prod_tasks:
            before = _number(_dict(_dict(prod_eval.get("tasks")).get(task)).get("accuracy"))
            if before is None:
                checks.append(
                    Check(
                        f"prior_task:{task}",
                        False,
                        acc,
                        None,
                        f"{task}: production learned it but its manifest has no accuracy to compare",
                    )
                )
                continue
            n_before = _dict(_dict(prod_eval.get("tasks")).get(task)).get("n")
            n_before = n_before if isinstance(n_before, int) and not isinstance(n_before, bool) else None
            checks.append(_prior_check(task, acc, before, n_before, cfg, pairs.get(task), stats))
        elif production:
            floor = cfg.min_new_task_accuracy
            checks.append(Check(f"new_task:{task}", acc >= floor, acc, floor, f"new task {task}: {acc:.3f}", **stats))
        else:
            floor = cfg.min_task_accuracy
            checks.append(
                Check(
                    f"task:{task}",
                    acc >= floor,
                    acc,
                    floor,
                    f"{task}: {acc:.3f} (first candidate: absolute threshold)",
                    **stats,
                )
            )
    return checks


def _prior_check(
    task: str, acc: float, before: float, n_before: int | None, cfg: GateConfig, paired: Paired | None, stats: dict
) -> Check:
    """A prior task passes only when the candidate SHOWS, at alpha, that it lost less than max_prior_drop
    (non-inferiority): on production's recorded answers to the same questions where they exist (Tango's paired
    score test), else on the two accuracies (Newcombe's bound). Too few questions to show it is a failure, and the
    detail says the test's power at this n."""
    margin, alpha = cfg.max_prior_drop, cfg.alpha
    drop = before - acc
    head = f"{task}: {acc:.3f} now vs {before:.3f} in production (drop {drop:+.3f}, allowed {margin:g})"
    if paired is not None and paired.n > 0:
        test = paired_noninferiority(paired, margin, alpha)
        data = f"paired on {paired.n} questions: {paired.lost} now wrong, {paired.gained} now right"
    else:
        n_after = stats.get("n") or 0
        test = unpaired_noninferiority(before, n_before or 0, acc, n_after, margin, alpha)
        data = f"no paired answers from production; {n_before or 0} vs {n_after} questions"
    passed = test.p_value < alpha
    why = (
        f"; {data}; non-inferiority ({test.method}): drop <= {test.drop_upper:.3f} at {1 - alpha:.0%}, "
        f"p={test.p_value:.3g} {'<' if passed else '>='} alpha {alpha:g}"
        + ("" if passed else f" (not shown; power at this n {test.power:.0%} for a candidate with no real drop)")
    )
    return Check(
        f"prior_task:{task}", passed, acc, before - margin, head + why, p_value=test.p_value, power=test.power, **stats
    )


def _language_check(eval_json: dict, cfg: GateConfig) -> Check:
    lang = _dict(eval_json.get("language"))
    base, candidate = _number(lang.get("base_accuracy")), _number(lang.get("accuracy"))
    if base is None or candidate is None:
        return Check(
            "language_degradation",
            False,
            None,
            cfg.max_language_drop,
            "text-only suite: no numeric result in eval.json (the check fails closed)",
        )
    deg = metrics.linguistic_degradation(base, candidate)
    return Check(
        "language_degradation",
        deg["delta"] <= cfg.max_language_drop,
        deg["delta"],
        cfg.max_language_drop,
        f"text-only suite: base {deg['base']:.3f}, candidate {deg['candidate']:.3f}",
    )


def _validation_check(tasks: list[str], validation_dir: Path) -> Check:
    missing, failed = [], []
    for task in tasks:
        report = Path(validation_dir) / f"{task}.json"
        if not report.exists():
            missing.append(task)
        elif _read_json(report).get("passed") is not True:  # unreadable or malformed counts as failed
            failed.append(task)
    ok = not (missing or failed)
    return Check(
        "validation_passed",
        ok,
        None,
        None,
        "all tasks validated" if ok else f"no report: {missing or '-'}; failed: {failed or '-'}",
    )


def _dict(value) -> dict:
    """`value` when it is a JSON object, else {}: a malformed input fails its check instead of crashing the gate."""
    return value if isinstance(value, dict) else {}


def _has_hashes(stage) -> bool:
    outs = _dict(stage).get("outs")
    return isinstance(outs, list) and any(_dict(o).get("md5") for o in outs)


def _read_json(path: Path) -> dict:
    """A JSON object from a file, or {} when it is unreadable or not an object (the caller fails closed)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _dvc_state_check(dvc_lock: Path, tasks: list[str]) -> Check:
    """Every stage the candidate comes from must be recorded with hashes in dvc.lock (its lineage)."""
    if not Path(dvc_lock).exists():
        unknown = ["dvc.lock"]
    else:
        try:
            lock = yaml.safe_load(Path(dvc_lock).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            lock = None
        stages = lock.get("stages") if isinstance(lock, dict) else None
        stages = stages if isinstance(stages, dict) else {}
        wanted = ["base", "train_router"] + [f"train_expert@{t}" for t in tasks] + [f"validate@{t}" for t in tasks]
        unknown = [s for s in wanted if not _has_hashes(stages.get(s))]
    return Check(
        "data_state_known",
        not unknown,
        None,
        None,
        "dvc.lock records every stage's hashes" if not unknown else f"not in dvc.lock: {unknown}",
    )


def evaluate_gate(
    eval_json: dict,
    production: dict | None,
    tasks: list[str],
    cfg: GateConfig,
    *,
    candidate: str,
    validation_dir: Path,
    dvc_lock: Path,
    history: list[dict] | None = None,
    pairs: dict[str, Paired] | None = None,
    examples: dict[str, list[dict]] | None = None,
) -> GateResult:
    """Judge the candidate of `eval_json` (metrics/eval.json) learned on `tasks` against `production`'s manifest.
    `pairs`: per prior task, the paired comparison of both models' answers to the same questions; `examples`: per
    task, a few questions the candidate got wrong (shown for the tasks that fail)."""
    policy, loosened, tightened = effective_policy(cfg, production)
    checks = [_policy_check(production, loosened, tightened)]
    checks += _task_checks(tasks, eval_json, production, policy, pairs or {})
    router = _number(eval_json.get("router_accuracy"))
    checks.append(
        Check(
            "router_accuracy",
            router is not None and router >= policy.min_router_accuracy,
            router,
            policy.min_router_accuracy,
            f"requests routed to the right expert: {router:.3f}"
            + (
                f" ({eval_json.get('router_kind')} router; {eval_json['mllm_share']:.0%} asked the MLLM router)"
                if isinstance(eval_json.get("mllm_share"), int | float)
                else ""
            )
            if router is not None
            else "no numeric router accuracy in eval.json (the check fails closed)",
        )
    )
    checks.append(_language_check(eval_json, policy))
    checks.append(_validation_check(tasks, validation_dir))
    checks.append(_dvc_state_check(dvc_lock, tasks))
    mtasks, matrix = metrics.accuracy_matrix(history or [], {"tasks": tasks, "eval": eval_json})
    failing = {c.name.split(":", 1)[1] for c in checks if not c.passed and ":" in c.name}
    return GateResult(
        decision="pass" if all(c.passed for c in checks) else "fail",
        candidate=candidate,
        baseline=production.get("version") if production else None,
        checks=checks,
        metrics={
            **metrics.summary(matrix),
            "matrix_tasks": mtasks,
            "matrix": matrix,
            "language": eval_json.get("language") or {},
            "mean_accuracy": eval_json.get("mean_accuracy"),
        },
        policy={
            "applied": {k: getattr(policy, k) for k in STRICTER_WHEN_HIGHER},
            "source": "production's manifest where stricter, else params.yaml" if production else "params.yaml",
            "loosened": loosened,
            "tightened": tightened,
            "prior_task_rule": "non-inferiority: pass only when a one-sided test shows, at alpha, that the drop is "
            "below max_prior_drop (Tango's paired score test on production's recorded answers, else Newcombe's "
            "bound on the two accuracies); each check states the test's power at its n",
        },
        examples={t: v for t, v in (examples or {}).items() if t in failing},
    )
