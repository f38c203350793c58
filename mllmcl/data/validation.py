"""Data validation of a task folder before anything trains on it.

File-level rules (readable UTF-8 JSON lines, schema, enough rows) run in plain Python and stop at the first
broken line, naming it. Row-level rules run as Great Expectations expectations on one pandas frame per
task: facts GE cannot compute itself (does the image decode? does the path stay inside the folder? is
this image also in the other split?) become columns first, and GE reports the offending rows by id."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllmcl.config import ValidateConfig
from mllmcl.data import records as rec_io
from mllmcl.data.images import image_exists, read_image_bytes

MAX_LISTED = 20  # offending rows listed per rule in messages (all of them go to the JSON report)


@dataclass
class Check:
    """One rule's outcome: pass or fail, a detail, the file concerned, the offending rows (ids, or "line N") and how
    many rows failed."""

    rule: str
    passed: bool
    detail: str
    file: str | None = None
    rows: list[str] = field(default_factory=list)  # record ids (or "line N" when there is no id)
    unexpected: int = 0


@dataclass
class ValidationResult:
    """Every rule's outcome for one task folder; the task passes only when all of them pass."""

    task: str
    folder: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return f"validation of task '{self.task}' passed: {len(self.checks)} rules"
        lines = [f"validation of task '{self.task}' FAILED ({len(self.failures())} of {len(self.checks)} rules):"]
        for c in self.failures():
            rows = ", ".join(c.rows[:MAX_LISTED]) + (
                f" (+{len(c.rows) - MAX_LISTED} more)" if len(c.rows) > MAX_LISTED else ""
            )
            where = f"{c.file}: " if c.file else ""
            lines.append(f"  [{c.rule}] {where}{c.detail}" + (f"; rows: {rows}" if rows else ""))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "folder": self.folder,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
        }


# --- file level -------------------------------------------------------------------------------------------
def _load_split(folder: Path, split: str, cfg: ValidateConfig, checks: list[Check]) -> list[dict] | None:
    path = folder / f"{split}.jsonl"
    name = str(path)
    if not path.exists():
        checks.append(Check("file_exists", False, f"{split} split file is missing", name))
        return None
    try:
        raw = rec_io.read_json_lines(path)
    except rec_io.RecordError as e:
        checks.append(Check(e.rule, False, e.detail, name, [f"line {e.line}"] if e.line else []))
        return None
    bad = [(r.line, rec_io.schema_problems(r.obj)) for r in raw]
    bad = [(line, p) for line, p in bad if p]
    if bad:
        detail = "; ".join(f"line {line}: {', '.join(p)}" for line, p in bad[:5])
        rows = [_row_name(raw[line_index(raw, line)].obj, line) for line, _ in bad]
        checks.append(Check("schema", False, detail, name, rows, len(bad)))
        return None
    minimum = getattr(cfg.min_rows, split)
    if not raw:
        checks.append(Check("non_empty_split", False, f"the {split} split has no rows", name))
        return None
    checks.append(Check(f"min_rows_{split}", len(raw) >= minimum, f"{len(raw)} rows (minimum {minimum})", name))
    out = []
    for r in raw:
        out.append({**r.obj, "_split": split, "_line": r.line, "_file": name})
    return out


def line_index(raw: list, line: int) -> int:
    """Index in `raw` of the record read from file line `line`."""
    return next(i for i, r in enumerate(raw) if r.line == line)


def _row_name(obj: Any, line: int) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
        return f"{obj['id']} (line {line})"
    return f"line {line}"


# --- computed facts per row -------------------------------------------------------------------------------
def _image_facts(folder: Path, image: str | None, cfg: ValidateConfig, expected_size: int | None) -> dict:
    """Everything GE needs to know about one record's image, as plain values."""
    facts = {
        "path_safe": True,
        "image_exists": True,
        "image_decodes": True,
        "image_mode_ok": True,
        "image_size_ok": True,
        "image_bytes_ok": True,
        "image_sha256": None,
    }
    if image is None:
        return facts
    rel = Path(image)
    root = folder.resolve()
    target = folder / rel
    try:
        inside = not rel.is_absolute() and ".." not in rel.parts and target.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        inside = False
    facts["path_safe"] = inside
    if not inside:
        facts.update(image_exists=False, image_decodes=False, image_mode_ok=False, image_size_ok=False)
        return facts
    if not image_exists(target):  # a loose file, or a member of the folder's images.zip
        facts.update(image_exists=False, image_decodes=False, image_mode_ok=False, image_size_ok=False)
        return facts
    data = read_image_bytes(target)
    facts["image_bytes_ok"] = len(data) <= cfg.max_image_bytes
    facts["image_sha256"] = hashlib.sha256(data).hexdigest()
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode, (w, h) = im.mode, im.size
    except Exception:  # Pillow raises many types for broken files; all mean "does not decode"
        facts.update(image_decodes=False, image_mode_ok=False, image_size_ok=False)
        return facts
    facts["image_mode_ok"] = mode in cfg.image_modes
    if expected_size:
        facts["image_size_ok"] = (w, h) == (expected_size, expected_size)
    else:
        lo, hi = cfg.min_image_side, cfg.max_image_side
        facts["image_size_ok"] = lo <= min(w, h) and max(w, h) <= hi
    return facts


