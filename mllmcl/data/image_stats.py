"""Simple statistics of an image (brightness, colour, contrast, edges, size): what the drift monitor compares
between training data and traffic, and what the serving endpoint writes to its traffic log. In the library (not in
monitoring/) so that both can use one definition."""

from __future__ import annotations

from pathlib import Path

from mllmcl.errors import DataError

IMAGE_STATS = ("brightness", "red", "green", "blue", "contrast", "edges", "width", "height")


def image_stats(image, *, max_side: int | None = None) -> dict:
    """Brightness, mean red/green/blue, contrast and edge strength (0..1) and the size in pixels of a PIL image.
    `max_side`: measure a larger image on a copy shrunk to that side (bounded memory and time for uploads; the size
    reported stays the original one)."""
    import numpy as np

    width, height = image.size
    if max_side and max(width, height) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    gray = rgb.mean(axis=2)
    diffs = [np.abs(np.diff(gray, axis=axis)) for axis in (0, 1)]
    diffs = [d.mean() for d in diffs if d.size]  # a one-pixel-wide image has edges one way only
    edges = sum(diffs) / len(diffs) if diffs else 0.0
    return {
        "brightness": float(gray.mean()),
        "red": float(rgb[..., 0].mean()),
        "green": float(rgb[..., 1].mean()),
        "blue": float(rgb[..., 2].mean()),
        "contrast": float(gray.std()),
        "edges": float(edges),
        "width": float(width),
        "height": float(height),
    }


def image_features(path: Path) -> dict:
    """`image_stats` of an image file; an unreadable file is a DataError naming it."""
    import io

    from PIL import Image, UnidentifiedImageError

    from mllmcl.data.images import read_image_bytes

    try:
        with Image.open(io.BytesIO(read_image_bytes(path))) as im:
            im.load()
            return image_stats(im)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
