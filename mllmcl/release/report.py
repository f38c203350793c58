"""The gate report a reviewer reads before approving a promotion: Markdown and one self-contained HTML page
(plots inlined as PNG, no external assets). Decision first, then what failed, then the evidence."""

from __future__ import annotations

import html
from pathlib import Path

from mllmcl.plots import heatmap, png_data_uri


def task_order(gate: dict, eval_json: dict) -> list[str]:
    """Tasks in the order they were learned (eval.json's keys are sorted by name)."""
    learned = gate.get("metrics", {}).get("matrix_tasks") or []
    return [t for t in learned if t in eval_json["tasks"]] + [t for t in eval_json["tasks"] if t not in learned]


def _failed_tasks(gate: dict) -> set[str]:
    """Tasks whose own check failed: the only ones a report paints red."""
    return {c["name"].split(":", 1)[1] for c in gate.get("checks", []) if not c["passed"] and ":" in c["name"]}


def _bars(eval_json: dict, production: dict | None, order: list[str], failed: set[str] = frozenset()) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(order) + ["language"]
    cand = [eval_json["tasks"][t]["accuracy"] for t in tasks[:-1]] + [eval_json.get("language", {}).get("accuracy", 0)]
    prod_eval = (production or {}).get("eval") or {}
    prod = [prod_eval.get("tasks", {}).get(t, {}).get("accuracy") for t in tasks[:-1]]
    prod.append(prod_eval.get("language", {}).get("accuracy"))
    base = [eval_json.get("base_accuracy", {}).get(t) for t in tasks[:-1]] + [
        eval_json.get("language", {}).get("base_accuracy")
    ]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    x = range(len(tasks))
    w = 0.27
    ax.bar([i - w for i in x], [b or 0 for b in base], w, label="zero-shot base", color="#c9c9c9")
    ax.bar(
        list(x),
        [p or 0 for p in prod],
        w,
        label="production" if production else "production (none yet)",
        color="#7aa6d8",
    )
    bars = ax.bar([i + w for i in x], cand, w, label="candidate", color="#e08a2c")
    for bar, c, task in zip(bars, cand, tasks):
        worse = task in failed  # red means "this task's check failed", never just "a little below production"
        ax.text(
            bar.get_x() + w / 2,
            c + 0.02,
            f"{c:.2f}",
            ha="center",
            fontsize=7,
            color="#b3261e" if worse else "#333",
            fontweight="bold" if worse else "normal",
        )
    ax.set_xticks(list(x), tasks)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return png_data_uri(fig)


def confusion_figure(eval_json: dict, order: list[str]) -> str | None:
    """Heatmap of where the router sent each task's requests (right-expert cells below 0.95 framed), or None when
    eval.json has no confusion."""
    conf = eval_json.get("router_confusion")
    if not conf:
        return None
    rows = [t for t in order if t in conf] + [t for t in conf if t not in order]
    cols = list(order) + ["base"]
    matrix = []
    for r in rows:
        total = sum(conf[r].values()) or 1
        matrix.append([conf[r].get(c, 0) / total for c in cols])
    marked = {(i, j) for i, r in enumerate(rows) for j, c in enumerate(cols) if c == r and matrix[i][j] < 0.95}
    return heatmap(
        matrix, cols, "router: share of each task's requests sent to", "routed to", rows, cmap="Blues", marked=marked
    )


def matrix_figure(gate: dict, *, always: bool = False) -> str | None:
    """The accuracy matrix, one row per stage the registry holds a version of plus the candidate's row; the
    candidate's failed cells framed. None until there is an earlier stage to compare with, unless `always`
    (a DVC plot file must exist even for a first candidate)."""
    m = gate.get("metrics", {})
    tasks, matrix = m.get("matrix_tasks") or [], m.get("matrix") or []
    if not matrix:
        return None
    known = [i for i, row in enumerate(matrix[:-1]) if any(v is not None for v in row)]
    if not known and not always:
        return None
    failed = {c["name"].split(":", 1)[1] for c in gate["checks"] if not c["passed"] and ":" in c["name"]}
    rows = [matrix[i] for i in known] + [matrix[-1]]
    labels = [f"after +{tasks[i]}" for i in known] + [f"after +{tasks[-1]} (candidate)"]
    marked = {(len(rows) - 1, j) for j, t in enumerate(tasks) if t in failed}
    return heatmap(
        rows, tasks, "accuracy after each stage (row) on each task (column)", "evaluated on", labels, marked=marked
    )


