"""reports/benchmark/<name>.html: the benchmark as one self-contained page (plots inlined, text escaped): the summary
table (mean +- std over task orders), final accuracy per task and method, one accuracy matrix per method, and the
text-only (linguistic) accuracy after every stage, where the second seed paper saw shared adapters erode it."""

from __future__ import annotations

import html

from mllmcl.continual.baselines import aggregate, figure
from mllmcl.continual.benchmark_methods import LABELS, SUMMARY_KEYS


def format_figure(figures: dict, key: str, plus_minus: str = " ±") -> str:
    """One aggregated metric as text: mean (BWT signed), then +- the std when there were several runs."""
    f = figures.get(key) or {}
    if f.get("mean") is None:
        return "-"
    text = f"{f['mean']:+.3f}" if key == "BWT" else f"{f['mean']:.3f}"
    return text + (f"{plus_minus}{f['std']:.3f}" if f.get("std") is not None else "")


def _language(method: dict) -> tuple[float | None, float | None]:
    """(accuracy on the text-only suite after the last stage, the base's), where the method measured it."""
    stages = [s for s in method.get("per_stage") or [] if s.get("language_accuracy") is not None]
    if not stages:
        return None, None
    last = stages[-1]
    base = next((s.get("language_base_accuracy") for s in stages if s.get("language_base_accuracy") is not None), None)
    return last["language_accuracy"], base


def _seconds(method: dict) -> float | None:
    stages = method.get("per_stage") or []
    spent = [s.get("train_seconds") or s.get("router_seconds") for s in stages]
    spent = [s for s in spent if s is not None]
    return round(sum(spent), 1) if spent else None


def linguistic_figure(result: dict) -> str | None:
    """Text-only suite accuracy after each stage, per method that measured it, beside the base's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mllmcl.plots import png_data_uri

    curves = {
        name: [s.get("language_accuracy") for s in m.get("per_stage") or []]
        for name, m in result["methods"].items()
        if any(s.get("language_accuracy") is not None for s in m.get("per_stage") or [])
    }
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    base = None
    for name, ys in curves.items():
        stages = [s["stage"] for s in result["methods"][name]["per_stage"]]
        ax.plot(stages, [y if y is not None else float("nan") for y in ys], marker="o", label=LABELS.get(name, name))
        base = base or _language(result["methods"][name])[1]
    if base is not None:
        ax.axhline(base, color="#555", linestyle="--", linewidth=1, label=f"base {base:.2f}")
    ax.set_xticks(sorted({s["stage"] for m in result["methods"].values() for s in m.get("per_stage") or []}))
    ax.set_xlabel("stage (tasks learned)")
    ax.set_ylabel("text-only accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2, frameon=False)
    return png_data_uri(fig)


def render_html(result: dict) -> str:
    """The whole report; every figure rests on the runs in `result` (no imputed cell reaches a page)."""
    from mllmcl.plots import heatmap

    tasks = result["tasks"]
    runs = result.get("runs") or [result]
    figures = result.get("aggregate") or aggregate(runs)  # a JSON written before --orders has none: one run
    rows = []
    for name, method in result["methods"].items():
        lang, base = _language(method)
        drop = "-" if lang is None or base is None else f"{base - lang:+.3f} ({100 * (base - lang) / base:+.1f}%)"
        router = (method.get("per_stage") or [{}])[-1].get("router_accuracy")
        seconds = _seconds(method)
        rows.append(
            f"<tr><td>{html.escape(LABELS.get(name, name))}</td>"
            + "".join(f"<td>{format_figure(figures.get(name, {}), k, ' &plusmn; ')}</td>" for k in SUMMARY_KEYS)
            + f"<td>{'-' if lang is None else f'{lang:.3f}'}</td><td>{drop}</td>"
            + f"<td>{'-' if router is None else f'{router:.3f}'}</td>"
            + f"<td>{'-' if seconds is None else seconds}</td></tr>"
        )
    heatmaps = "".join(
        f"<figure><figcaption>{html.escape(LABELS.get(name, name))}</figcaption>"
        f"<img src='{heatmap(m['matrix'], tasks, LABELS.get(name, name), 'evaluated on', [f'after {t}' for t in tasks])}'>"
        "</figure>"
        for name, m in result["methods"].items()
    )
    language = linguistic_figure(result)
    orders = "".join(f"<li>{html.escape(' → '.join(r['tasks']))}</li>" for r in runs)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mllmcl benchmark</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }} figcaption {{ font-weight: 600; }}
.note {{ color: #555; }}
</style></head><body>
<h1>MR-LoRA against the continual-learning baselines</h1>
<p>{len(runs)} task order(s):</p><ul>{orders}</ul>
<table><tr><th>method</th><th>MFT</th><th>MFN</th><th>MAA</th><th>BWT</th><th>text-only, last stage</th>
<th>text-only drop vs base</th><th>router accuracy, last stage</th><th>training seconds</th></tr>
{"".join(rows)}</table>
<p class="note">Metrics are the mean (&plusmn; sample std) over the task orders; the other columns are the first
order's run. A blank cell of a matrix is a task not learned yet (or, for joint training, a stage it does not
have); every filled cell names the evaluation behind it in the JSON (<code>cells</code>).</p>
<h2>Final accuracy per task</h2><img src="{figure(result)}">
<h2>Accuracy matrices (first order)</h2>{heatmaps}
<h2>Text-only (linguistic) accuracy after every stage</h2>
{f'<img src="{language}">' if language else '<p class="note">No method measured the text-only suite.</p>'}
</body></html>
"""