def _frame(rows: list[dict], folder: Path, cfg: ValidateConfig, expected_size: int | None):
    import pandas as pd

    table = []
    for r in rows:
        facts = _image_facts(folder, r.get("image"), cfg, expected_size)
        choices = r.get("choices")
        table.append(
            {
                "row": _row_name(r, r["_line"]),
                "split": r["_split"],
                "file": r["_file"],
                "id": r.get("id"),
                "question": r.get("question"),
                "answer": r.get("answer") if str(r.get("answer") or "").strip() else None,
                "answer_type": r.get("answer_type"),
                "question_type": r.get("question_type"),
                "answer_in_choices": choices is None or r.get("answer") in choices,
                "question_length_ok": len(str(r.get("question") or "")) <= cfg.max_question_chars,
                "question_norm": " ".join(str(r.get("question") or "").lower().split()),
                **facts,
            }
        )
    df = pd.DataFrame(table)
    image_key = df["image_sha256"]
    text_key = df["question_norm"].where(image_key.isna())  # text-only rows leak through their question
    df["no_leakage"] = ~(_in_both_splits(df, image_key) | _in_both_splits(df, text_key))
    return df


def _in_both_splits(df, key):
    train = set(key[(df["split"] == "train") & key.notna()])
    test = set(key[(df["split"] == "test") & key.notna()])
    return key.isin(train & test) & key.notna()


# --- Great Expectations -----------------------------------------------------------------------------------
def _row_expectations(gxe, answer_types) -> list[tuple[str, str, Any]]:
    """(rule name, human detail, expectation) for every row-level rule."""
    boolean = [
        ("answer_in_choices", "answer is outside its closed answer set (choices)"),
        ("question_length_ok", "question is longer than validate.max_question_chars (the base's context is finite)"),
        ("path_safe", "image path is absolute, contains '..' or resolves outside the task folder (symlink)"),
        ("image_exists", "image file does not exist"),
        ("image_decodes", "image does not decode (truncated or not an image)"),
        ("image_mode_ok", "image colour mode is not an allowed one"),
        ("image_size_ok", "image has the wrong size"),
        ("image_bytes_ok", "image file is larger than max_image_bytes"),
        ("no_leakage", "train/test leakage: the same image, image+question, or text-only question is in both splits"),
    ]
    out = [
        ("not_null_id", "id is missing", gxe.ExpectColumnValuesToNotBeNull(column="id")),
        ("not_null_question", "question is missing", gxe.ExpectColumnValuesToNotBeNull(column="question")),
        ("not_null_answer", "answer is missing or empty", gxe.ExpectColumnValuesToNotBeNull(column="answer")),
        (
            "unique_id",
            "id is used more than once (within or across splits)",
            gxe.ExpectColumnValuesToBeUnique(column="id"),
        ),
        (
            "answer_type_allowed",
            f"answer_type is not one of {list(answer_types)}",
            gxe.ExpectColumnValuesToBeInSet(column="answer_type", value_set=list(answer_types)),
        ),
    ]
    out += [(name, detail, gxe.ExpectColumnValuesToBeInSet(column=name, value_set=[True])) for name, detail in boolean]
    return out


_GX = {}


def _gx_batch(df):
    """One ephemeral GE context per process (creating it costs ~1 s); a new batch per frame."""
    import great_expectations as gx

    if "ctx" not in _GX:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        ctx = gx.get_context(mode="ephemeral")
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # older/newer GE: progress bars are cosmetic
            pass
        asset = ctx.data_sources.add_pandas("mllmcl").add_dataframe_asset(name="task_records")
        _GX["ctx"], _GX["batch_def"] = ctx, asset.add_batch_definition_whole_dataframe("all_rows")
    return _GX["batch_def"].get_batch(batch_parameters={"dataframe": df})


