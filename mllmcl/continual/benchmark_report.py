"""reports/benchmark/<track>.{html,md,png}: the benchmark for people. The page is self-contained (plots inlined, text
escaped): the summary table (mean +- std over seeds x task orders), final accuracy per task and method, one accuracy
matrix per method, and the text-only (linguistic) accuracy after every stage, where the second seed paper saw shared
adapters erode it. The Markdown holds the same tables for a PR comment or a Prefect artifact."""

from __future__ import annotations

import html
import json
from pathlib import Path

from mllmcl.continual.benchmark_claims import claims_json, verdict
from mllmcl.continual.benchmark_methods import LABELS, METHODS, SHARED_ADAPTER_METHODS

COLOURS = {
    "zero_shot_base": "#c9c9c9",
    "oracle_experts": "#7aa6d8",
    "mr_lora": "#e08a2c",
    "ncm": "#f0c27b",
    "lora_ft": "#d9534f",
    "lora_ft_replay": "#b5651d",
    "msgm": "#8e6cc0",
    "msgm_replay": "#5b3f8c",
    "joint": "#5cb85c",
}

# (key, column header, format) of the summary table; BWT and the drops are signed
COLUMNS = (
    ("MFT", "MFT", ".3f"),
    ("MFN", "MFN", ".3f"),
    ("MAA", "MAA", ".3f"),
    ("BWT", "BWT", "+.3f"),
    ("language_accuracy", "text-only acc.", ".3f"),
    ("linguistic_drop", "text-only drop", "+.3f"),
    ("linguistic_drop_pct", "drop %", "+.1f"),
    ("router_accuracy", "router acc.", ".3f"),
    ("train_seconds", "train s", ".0f"),
    ("adapter_bytes", "adapter MB", "mb"),
    ("latency_ms", "ms/request", ".1f"),
)


def _number(value: float, fmt: str) -> str:
    return f"{value / 1e6:.2f}" if fmt == "mb" else format(value, fmt)


def format_figure(figures: dict, key: str, plus_minus: str = " ±") -> str:
    """One aggregated figure as text: its mean, then +- the std when there were several runs; "-" when not measured."""
    fmt = next((f for k, _, f in COLUMNS if k == key), ".3f")
    f = figures.get(key) or {}
    if f.get("mean") is None:
        return "-"
    std = f.get("std")
    return _number(f["mean"], fmt) + (f"{plus_minus}{_number(std, fmt.lstrip('+'))}" if std is not None else "")


def _table_rows(result: dict, plus_minus: str) -> list[tuple[str, list[str]]]:
    figures = result.get("aggregate") or {}
    return [
        (LABELS.get(name, name), [format_figure(figures.get(name, {}), key, plus_minus) for key, _, _ in COLUMNS])
        for name in result["methods"]
    ]


def _runs_line(result: dict) -> str:
    s = result.get("settings") or {}
    runs = result.get("runs") or [result]
    return (
        f"{len(runs)} run(s): {s.get('seeds', 1)} seed(s) x {len(s.get('orders') or [0])} task order(s); "
        f"{s.get('steps_per_task', '?')} steps per task for every expert and shared adapter"
        + (
            " (tasks with their own budget, scaled alike: "
            + ", ".join(f"{t} {n}" for t, n in s["own_budgets"].items())
            + ")"
            if s.get("own_budgets")
            else ""
        )
        + f", router {s.get('router_steps', '?')} steps, replay {s.get('replay_per_task', '?')} records per earlier task"
        + (
            f", the first {s['test_limit']} test records per task for every method (the zero-shot and oracle rows "
            "scored again on them)"
            if s.get("test_limit")
            else ""
        )
        + (f"; {result['seconds']:.0f} s" if result.get("seconds") is not None else "")
        + _base_words(s.get("base"))
    )


