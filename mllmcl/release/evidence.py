"""What an evaluation judged: the sha256 of every model file (base when built here, experts, router), the base's
identity and a digest of each test set it read. `evaluate` writes it into metrics/eval.json as `judged`; the gate and
every promotion compare it with the files in hand and refuse a result that was measured on other files, naming
what changed and what to re-run (a swapped expert must never pass on the accuracy of the one it replaced)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mllmcl.config import Params
from mllmcl.errors import DataError
from mllmcl.model.loading import base_identity
from mllmcl.release.registry import content_id, sha256_file

RERUN = "re-run the evaluation (`dvc repro evaluate gate`, or `mllmcl run`)"


class StaleEvaluation(DataError):
    """metrics/eval.json was measured on other files than the ones about to be judged or promoted."""


def model_files(params: Params, *, base_dir: Path, experts_dir: Path, router_dir: Path) -> dict[str, Path]:
    """Model files of a candidate, keyed by their path inside a registry version (base only when built here)."""
    files: dict[str, Path] = {}

    def add_dir(src: Path, prefix: str) -> None:
        if not src.is_dir():
            raise DataError(f"{src}: missing (run `dvc repro` first)")
        for p in sorted(src.rglob("*")):
            if p.is_file():
                files[f"{prefix}/{p.relative_to(src).as_posix()}"] = p

    if params.base.build == "tiny":
        add_dir(Path(base_dir), "base")
    for task in params.tasks:
        add_dir(Path(experts_dir) / task, f"experts/{task}")
    add_dir(Path(router_dir), "router")
    return files


def split_digest(folder: Path) -> str | None:
    """sha256 of a task's test.jsonl and of every image its records name (what evaluation reads); None when the
    folder has no test split."""
    test = Path(folder) / "test.jsonl"
    if not test.is_file():
        return None
    h = hashlib.sha256(test.read_bytes())
    images = set()
    for line in test.read_text(encoding="utf-8").splitlines():
        try:
            image = json.loads(line).get("image")
        except (json.JSONDecodeError, AttributeError):
            continue  # validation names malformed rows; the digest still changes with the bytes above
        if isinstance(image, str):
            images.add(image)
    root = Path(folder).resolve()
    for rel in sorted(images):
        path = (root / rel).resolve()
        inside = path.is_relative_to(root) and path.is_file()  # validation refuses the others; never hash them
        h.update(f"\0{rel}\0{sha256_file(path) if inside else 'missing or outside'}".encode())
    return h.hexdigest()


def prediction_digests(predictions_dir: Path, tasks) -> dict[str, str | None]:
    """sha256 of each task's answer file (reports/predictions/<task>.jsonl): the gate pairs them with production's,
    and they are published as the next production's recorded answers, so they are part of what was judged."""
    out = {}
    for task in tasks:
        path = Path(predictions_dir) / f"{task}.jsonl"
        out[task] = sha256_file(path) if path.is_file() else None
    return out


def fingerprint(
    params: Params,
    *,
    base_dir: Path,
    experts_dir: Path,
    router_dir: Path,
    tasks_dir: Path,
    language_suite: str,
    predictions_dir: Path | None = None,
) -> dict:
    """The `judged` record of an evaluation: candidate id, per-file sha256, base identity, test-set digests, the
    routing thresholds it answered with and, once written, the digests of its answer files (`predictions_dir`)."""
    files = model_files(params, base_dir=base_dir, experts_dir=experts_dir, router_dir=router_dir)
    shas = {rel: sha256_file(path) for rel, path in sorted(files.items())}
    suites = [*params.tasks, language_suite]
    out = {
        "candidate": content_id(shas),
        "files": shas,
        "base": base_identity(params.base, Path(base_dir)),
        "test_sets": {t: split_digest(Path(tasks_dir) / t) for t in suites},
        "routing": params.routing.model_dump(mode="json"),  # read when answering: part of what was measured
    }
    if predictions_dir is not None:
        out["predictions"] = prediction_digests(predictions_dir, suites)
    return out


RECORD_MAPS = ("files", "base", "test_sets", "predictions", "routing")


def as_record(fp: dict) -> dict:
    """The fingerprint as eval.json keeps it: its maps as sorted [key, value] pairs, so that `dvc metrics show`
    (which prints every scalar of a metrics file, and skips lists) shows one column of it, `judged.candidate`."""
    return {
        "candidate": fp["candidate"],
        **{k: sorted([key, v] for key, v in (fp.get(k) or {}).items()) for k in RECORD_MAPS},
    }


def recorded(evaluation: dict | None) -> dict | None:
    """The fingerprint an evaluation result recorded (either form), or None when it records none or a malformed one."""
    judged = (evaluation or {}).get("judged") if isinstance(evaluation, dict) else None
    if not isinstance(judged, dict) or not isinstance(judged.get("candidate"), str):
        return None
    out = {"candidate": judged["candidate"]}
    for key in RECORD_MAPS:
        value = judged.get(key)
        try:
            out[key] = dict(value) if isinstance(value, list) else value if isinstance(value, dict) else None
        except (TypeError, ValueError):
            return None
        if out[key] is None and key == "files":
            return None
    return out