def coverage_note(gate: dict) -> str:
    """Says when MFT/MAA/BWT rest on fewer stages than the candidate has learned."""
    m = gate.get("metrics", {})
    known, total = m.get("stages_known"), m.get("stages")
    if not total or known == total:
        return ""
    return (
        f"MFT, MAA and BWT cover {known} of {total} stages: the registry holds no version for the others "
        "(a first run learns several tasks at once), so they fill in as later stages are promoted."
    )


def render_markdown(gate: dict, eval_json: dict, lineage: dict | None = None) -> str:
    """reports/gate.md: the decision, failed checks, every check, per-task accuracy, CL metrics and lineage."""
    m = gate.get("metrics", {})
    lines = [
        f"# Promotion gate: **{gate['decision'].upper()}**",
        "",
        f"Candidate `{gate['candidate']}` vs production `{gate.get('baseline') or 'none (first candidate)'}`.",
        "",
    ]
    banner = policy_banner(gate)
    if banner:
        lines += [f"> **{banner}**", ""]
    failed = [c for c in gate["checks"] if not c["passed"]]
    if failed:
        lines += ["Failed checks:", ""] + [f"- **{c['name']}**: {c['detail']}" for c in failed] + [""]
    lines += ["| check | result | value | threshold | statistics | detail |", "|---|---|---|---|---|---|"]
    for c in gate["checks"]:
        lines.append(
            f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {_fmt(c['value'])} | "
            f"{_fmt(c['threshold'])} | {_stats(c)} | {c['detail']} |"
        )
    rule = (gate.get("policy") or {}).get("prior_task_rule")
    if rule:
        lines += ["", f"Prior-task rule: {rule}."]
    lines += _examples_md(gate)
    lines += ["", "| task | accuracy | router accuracy | n |", "|---|---|---|---|"]
    for t in task_order(gate, eval_json):
        v = eval_json["tasks"][t]
        lines.append(f"| {t} | {v['accuracy']:.3f} | {v.get('router_accuracy', 0):.3f} | {v['n']} |")
    lang = eval_json.get("language", {})
    if lang:
        lines.append(
            f"| language (text-only) | {lang['accuracy']:.3f} | {lang.get('router_accuracy', 0):.3f} | {lang['n']} |"
        )
    lines += [
        "",
        f"Continual-learning metrics: MFT {_fmt(m.get('MFT'))}, MFN {_fmt(m.get('MFN'))}, "
        f"MAA {_fmt(m.get('MAA'))}, BWT {bwt_text(m)}. {coverage_note(gate)}".rstrip(),
    ]
    lineage = lineage or {}
    if lineage:
        lines += [
            "",
            f"Lineage: git `{lineage.get('git_commit') or 'unknown'}`"
            f"{' (uncommitted changes)' if lineage.get('git_dirty') else ''}; "
            f"params changed vs production: {', '.join(lineage.get('params_diff', [])) or 'none'}.",
        ]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _stats(c: dict) -> str:
    """n, 95% interval, and the non-inferiority p-value and power of a prior-task check, where it has them."""
    parts = []
    if c.get("n"):
        parts.append(f"n={c['n']}")
    if c.get("interval"):
        lo, hi = c["interval"]
        parts.append(f"95% CI {lo:.3f}-{hi:.3f}")
    if c.get("p_value") is not None:
        parts.append(f"non-inferiority p={c['p_value']:.3g}")
    if c.get("power") is not None:
        parts.append(f"power {c['power']:.0%}")
    return ", ".join(parts)


