"""The gate report a reviewer reads before approving a promotion: Markdown and one self-contained HTML page
(plots inlined as PNG, no external assets). Decision first, then what failed, then the evidence."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _bars(eval_json: dict, production: dict | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(eval_json["tasks"]) + ["language"]
    cand = [eval_json["tasks"][t]["accuracy"] for t in tasks[:-1]] + [eval_json.get("language", {}).get("accuracy", 0)]
    prod_eval = (production or {}).get("eval") or {}
    prod = [prod_eval.get("tasks", {}).get(t, {}).get("accuracy") for t in tasks[:-1]]
    prod.append(prod_eval.get("language", {}).get("accuracy"))
    base = [eval_json.get("base_accuracy", {}).get(t) for t in tasks[:-1]] + [eval_json.get("language", {}).get("base_accuracy")]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    x = range(len(tasks))
    w = 0.27
    ax.bar([i - w for i in x], [b or 0 for b in base], w, label="zero-shot base", color="#c9c9c9")
    ax.bar(list(x), [p or 0 for p in prod], w, label="production", color="#7aa6d8")
    ax.bar([i + w for i in x], cand, w, label="candidate", color="#e08a2c")
    ax.set_xticks(list(x), tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _heatmap(matrix, tasks, title: str, xlabel: str, ylabels) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arr = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(tasks), 0.9 + 0.55 * len(ylabels)))
    ax.imshow(arr, vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(arr):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}" if v <= 1 else f"{int(v)}", ha="center", va="center",
                    color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30)
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _confusion(eval_json: dict) -> str | None:
    conf = eval_json.get("router_confusion")
    if not conf:
        return None
    rows = list(conf)
    cols = list(eval_json["tasks"]) + ["base"]
    matrix = []
    for r in rows:
        total = sum(conf[r].values()) or 1
        matrix.append([conf[r].get(c, 0) / total for c in cols])
    return _heatmap(matrix, cols, "router: share of each task's requests sent to", "routed to", rows)


def render_markdown(gate: dict, eval_json: dict) -> str:
    m = gate.get("metrics", {})
    lines = [f"# Promotion gate: **{gate['decision'].upper()}**", "",
             f"Candidate `{gate['candidate']}` vs production `{gate.get('baseline') or 'none (first candidate)'}`.", ""]
    failed = [c for c in gate["checks"] if not c["passed"]]
    if failed:
        lines += ["Failed checks:", ""] + [f"- **{c['name']}**: {c['detail']}" for c in failed] + [""]
    lines += ["| check | result | value | threshold | detail |", "|---|---|---|---|---|"]
    for c in gate["checks"]:
        lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {_fmt(c['value'])} | "
                     f"{_fmt(c['threshold'])} | {c['detail']} |")
    lines += ["", "| task | accuracy | router accuracy | n |", "|---|---|---|---|"]
    for t, v in eval_json.get("tasks", {}).items():
        lines.append(f"| {t} | {v['accuracy']:.3f} | {v.get('router_accuracy', 0):.3f} | {v['n']} |")
    lang = eval_json.get("language", {})
    if lang:
        lines.append(f"| language (text-only) | {lang['accuracy']:.3f} | {lang.get('router_accuracy', 0):.3f} | {lang['n']} |")
    lines += ["", f"Continual-learning metrics: MFT {_fmt(m.get('MFT'))}, MFN {_fmt(m.get('MFN'))}, "
              f"MAA {_fmt(m.get('MAA'))}, BWT {_fmt(m.get('BWT'))}."]
    lineage = gate.get("lineage", {})
    if lineage:
        lines += ["", f"Lineage: git `{lineage.get('git_commit') or 'unknown'}`"
                  f"{' (uncommitted changes)' if lineage.get('git_dirty') else ''}; "
                  f"params changed vs production: {', '.join(lineage.get('params_diff', [])) or 'none'}."]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_html(gate: dict, eval_json: dict, production: dict | None) -> str:
    ok = gate["decision"] == "pass"
    colour = "#1e7d32" if ok else "#b3261e"
    m = gate.get("metrics", {})
    failed = [c for c in gate["checks"] if not c["passed"]]
    rows = "".join(
        f"<tr class='{'ok' if c['passed'] else 'bad'}'><td>{html.escape(c['name'])}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td><td>{_fmt(c['value'])}</td><td>{_fmt(c['threshold'])}</td>"
        f"<td>{html.escape(c['detail'])}</td></tr>" for c in gate["checks"])
    why = ("".join(f"<li><b>{html.escape(c['name'])}</b>: {html.escape(c['detail'])}</li>" for c in failed)
           if failed else "<li>every check passed</li>")
    figures = [("Accuracy per task: candidate vs production vs zero-shot base", _bars(eval_json, production))]
    if m.get("matrix"):
        figures.append(("Accuracy matrix A[stage][task] (rows: after learning the first t tasks)",
                        _heatmap(m["matrix"], m["matrix_tasks"], "accuracy matrix", "task",
                                 [f"stage {i + 1}" for i in range(len(m["matrix"]))])))
    conf = _confusion(eval_json)
    if conf:
        figures.append(("Router confusion", conf))
    figs = "".join(f"<figure><figcaption>{html.escape(t)}</figcaption><img src='{src}'></figure>" for t, src in figures)
    lang = eval_json.get("language", {})
    lineage = gate.get("lineage", {})
    lineage_html = (f"<p>git <code>{html.escape(str(lineage.get('git_commit') or 'unknown'))}</code>"
                    f"{' (uncommitted changes)' if lineage.get('git_dirty') else ''} · params changed vs production: "
                    f"{html.escape(', '.join(lineage.get('params_diff', [])) or 'none')}</p>"
                    f"<details><summary>data state (dvc.lock)</summary><pre>"
                    f"{html.escape(_lock_text(lineage.get('dvc_lock', {})))}</pre></details>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate: {gate['decision']}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px;color:#222}}
.decision{{background:{colour};color:white;padding:16px 20px;border-radius:8px;font-size:28px;font-weight:700}}
.sub{{font-size:15px;font-weight:400;margin-top:4px}} table{{border-collapse:collapse;width:100%;font-size:14px}}
td,th{{border-bottom:1px solid #ddd;padding:5px 8px;text-align:left}} tr.bad td{{background:#fdecea}}
.metrics span{{display:inline-block;margin-right:18px;font-size:15px}} figure{{margin:18px 0}}
figcaption{{font-weight:600;margin-bottom:6px}} img{{max-width:100%}} code,pre{{font-size:12px}}</style></head><body>
<div class="decision">{'PASS: ready to promote' if ok else 'FAIL: do not promote'}
<div class="sub">candidate {html.escape(str(gate['candidate']))} vs production {html.escape(str(gate.get('baseline') or 'none (first candidate)'))}</div></div>
<h3>{'Why it fails' if failed else 'Summary'}</h3><ul>{why}</ul>
<div class="metrics"><span>MFN {_fmt(m.get('MFN'))}</span><span>MFT {_fmt(m.get('MFT'))}</span><span>MAA {_fmt(m.get('MAA'))}</span>
<span>BWT {_fmt(m.get('BWT'))}</span><span>router {_fmt(eval_json.get('router_accuracy'))}</span>
<span>language {_fmt(lang.get('accuracy'))} (base {_fmt(lang.get('base_accuracy'))})</span></div>
<h3>Checks</h3><table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>detail</th></tr>{rows}</table>
{figs}<h3>Lineage</h3>{lineage_html}</body></html>"""


def _lock_text(lock: dict) -> str:
    return "\n".join(f"{stage}: " + ", ".join(f"{p}={str(h)[:8]}" for p, h in paths.items()) for stage, paths in lock.items())


def write_gate_reports(gate: dict, eval_json: dict, production: dict | None, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "gate.md", out_dir / "gate.html"
    md.write_text(render_markdown(gate, eval_json))
    page.write_text(render_html(gate, eval_json, production))
    return md, page