def _base_words(base: dict | None) -> str:
    """Which base the figures belong to: its weights' sha256 (a report written before it was kept says so)."""
    if not base:
        return "; base not recorded"
    name = base.get("name_or_path") or f"{base.get('build', '?')} build"
    return f"; base: {name}" + (f", weights sha256 {base['sha256'][:12]}" if base.get("sha256") else "")


def _claims(result: dict) -> list[tuple[str, str, str]]:
    """(statement, mean +- std, verdict) of every claim, from the JSON or, for a report written before claims were
    kept, from its runs."""
    checks = result.get("claims") or claims_json(result.get("runs") or [])
    return [
        (
            c["statement"],
            "-"
            if c["mean"] is None
            else format(c["mean"], c.get("fmt", "+.3f")) + (f" ± {c['std']:.3f}" if c["std"] is not None else ""),
            verdict(c),
        )
        for c in checks
    ]


def render_markdown(result: dict) -> str:
    """The summary and the per-task final accuracies as Markdown tables."""
    headers = ["method", *(h for _, h, _ in COLUMNS)]
    lines = [
        f"# Benchmark: {result.get('track', '')} track ({' -> '.join(result['tasks'])})",
        "",
        _runs_line(result) + ". Figures: mean ± sample std over the runs; `-`: not defined or not measured.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in _table_rows(result, " ± ")]
    final = result.get("final") or {}
    if final:
        tasks = result["tasks"]
        lines += ["", "Final accuracy per task (after the last stage):", ""]
        lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for name in result["methods"]:
            per = final.get(name, {})
            lines.append(
                f"| {LABELS.get(name, name)} | "
                + " | ".join(format_figure(per, t, " ± ") if t in per else "-" for t in tasks)
                + " |"
            )
    claims = _claims(result)
    if claims:
        lines += ["", "Claims, judged on the mean over the runs:", "", "| claim | value | verdict |", "|---|---:|---|"]
        lines += [f"| {statement} | {value} | {word} |" for statement, value, word in claims]
    return "\n".join(lines) + "\n"


def figure(result: dict) -> str:
    """Final accuracy per task for each method (mean, with the std over runs as error bars), beside the accuracy matrix
    of the first shared-adapter method (forgetting shows down a column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mllmcl.plots import draw_heatmap, png_data_uri

    tasks, methods = result["tasks"], result["methods"]
    final = result.get("final") or {}
    names = [m for m in METHODS if m in methods]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        per = final.get(name) or {t: {"mean": v} for t, v in zip(tasks, methods[name]["matrix"][-1]) if v is not None}
        mfn = (result.get("aggregate") or {}).get(name, {}).get("MFN", {}).get("mean") or methods[name].get("MFN")
        left.bar(
            [i + (k - (len(names) - 1) / 2) * w for i in range(len(tasks))],
            [(per.get(t) or {}).get("mean") or 0 for t in tasks],
            w,
            yerr=[(per.get(t) or {}).get("std") or 0 for t in tasks],
            label=f"{LABELS[name]}  MFN {mfn or 0:.2f}",
            color=COLOURS[name],
        )
    left.set_xticks(range(len(tasks)), tasks)
    left.set_ylim(0, 1.05)
    left.set_ylabel("final accuracy")
    left.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    left.grid(axis="y", alpha=0.3)
    shown = next((m for m in (*SHARED_ADAPTER_METHODS, "mr_lora", *names) if m in methods), names[0])
    bwt = methods[shown].get("BWT")
    draw_heatmap(
        right,
        methods[shown]["matrix"],
        tasks,
        f"{LABELS[shown]} accuracy matrix (BWT {'-' if bwt is None else f'{bwt:+.2f}'})",
        "evaluated on",
        [f"after {t}" for t in tasks],
    )
    return png_data_uri(fig)


def linguistic_figure(result: dict) -> str | None:
    """Text-only suite accuracy after each stage (first run), per method that measured it, beside the base's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mllmcl.plots import png_data_uri

    curves = {
        name: m["per_stage"]
        for name, m in result["methods"].items()
        if any(s.get("language_accuracy") is not None for s in m.get("per_stage") or [])
    }
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    base = None
    for name, stages in curves.items():
        ys = [s.get("language_accuracy") for s in stages]
        ax.plot(
            [s["stage"] for s in stages],
            [y if y is not None else float("nan") for y in ys],
            marker="o",
            label=LABELS.get(name, name),
            color=COLOURS.get(name),
        )
        base = base or next((s["language_base_accuracy"] for s in stages if s.get("language_base_accuracy")), None)
    if base is not None:
        ax.axhline(base, color="#555", linestyle="--", linewidth=1, label=f"base {base:.2f}")
    ax.set_xticks(range(1, len(result["tasks"]) + 1))
    ax.set_xlabel("stage (tasks learned)")
    ax.set_ylabel("text-only accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2, frameon=False)
    return png_data_uri(fig)


def render_html(result: dict) -> str:
    """The whole report; every figure rests on the runs in `result` (no imputed cell reaches a page)."""
    from mllmcl.plots import heatmap

    runs = result.get("runs") or [result]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        for label, cells in _table_rows(result, " ± ")
    )
    heatmaps = "".join(
        f"<figure><figcaption>{html.escape(LABELS.get(name, name))}</figcaption>"
        f"<img src='{heatmap(m['matrix'], runs[0]['tasks'], LABELS.get(name, name), 'evaluated on', [f'after {t}' for t in runs[0]['tasks']])}'>"
        "</figure>"
        for name, m in result["methods"].items()
    )
    language = linguistic_figure(result)
    claims = "".join(
        f"<tr><td>{html.escape(statement)}</td><td>{html.escape(value)}</td><td>{html.escape(word)}</td></tr>"
        for statement, value, word in _claims(result)
    )
    orders = "".join(f"<li>seed {r.get('seed', 0)}: {html.escape(' → '.join(r['tasks']))}</li>" for r in runs)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mllmcl benchmark: {html.escape(str(result.get("track", "")))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }} figcaption {{ font-weight: 600; }}