def differences(recorded: dict, current: dict) -> list[str]:
    """What differs between two `judged` records, one short phrase each (files changed, added or removed; the base;
    a test set), in a stable order."""
    out = []
    old, new = recorded.get("files") or {}, current.get("files") or {}
    changed = [rel for rel in sorted(old.keys() & new.keys()) if old[rel] != new[rel]]
    for label, names in (
        ("changed", changed),
        ("added", sorted(new.keys() - old.keys())),
        ("removed", sorted(old.keys() - new.keys())),
    ):
        if names:
            shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
            out.append(f"{label}: {shown}")
    if recorded.get("base") != current.get("base"):
        out.append("base: another model")
    old_sets, new_sets = recorded.get("test_sets") or {}, current.get("test_sets") or {}
    sets = [t for t in sorted(old_sets.keys() | new_sets.keys()) if old_sets.get(t) != new_sets.get(t)]
    if sets:
        out.append(f"test data: {', '.join(sets)}")
    old_answers, new_answers = recorded.get("predictions") or {}, current.get("predictions") or {}
    answers = [t for t in sorted(old_answers.keys() | new_answers.keys()) if old_answers.get(t) != new_answers.get(t)]
    if answers:
        out.append(f"answer files (reports/predictions): {', '.join(answers)}")
    old_routing, new_routing = recorded.get("routing") or {}, current.get("routing") or {}
    routing = [k for k in sorted(old_routing.keys() | new_routing.keys()) if old_routing.get(k) != new_routing.get(k)]
    if routing:
        out.append(f"routing: {', '.join(routing)}")
    return out


def require_current(eval_json: dict, current: dict, *, where: Path | str) -> None:
    """Refuse an evaluation that judged other files than `current` (the workspace's or a version's), in one line."""
    judged = recorded(eval_json)
    if judged is None:
        raise StaleEvaluation(f"{where}: records no files it judged (made by an older mllmcl); {RERUN}")
    diff = differences(judged, current)
    if diff:
        raise StaleEvaluation(
            f"{where}: stale, it judged {judged['candidate']} but the files are {current.get('candidate')} "
            f"({'; '.join(diff)}); {RERUN}"
        )


def require_same_base(recorded: dict | None, current: dict, *, what: str, verb: str = "gated on") -> None:
    """Refuse to load a registry version on another base than the one it was gated on (its experts and router are
    deltas of that base's weights): the weights' sha256 where the base is a local folder, else the hub id."""
    recorded = recorded or {}
    old, new = recorded.get("sha256"), current.get("sha256")
    if old and new and old == new:
        return
    if not old and not new and recorded.get("name_or_path") == current.get("name_or_path"):
        return

    def name(side: dict, digest: str | None) -> str:
        return f"sha256 {digest[:12]}..." if digest else f"{side.get('name_or_path')!r} (no digest recorded)"

    raise StaleEvaluation(
        f"{what} was {verb} base {name(recorded, old)}, but the base here is {name(current, new)}: use the base it "
        "was trained on (`base:` in params.yaml), or re-run the pipeline on this one"
    )


def require_trained_on(current: dict, stats_files: dict[str, Path]) -> None:
    """Refuse to evaluate experts or a router trained on another base than `current` (each names the base it was
    trained on in its stats file): an adapter's deltas mean nothing on other weights."""
    for what, path in stats_files.items():
        try:
            base = json.loads(Path(path).read_text(encoding="utf-8")).get("base")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            base = None
        require_same_base(base if isinstance(base, dict) else None, current, what=what, verb="trained on")


def inputs_to_evaluate(params: Params, *, base_dir: Path, experts_dir: Path, router_dir: Path, tasks_dir: Path) -> dict:
    """What `evaluate` does before it loads anything: refuse experts or a router trained on another base, then hash
    exactly the files it is about to measure (the `judged` record it writes into eval.json)."""
    from mllmcl.continual.experts import STATS_FILE as EXPERT_STATS
    from mllmcl.continual.router import STATS_FILE as ROUTER_STATS
    from mllmcl.model.loading import resolve_base

    adapters = {f"expert {t} ({Path(experts_dir) / t})": Path(experts_dir) / t / EXPERT_STATS for t in params.tasks}
    adapters[f"router ({router_dir})"] = Path(router_dir) / ROUTER_STATS
    where = resolve_base(params.base, Path(base_dir))
    require_trained_on({**base_identity(params.base, Path(base_dir)), "name_or_path": where}, adapters)
    return fingerprint(
        params,
        base_dir=base_dir,
        experts_dir=experts_dir,
        router_dir=router_dir,
        tasks_dir=tasks_dir,
        language_suite=params.router.base_suite,
    )
