"""Continual-learning metrics (MLLM-CL / MCITlib protocol) from an accuracy matrix A[t][j]: accuracy on
task j after stage t (stage t has learned tasks 1..t; None where unknown)."""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def mft(a: Matrix) -> float | None:
    """Mean fine-tune accuracy: each task right after it was learned."""
    return _mean(a[j][j] for j in range(len(a)))


def mfn(a: Matrix) -> float | None:
    """Mean final accuracy: every task after the last stage."""
    return _mean(a[-1]) if a else None


def maa(a: Matrix) -> float | None:
    """Mean average accuracy over stages, each stage averaging the tasks learned so far."""
    return _mean(_mean(a[t][: t + 1]) for t in range(len(a)))


def bwt(a: Matrix) -> float | None:
    """Backward transfer: mean of final minus just-learned accuracy over all but the last task (<0 = forgetting)."""
    t = len(a)
    if t < 2:
        return None
    return _mean(a[-1][j] - a[j][j] for j in range(t - 1) if a[-1][j] is not None and a[j][j] is not None)


def forgetting(a: Matrix) -> list[float | None]:
    """Per task: best accuracy at an earlier stage minus final accuracy."""
    t = len(a)
    out: list[float | None] = []
    for j in range(t):
        earlier = [a[s][j] for s in range(j, t - 1) if a[s][j] is not None]
        out.append(max(earlier) - a[-1][j] if earlier and a[-1][j] is not None else None)
    return out


def linguistic_degradation(base: float, candidate: float) -> dict:
    """Base minus candidate on the text-only suite (positive = forgetting), absolute and as % of base."""
    delta = base - candidate
    return {
        "base": base,
        "candidate": candidate,
        "delta": round(delta, 4),
        "percent": round(100 * delta / base, 2) if base else None,
    }


def summary(a: Matrix) -> dict:
    """MFT/MFN/MAA/BWT (rounded to 4 places), per-task forgetting, and how many stages the matrix really covers: what
    every report shows."""

    def r(x):
        return None if x is None else round(x, 4)

    return {
        "MFT": r(mft(a)),
        "MFN": r(mfn(a)),
        "MAA": r(maa(a)),
        "BWT": r(bwt(a)),
        "forgetting": [r(f) for f in forgetting(a)],
        "stages": len(a),
        "stages_known": stages_known(a),
        "delta_vs_previous_stage": r(delta_vs_previous_stage(a)),
        "bwt_tasks": sum(1 for j in range(len(a) - 1) if a[-1][j] is not None and a[j][j] is not None),
    }


def delta_vs_previous_stage(a: Matrix) -> float | None:
    """Mean change on the tasks both of the last two known rows evaluated (what a reviewer sees down a column when
    BWT is not computable because the just-learned accuracies are not recorded)."""
    known = [row for row in a if any(v is not None for v in row)]
    if len(known) < 2:
        return None
    prev, last = known[-2], known[-1]
    return _mean(last[j] - prev[j] for j in range(len(last)) if last[j] is not None and prev[j] is not None)


def stages_known(a: Matrix) -> int:
    """Rows of the matrix with any value: MFT, MAA and BWT cover only these (a first run that learns several
    tasks at once has its final row alone, until later stages are promoted one by one)."""
    return sum(any(v is not None for v in row) for row in a)


def accuracy_matrix(history: Sequence[dict], candidate: dict) -> tuple[list[str], list[list[float | None]]]:
    """Rows from earlier registry versions (each manifest's `tasks` and `eval`), one per stage: the newest
    version that learned exactly the first t tasks of the candidate's order, then the candidate's row."""
    tasks = list(candidate["tasks"])
    by_stage: dict[int, dict] = {}
    for version in history:  # oldest first; newer versions of the same stage win
        vt = list(version.get("tasks", []))
        if vt and vt == tasks[: len(vt)] and len(vt) < len(tasks):
            by_stage[len(vt)] = version
    rows: list[list[float | None]] = []
    for t in range(1, len(tasks) + 1):
        source = candidate if t == len(tasks) else by_stage.get(t)
        row: list[float | None] = [None] * len(tasks)
        if source is not None:
            for j in range(t):
                entry = ((source.get("eval") or {}).get("tasks") or {}).get(tasks[j])
                value = entry.get("accuracy") if isinstance(entry, dict) else None
                row[j] = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        rows.append(row)
    return tasks, rows