.note {{ color: #555; }}
</style></head><body>
<h1>MR-LoRA against the continual-learning baselines: {html.escape(str(result.get("track", "")))} track</h1>
<p>{html.escape(_runs_line(result))}.</p><ul>{orders}</ul>
<table><tr><th>method</th>{head}</tr>{rows}</table>
<p class="note">Every figure is the mean (± sample std) over the runs; "-" is a figure the method does not define
(joint training has no sequence, so no MFT, MAA or BWT) or did not measure. Text-only drop: the base minus the method
on the text-only suite after the last stage (positive = forgetting). Latency: answering the last stage's test requests
in batches, per request. A blank cell of a matrix is a task not learned yet; every filled cell names the evaluation
behind it in the JSON (<code>cells</code>).</p>
<h2>Claims</h2>
<table><tr><th>claim (judged on the mean over the runs)</th><th>value</th><th>verdict</th></tr>{claims}</table>
<h2>Final accuracy per task</h2><img src="{figure(result)}">
<h2>Accuracy matrices (first run)</h2>{heatmaps}
<h2>Text-only (linguistic) accuracy after every stage (first run)</h2>
{f'<img src="{language}">' if language else '<p class="note">No method measured the text-only suite.</p>'}
</body></html>
"""


def write_reports(result: dict, stem: Path) -> list[Path]:
    """<stem>.json (every cell, every run), .md, .html and .png."""
    from mllmcl.plots import png_bytes

    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(s) for s in (".json", ".md", ".html", ".png")]
    out[0].write_text(json.dumps(result, indent=2) + "\n")
    out[1].write_text(render_markdown(result), encoding="utf-8")
    out[2].write_text(render_html(result), encoding="utf-8")
    out[3].write_bytes(png_bytes(figure(result)))
    return out
