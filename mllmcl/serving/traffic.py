"""The traffic log: every answered request as one JSON line in `<traffic_dir>/<UTC date>.jsonl`, what the drift
monitor reads to decide whether production data moved away from what the experts learned. Appended under a lock
and flushed once per batch. It holds the request's content and the model's decision only: no headers, no client
address, no credentials; the raw image only when `serve.keep_images` is on (then under images/<date>/)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from mllmcl.serving.batcher import Answer

MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"RIFF", "webp"))


def _ext(data: bytes) -> str:
    return next((ext for magic, ext in MAGIC if data.startswith(magic)), "img")


def _vector(values) -> list[float] | None:
    if values is None:
        return None
    return [round(float(v), 5) for v in values]


class TrafficLog:
    """Appends answered requests to the day's JSONL file (UTC); safe to call from several threads."""

    def __init__(self, folder: Path, *, keep_images: bool = False):
        self.folder = Path(folder)
        self.keep_images = keep_images
        self._lock = threading.Lock()

    def path_for(self, day: str) -> Path:
        """The log file of one UTC day (YYYY-MM-DD)."""
        return self.folder / f"{day}.jsonl"

    def record(self, answer: Answer, day: str) -> dict:
        """One log line for an answered request (saving its image first when images are kept)."""
        item, p = answer.item, answer.prediction
        image_path = None
        if self.keep_images and item.image_bytes is not None:
            rel = Path("images") / day / f"{item.request_id}.{_ext(item.image_bytes)}"
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / rel).write_bytes(item.image_bytes)
            image_path = rel.as_posix()
        return {
            "time": item.received_at,
            **answer.response(),  # what the client was sent: ids, answer, route, verdict, latency, version
            "question": item.request.question,
            "has_image": item.request.image is not None,
            "image": image_path,
            "image_stats": item.stats,
            "image_embedding": _vector(getattr(p, "image_embedding", None)),
            "question_embedding": _vector(getattr(p, "question_embedding", None)),
            "batch_size": answer.batch_size,
        }

    def write(self, answers: list[Answer]) -> Path | None:
        """Append one batch's lines and flush; returns the file written."""
        if not answers:
            return None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps(self.record(a, day), ensure_ascii=False) + "\n" for a in answers)
            path = self.path_for(day)
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
        return path
