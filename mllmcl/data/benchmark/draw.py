"""Drawing helpers shared by the generators: everything is drawn at 64 px on a 4x4 grid of 16-px cells (the
tiny base's patch grid) and resized when another image size is asked for."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 64
CELL = 16

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 75, 215),
    "yellow": (235, 210, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "orange": (240, 140, 30),
    "purple": (140, 60, 180),
}


def canvas(colour) -> Image.Image:
    """A blank 64x64 RGB image: everything is drawn at 64 px and `finish` resizes."""
    return Image.new("RGB", (CANVAS, CANVAS), tuple(int(c) for c in colour))


def jitter(rng: np.random.Generator, colour, amount: int = 12) -> tuple[int, int, int]:
    """`colour` with each channel moved by up to +-amount, clipped to 0..255."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def noise(img: Image.Image, rng: np.random.Generator, sigma: float = 6.0) -> Image.Image:
    """Gaussian pixel noise of standard deviation `sigma`, clipped to 0..255."""
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, sigma, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill, outline=None, width: int = 1):
    """Draw a circle, square, triangle or diamond of radius `r` centred on (cx, cy); any other kind is a ValueError."""
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif kind == "square":
        draw.rectangle(box, fill=fill, outline=outline, width=width)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill, outline=outline)
    elif kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill, outline=outline)
    else:
        raise ValueError(kind)


def cells(rng: np.random.Generator, n: int, grid: int = 4) -> list[tuple[int, int]]:
    """n distinct grid cells (col, row), so objects never overlap."""
    idx = rng.choice(grid * grid, size=n, replace=False)
    return [(int(i) % grid, int(i) // grid) for i in idx]


def cell_centre(rng: np.random.Generator, col: int, row: int, margin: int) -> tuple[float, float]:
    """A random point in grid cell (col, row), at least `margin` px inside the cell's edges."""
    lo, hi = margin, CELL - margin
    return (col * CELL + rng.uniform(lo, hi), row * CELL + rng.uniform(lo, hi))


def finish(img: Image.Image, rng: np.random.Generator, image_size: int, sigma: float = 5.0) -> Image.Image:
    """The last step of every image: noise, then a bilinear resize when `image_size` is not the 64-px canvas."""
    img = noise(img, rng, sigma)
    if image_size != CANVAS:
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return img