def bwt_text(m: dict) -> str:
    """BWT as a number only when the matrix has the just-learned accuracy it needs; otherwise say why not, and give
    the change vs the previous stage that the matrix does show."""
    delta = m.get("delta_vs_previous_stage")
    since = f"change vs the previous stage {delta:+.3f}" if delta is not None else ""
    earlier = max(0, (m.get("stages") or 0) - 1)
    if m.get("BWT") is None:
        return "n/a (no task's just-learned accuracy is recorded" + (f"; {since})" if since else ")")
    covered = m.get("bwt_tasks", earlier)
    if covered < earlier:
        return f"{m['BWT']:+.3f} (over {covered} of {earlier} earlier tasks" + (f"; {since})" if since else ")")
    return f"{m['BWT']:+.3f}"


def policy_banner(gate: dict) -> str:
    """A loosened policy is the first thing a reviewer reads."""
    loosened = (gate.get("policy") or {}).get("loosened") or []
    if not loosened:
        return ""
    return (
        "POLICY LOOSENED by the candidate's params (" + "; ".join(loosened) + "): production's stricter values were "
        "applied; changing the policy takes `mllmcl registry promote --force --reason`, recorded in the audit log."
    )


def _examples_md(gate: dict) -> list[str]:
    lines = []
    for task, rows in (gate.get("examples") or {}).items():
        if rows:
            lines += [
                "",
                f"Failing examples for `{task}`:",
                "",
                "| id | question | expected | answered | expert |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['id']} | {r['question']} | {r['answer']} | {r['prediction']} | {r['expert']} |" for r in rows
            ]
    return lines