def _run_ge(df, checks: list[Check]) -> None:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    batch = _gx_batch(df)  # creates the context a suite needs
    suite = gx.ExpectationSuite(name="mllmcl_task_records")
    named = _row_expectations(gxe, rec_io.ANSWER_TYPES)
    for _, _, exp in named:
        suite.add_expectation(exp)
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    by_config = {id(exp): (name, detail) for name, detail, exp in named}
    for res in result.results:
        name, detail = _match(res, named, by_config)
        idx = res.result.get("unexpected_index_list") or []
        rows = [df.loc[i, "row"] if not isinstance(i, dict) else str(i) for i in idx]
        files = sorted({df.loc[i, "file"] for i in idx if not isinstance(i, dict)})
        checks.append(
            Check(
                name,
                bool(res.success),
                detail if not res.success else "ok",
                ", ".join(files) or None,
                rows,
                int(res.result.get("unexpected_count") or 0),
            )
        )


def _match(res, named, by_config):
    """Map a GE result back to our rule name (GE copies the configs it validates)."""
    cfg = res.expectation_config
    column = cfg.kwargs.get("column")
    for name, detail, exp in named:
        if exp.expectation_type == cfg.type and getattr(exp, "column", None) == column:
            return name, detail
    return cfg.type, cfg.type


# --- question type balance ---------------------------------------------------------------------------------
def _balance(df, cfg: ValidateConfig, checks: list[Check]) -> None:
    tol = cfg.question_type_balance_tolerance
    for split in ("train", "test"):
        part = df[df["split"] == split]
        counts = part["question_type"].value_counts()
        k = len(counts)
        if k <= 1 or part.empty:
            continue
        fair = 1.0 / k
        shares = counts / len(part)
        off = shares[(shares < fair * (1 - tol)) | (shares > fair * (1 + tol))]
        detail = (
            f"question-type shares {', '.join(f'{q}={s:.2f}' for q, s in shares.items())}; each must be within "
            f"{fair * (1 - tol):.2f}..{fair * (1 + tol):.2f}"
        )
        checks.append(
            Check(
                f"question_type_balance_{split}",
                off.empty,
                detail,
                str(part["file"].iloc[0]),
                [f"question_type={q}" for q in off.index],
            )
        )


def validate_task(task_folder: Path, task: str, cfg: ValidateConfig) -> ValidationResult:
    """Run every rule on a task folder: bad data becomes failed checks, never an exception. Row rules run only once both
    split files load."""
    folder = Path(task_folder)
    checks: list[Check] = []
    meta_path = folder / "meta.json"
    expected = None
    if meta_path.exists():
        try:
            expected = json.loads(meta_path.read_text()).get("image_size")
        except json.JSONDecodeError as e:
            checks.append(Check("meta_json", False, f"not valid JSON: {e.msg}", str(meta_path)))
    splits = [_load_split(folder, s, cfg, checks) for s in rec_io.SPLITS]
    if any(s is None for s in splits):
        return ValidationResult(task, str(folder), checks)
    df = _frame(splits[0] + splits[1], folder, cfg, expected)
    _run_ge(df, checks)
    _balance(df, cfg, checks)
    return ValidationResult(task, str(folder), checks)


def write_reports(result: ValidationResult, report_dir: Path) -> tuple[Path, Path]:
    """<task>.json (every offending row) and <task>.md (a table, at most 100 rows per rule) in `report_dir`; returns
    both paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    js = report_dir / f"{result.task}.json"
    md = report_dir / f"{result.task}.md"
    js.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    lines = [
        f"# Validation of `{result.task}`: {'PASSED' if result.passed else 'FAILED'}",
        "",
        f"Folder: `{result.folder}`",
        "",
        "| rule | result | offending rows | detail |",
        "|---|---|---|---|",
    ]
    for c in result.checks:
        lines.append(f"| {c.rule} | {'pass' if c.passed else '**FAIL**'} | {len(c.rows) or ''} | {c.detail} |")
    for c in result.failures():
        if c.rows:
            lines += ["", f"## {c.rule}: offending rows", ""] + [f"- {r}" for r in c.rows[:100]]
            if len(c.rows) > 100:
                lines.append(f"- ... {len(c.rows) - 100} more (see {js.name})")
    md.write_text("\n".join(lines) + "\n")
    return js, md
