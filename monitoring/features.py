"""What the model sees of a request, as one row of a table: the image's simple statistics, the question's length and
text, the base model's own compact image and question embeddings, and the router's verdict (confidence, known, sent
to the base). The same row comes from two places, so that traffic and reference compare like with like: a line of
the serving endpoint's traffic log, or a request passed through the production model here (`model_view`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mllmcl.data.image_stats import IMAGE_STATS, image_stats
from mllmcl.errors import DataError

BASE = "base"  # the router's name for "no expert" (mllmcl.continual.router.BASE, without importing torch here)
STATS = [*IMAGE_STATS, "question_words"]  # numeric statistics compared column by column
SIGNALS = ["confidence"]  # the router's numbers, compared like the statistics
CATEGORICAL = ["has_image", "known", "to_base"]
TEXT = "question"
EMBEDDINGS = {"image": "img_", "question": "q_"}  # embedding name -> column prefix
META = ["id", "expert", "novelty"]


def embedding_columns(frame, name: str) -> list[str]:
    """The columns holding embedding `name` in a feature frame, in order."""
    prefix = EMBEDDINGS[name]
    return [c for c in frame.columns if c.startswith(prefix) and c[len(prefix) :].isdigit()]


def feature_row(
    *,
    question: str,
    stats: dict | None,
    expert: str,
    confidence: float,
    known: bool,
    novelty: float | None,
    image_embedding: Sequence[float] | None,
    question_embedding: Sequence[float] | None,
    rid: str | None = None,
) -> dict:
    """One request's features as a flat dict (embeddings spread over img_00.., q_00.. columns)."""
    row = {"id": rid, "expert": expert, "novelty": None if novelty is None else float(novelty)}
    row.update({k: (float(stats[k]) if stats and stats.get(k) is not None else None) for k in IMAGE_STATS})
    row.update(
        question=question,
        question_words=float(len(question.split())),
        confidence=float(confidence),
        has_image="yes" if stats else "no",
        known="yes" if known else "no",
        to_base="yes" if expert == BASE else "no",
    )
    for name, vector in (("image", image_embedding), ("question", question_embedding)):
        for i, v in enumerate(vector or ()):
            row[f"{EMBEDDINGS[name]}{i:02d}"] = float(v)
    return row


def to_frame(rows: list[dict]):
    """A feature table with typed columns; embedding columns of text-only rows are filled with 0 (the image
    embedding's absence is then visible to the embedding drift classifier as such)."""
    import pandas as pd

    if not rows:
        raise DataError("no requests to describe")
    frame = pd.DataFrame(rows)
    for c in [*STATS, *SIGNALS, "novelty"]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce") if c in frame else float("nan")
    for name in EMBEDDINGS:
        cols = embedding_columns(frame, name)
        frame[cols] = frame[cols].astype(float).fillna(0.0)
    return frame


def traffic_row(line: dict, where: str = "traffic") -> dict:
    """Features of one traffic-log line (mllmcl/serving/traffic.py); a line without the fields is a DataError."""
    missing = [k for k in ("question", "expert", "confidence") if k not in line]
    if missing or not isinstance(line.get("question"), str):
        raise DataError(f"{where}: traffic line lacks {', '.join(missing) or 'a string question'}")
    return feature_row(
        rid=line.get("id") or line.get("request_id"),
        question=line["question"],
        stats=line.get("image_stats"),
        expert=str(line["expert"]),
        confidence=float(line["confidence"]),
        known=bool(line.get("known", line["expert"] != BASE)),
        novelty=line.get("novelty"),
        image_embedding=line.get("image_embedding"),
        question_embedding=line.get("question_embedding"),
    )


def model_view(model, requests: Sequence, *, batch_size: int = 64) -> list[dict]:
    """Features of requests (mllmcl.continual.inference.Request) as the production model sees them: the router's
    route, open-set verdict and image embedding, and the base's question embedding, without generating answers (the
    same numbers `RoutedModel.predict` puts in a Prediction and the server writes to its traffic log)."""
    from mllmcl.continual.open_set import compact
    from mllmcl.model.embeddings import question_embeddings

    rows = []
    for start in range(0, len(requests), batch_size):
        chunk = list(requests[start : start + batch_size])
        routes = model.router.route([(r.image, r.question) for r in chunk], batch_size=batch_size)
        questions = compact(question_embeddings(model.model, model.prompting.tokenizer, [r.question for r in chunk]))
        for r, route, q in zip(chunk, routes, questions):
            rows.append(
                feature_row(
                    rid=r.id,
                    question=r.question,
                    stats=image_stats(r.image) if r.image is not None else None,
                    expert=route.task,
                    confidence=route.confidence,
                    known=route.known,
                    novelty=route.novelty,
                    image_embedding=None if route.image_embedding is None else list(route.image_embedding),
                    question_embedding=list(q),
                )
            )
    return rows


def read_batch(path: Path) -> tuple[list[dict], list]:
    """A JSONL batch of requests ({id?, image?, question, answer?}, images relative to the file) as (raw lines,
    Requests with their images opened). Any bad line (not JSON, no question, unreadable or escaping image) is one
    DataError naming the file and the line."""
    from mllmcl.continual.inference import load_request
    from mllmcl.data.records import read_json_lines

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lines = read_json_lines(path)
    if not lines:
        raise DataError(f"{path}: no requests")
    objs, requests = [], []
    for raw in lines:
        try:
            requests.append(load_request(raw.obj, path.parent, line=None))
        except DataError as e:
            raise DataError(f"{path}, line {raw.line}: {e}") from None
        objs.append(raw.obj)
    return objs, requests


def is_labelled(objs: list[dict]) -> bool:
    """A batch whose every line carries an answer is labelled (it can train a task)."""
    return bool(objs) and all(isinstance(o.get("answer"), str) and o["answer"].strip() for o in objs)
