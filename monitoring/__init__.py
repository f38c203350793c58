"""Drift of incoming requests against what the production model learned, with Evidently, and what to do about it.

features.py   what the model sees of a request (image statistics, question, base embeddings, router verdict)
reference.py  per-task reference profiles of the production version (cached per version id)
report.py     the drift verdict (Evidently's methods) and Evidently's HTML/JSON report
policy.py     verdict -> decision: none, known drift (alert / refresh), novel data (new task / labelling request)
monitor.py    one batch end to end (a JSONL batch or traffic-log lines), the traffic reader, the event cooldown

Heavy imports (pandas, Evidently, torch) happen inside the functions. Nothing here imports flows, stages, Prefect or
DVC: the flows call `monitor_batch`; `mllmcl drift` is its command-line front."""

from __future__ import annotations

__all__ = ["Decision", "DriftResult", "decide", "detect", "monitor_batch", "read_traffic"]


def __getattr__(name: str):
    """Lazy re-exports, so that `import monitoring` stays cheap."""
    if name in ("Decision", "decide"):
        from monitoring import policy

        return getattr(policy, name)
    if name in ("DriftResult", "detect"):
        from monitoring import report

        return getattr(report, name)
    if name in ("monitor_batch", "read_traffic"):
        from monitoring import monitor

        return getattr(monitor, name)
    raise AttributeError(f"module 'monitoring' has no attribute {name!r}")