def render_html(gate: dict, eval_json: dict, production: dict | None, lineage: dict | None = None) -> str:
    """reports/gate.html: decision banner, why it fails, checks, figures and lineage in one self-contained page (plots
    inlined, text escaped)."""
    ok = gate["decision"] == "pass"
    colour = "#1e7d32" if ok else "#b3261e"
    m = gate.get("metrics", {})
    failed = [c for c in gate["checks"] if not c["passed"]]
    rows = "".join(
        f"<tr class='{'ok' if c['passed'] else 'bad'}'><td>{html.escape(c['name'])}</td>"
        f"<td class='res'>{'pass' if c['passed'] else 'FAIL'}</td><td>{_fmt(c['value'])}</td><td>{_fmt(c['threshold'])}</td>"
        f"<td>{html.escape(_stats(c))}</td><td>{html.escape(c['detail'])}</td></tr>"
        for c in gate["checks"]
    )
    why = (
        "".join(f"<li><b>{html.escape(c['name'])}</b>: {html.escape(c['detail'])}</li>" for c in failed)
        if failed
        else "<li>every check passed</li>"
    )
    order = task_order(gate, eval_json)
    banner = policy_banner(gate)
    banner_html = f"<p class='banner'>{html.escape(banner)}</p>" if banner else ""
    examples_html = "".join(
        f"<h4>Failing examples: {html.escape(task)}</h4><table><tr><th>id</th><th>question</th><th>expected</th>"
        "<th>answered</th><th>expert</th></tr>"
        + "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(r.get(k)))}</td>" for k in ("id", "question", "answer", "prediction", "expert")
            )
            + "</tr>"
            for r in rows
        )
        + "</table>"
        for task, rows in (gate.get("examples") or {}).items()
        if rows
    )
    figures = [
        (
            "Accuracy per task: candidate vs production vs zero-shot base",
            _bars(eval_json, production, order, _failed_tasks(gate)),
        )
    ]
    matrix = matrix_figure(gate)
    if matrix:
        figures.append(
            (
                "Accuracy matrix: each row is the model after learning one more task; a drop down a "
                "column is forgetting (framed: the candidate's failed checks)",
                matrix,
            )
        )
    else:
        figures.append(("Accuracy matrix", None))
    conf = confusion_figure(eval_json, order)
    if conf:
        figures.append(
            ("Router confusion: rows are the true task, columns where the router sent it (framed: below 0.95)", conf)
        )
    no_matrix = (
        "<p class='note'>Appears once the registry holds a version of an earlier stage: each promoted stage "
        "adds a row, and a drop down a column is forgetting.</p>"
    )
    figs = "".join(
        f"<figure><figcaption>{html.escape(t)}</figcaption>{_img(src) if src else no_matrix}</figure>"
        for t, src in figures
    )
    lang = eval_json.get("language") or {}
    lineage = lineage or {}
    lineage_html = (
        f"<p>git <code>{html.escape(str(lineage.get('git_commit') or 'unknown'))}</code>"
        f"{' (uncommitted changes)' if lineage.get('git_dirty') else ''} · params changed vs production: "
        f"{html.escape(', '.join(lineage.get('params_diff', [])) or 'none')}</p>"
        f"<details><summary>data state (dvc.lock)</summary><pre>"
        f"{html.escape(_lock_text(lineage.get('dvc_lock', {})))}</pre></details>"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate: {gate["decision"]}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px;color:#222}}
.decision{{background:{colour};color:white;padding:16px 20px;border-radius:8px;font-size:28px;font-weight:700}}
.sub{{font-size:15px;font-weight:400;margin-top:4px}} table{{border-collapse:collapse;width:100%;font-size:14px}}
td,th{{border-bottom:1px solid #ddd;padding:5px 8px;text-align:left}} tr.bad td{{background:#fdecea}}
tr.ok td.res{{color:#1e7d32}} tr.bad td.res{{color:#b3261e;font-weight:700}} .note{{color:#666;font-size:13px}}
.metrics span{{display:inline-block;margin-right:18px;font-size:15px}}
.banner{{background:#fff3cd;border:2px solid #b3261e;padding:10px 14px;font-weight:700}} figure{{margin:18px 0}}
figcaption{{font-weight:600;margin-bottom:6px}} img{{max-width:100%}} code,pre{{font-size:12px}}</style></head><body>
<div class="decision">{"PASS: ready to promote" if ok else "FAIL: do not promote"}
<div class="sub">candidate {html.escape(str(gate["candidate"]))} vs production {html.escape(str(gate.get("baseline") or "none (first candidate)"))}</div></div>
{banner_html}
<h3>{"Why it fails" if failed else "Summary"}</h3><ul>{why}</ul>
<div class="metrics"><span>MFN {_fmt(m.get("MFN"))}</span><span>MFT {_fmt(m.get("MFT"))}</span><span>MAA {_fmt(m.get("MAA"))}</span>
<span>BWT {html.escape(bwt_text(m))}</span><span>router {_fmt(eval_json.get("router_accuracy"))}</span>
<span>language {_fmt(lang.get("accuracy"))} (base {_fmt(lang.get("base_accuracy"))})</span></div>
<p class="note">MFN: mean accuracy on every task after the last stage; MFT: mean accuracy on each task right after
learning it; MAA: mean of the per-stage averages; BWT: mean change on earlier tasks since learning them (negative =
forgetting); language: text-only suite, candidate vs the plain base. {html.escape(coverage_note(gate))}</p>
<h3>Checks</h3><table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>statistics</th><th>detail</th></tr>{rows}</table>
<p class="note">{html.escape((gate.get("policy") or {}).get("prior_task_rule") or "")}</p>{examples_html}
{figs}<h3>Lineage</h3>{lineage_html}</body></html>"""


def _img(src: str) -> str:
    return f"<img src='{src}'>"


def _lock_text(lock: dict) -> str:
    return "\n".join(
        f"{stage}: " + ", ".join(f"{p}={str(h)[:8]}" for p, h in paths.items()) for stage, paths in lock.items()
    )


def write_gate_reports(
    gate: dict, eval_json: dict, production: dict | None, out_dir: Path, *, lineage: dict | None = None
) -> tuple[Path, Path]:
    """reports/gate.md and the self-contained reports/gate.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "gate.md", out_dir / "gate.html"
    md.write_text(render_markdown(gate, eval_json, lineage))
    page.write_text(render_html(gate, eval_json, production, lineage))
    return md, page
