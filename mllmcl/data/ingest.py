"""Raw task input -> normalised task folder (data/tasks/<task>/: train.jsonl, test.jsonl, images.zip, meta.json).

`data/raw/<task>/spec.yaml` says what the raw folder holds:
  generator: <name>                 a task of the embedded MLLM-CL-mini benchmark (sizes from params `data:`)
  format: llava                     MLLM-CL / LLaVA files: train.json ({id, image, conversations}),
                                    test.json ({question_id, image, text, answer}) and images/
  description: <one line>           what the router's pool says about this task's expert
Ingest never judges the data (validation does, naming rows); it only refuses to copy a file from outside
the raw folder, keeping such a path verbatim so that validation reports the offending row."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from mllmcl.config import DataConfig
from mllmcl.data import records as rec_io
from mllmcl.data.images import pack_images
from mllmcl.errors import DataError

SPEC_FILE = "spec.yaml"
_IMAGE_TAG = re.compile(r"<image>\s*")


def read_spec(raw_dir: Path) -> dict:
    """data/raw/<task>/spec.yaml, which must name a generator or `format: llava`; anything else is a DataError."""
    path = Path(raw_dir) / SPEC_FILE
    if not path.exists():
        raise DataError(f"{path}: missing (every data/raw/<task>/ needs a spec.yaml: 'generator:' or 'format: llava')")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(spec, dict) or not ("generator" in spec or spec.get("format") == "llava"):
        raise DataError(f"{path}: needs 'generator: <name>' or 'format: llava'")
    return spec


def expert_overrides(overrides, path: Path) -> dict:
    """A spec's `expert:` mapping, checked against the expert settings' own rules; the first bad key is a DataError
    that names the file and the key."""
    from pydantic import ValidationError

    from mllmcl.config.schema import ExpertConfig

    if not isinstance(overrides, dict):
        raise DataError(f"{path}: expert: must be a mapping of expert settings (e.g. {{steps: 1500}})")
    unknown = sorted(set(overrides) - set(ExpertConfig.model_fields))
    if unknown:
        raise DataError(
            f"{path}: expert.{unknown[0]}: not an expert setting (have: {', '.join(ExpertConfig.model_fields)})"
        )
    try:
        ExpertConfig.model_validate({**ExpertConfig().model_dump(), **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise DataError(f"{path}: expert.{where}: {err['msg']} (got {err.get('input')!r})") from None
    return dict(overrides)


def ingest_task(task: str, data_cfg: DataConfig, *, raw_dir: Path, out_dir: Path, progress: bool = False) -> dict:
    """Normalise `raw_dir` (a generator spec or LLaVA files) into `out_dir`, atomically; returns meta.json."""
    raw_dir, out = Path(raw_dir), Path(out_dir)
    spec = read_spec(raw_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{task}-", dir=out.parent))
    try:
        if "generator" in spec:
            meta = _generate(task, spec, data_cfg, raw_dir, tmp, progress)
        else:
            meta = _import_llava(task, spec, raw_dir, tmp)
        if spec.get("expert") is not None:  # the task's own expert budget, checked now rather than at training
            meta["expert"] = expert_overrides(spec["expert"], raw_dir / SPEC_FILE)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        pack_images(tmp)  # one file for DVC to hash and move instead of one per image (mllmcl/data/images.py)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _generate(task: str, spec: dict, data_cfg: DataConfig, raw_dir: Path, out: Path, progress: bool) -> dict:
    from mllmcl.data.benchmark import GENERATORS, generate_task

    name = spec["generator"]
    if name not in GENERATORS:
        raise DataError(f"{raw_dir / SPEC_FILE}: unknown generator '{name}' (have: {', '.join(GENERATORS)})")
    overrides = {k: v for k, v in spec.items() if k in DataConfig.model_fields}
    try:  # a spec may pin its own sizes; they obey the same rules as params.yaml `data:`
        sizes = DataConfig.model_validate({**data_cfg.model_dump(), **overrides})
    except ValueError as e:
        raise DataError(f"{raw_dir / SPEC_FILE}: {' '.join(str(e).split())}") from None
    summary = generate_task(
        name,
        out,
        train_size=sizes.train_size,
        test_size=sizes.test_size,
        seed=sizes.seed,
        image_size=sizes.image_size,
        progress=progress,
    )
    return {
        "task": task,
        "source": "synthetic",
        "generator": name,
        "track": GENERATORS[name].track,
        "description": spec.get("description") or GENERATORS[name].description,
        **({"shift": GENERATORS[name].shift} if GENERATORS[name].shift else {}),
        "image_size": sizes.image_size,
        "counts": {k: v for k, v in summary.items() if k != "seconds"},
    }


def _import_llava(task: str, spec: dict, raw_dir: Path, out: Path) -> dict:
    train = [
        _train_record(obj, raw_dir / "train.json", i) for i, obj in enumerate(_load_json_list(raw_dir / "train.json"))
    ]
    test = [_test_record(obj, raw_dir / "test.json", i) for i, obj in enumerate(_load_json_list(raw_dir / "test.json"))]
    for split_records in (train, test):
        for r in split_records:
            r["image"] = _copy_image(r["image"], raw_dir, out)
    _fill_choices(train + test, spec)
    rec_io.write_records(out / "train.jsonl", train)
    rec_io.write_records(out / "test.jsonl", test)
    return {
        "task": task,
        "source": "llava",
        "description": spec.get("description") or task,
        "image_size": spec.get("image_size"),
        "counts": {"train": len(train), "test": len(test)},
    }


def _load_json_list(path: Path) -> list:
    if not path.exists():
        raise DataError(f"{path}: missing")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        raise DataError(f"{path}: starts with a UTF-8 byte-order mark; save it as plain UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: byte {e.start} is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        try:  # JSON Lines is accepted too
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list of items")
    return obj


def _clean_question(text: str) -> str:
    return _IMAGE_TAG.sub("", str(text)).strip()


def _train_record(obj, path: Path, index: int) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: item {index} is not an object")
    turns = obj.get("conversations") or []
    human = next((t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
    gpt = next((t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
    return _record(obj.get("id", f"train-{index}"), obj.get("image"), human, gpt, obj)


def _test_record(obj, path: Path, index: int) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: item {index} is not an object")
    return _record(obj.get("question_id", f"test-{index}"), obj.get("image"), obj.get("text"), obj.get("answer"), obj)


def _record(rid, image, question, answer, obj: dict) -> dict:
    """Missing fields stay empty so validation names the row rather than ingest guessing."""
    answer = "" if answer is None else str(answer).strip()
    return {
        "id": str(rid),
        "image": image if image else None,
        "question": _clean_question(question or ""),
        "answer": answer,
        "answer_type": obj.get("answer_type") or _answer_type(answer),
        "choices": obj.get("choices"),
        "question_type": str(obj.get("question_type") or obj.get("category") or "vqa"),
    }


def _answer_type(answer: str) -> str:
    a = answer.lower()
    if a in ("yes", "no"):
        return "yesno"
    if re.fullmatch(r"-?\d+(\.\d+)?", a):
        return "number"
    return "word"


def _fill_choices(records: list[dict], spec: dict) -> None:
    """A spec may give each question type's closed answer set (`answer_sets: {qtype: [..]}`)."""
    sets = spec.get("answer_sets") or {}
    for r in records:
        if r["choices"] is None and r["question_type"] in sets:
            r["choices"] = [str(c) for c in sets[r["question_type"]]]


def _copy_image(image: str | None, raw_dir: Path, out: Path) -> str | None:
    """Copy an image that lies inside the raw folder; keep any other path verbatim for validation to reject."""
    if not image:
        return None
    rel = Path(image)
    if rel.is_absolute() or ".." in rel.parts:
        return image
    src = raw_dir / "images" / rel  # paths are relative to the --images folder, copied to raw/images/
    if rel.parts and rel.parts[0] == "images" and not src.exists():
        rel = Path(*rel.parts[1:])
        src = raw_dir / "images" / rel
    rel = Path("images") / rel
    dst = out / rel
    try:
        resolved = src.resolve(strict=True)
    except (FileNotFoundError, OSError):
        return rel.as_posix()  # missing: validation names the row
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        resolved.relative_to(raw_dir.resolve())
    except ValueError:  # a link out of the raw folder: keep it a link, never copy what it points at
        os.symlink(os.readlink(src) if src.is_symlink() else resolved, dst)
        return rel.as_posix()
    shutil.copyfile(resolved, dst)
    return rel.as_posix()
