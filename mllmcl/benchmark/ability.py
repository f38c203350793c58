"""Ability track (non-IID): the test split is rendered with shifted parameters (other fonts, colours,
sizes, layouts) while questions and answer sets stay the same, as in MLLM-CL where ability test sets
come from other sources than the training data. Only Pillow's built-in fonts are used, so images are
identical on every machine."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import ImageDraw, ImageFont

from mllmcl.benchmark.core import Generator, Item, pick, template
from mllmcl.benchmark.draw import COLOURS, canvas, cell_centre, cells, finish, jitter, shape

WORDS = ["cat", "dog", "sun", "car", "box", "map", "pen", "cup", "hat", "bus"]
DIGITS = [str(i) for i in range(10)]
ACTIONS = {"save": "saves the file", "open": "opens a file", "print": "prints the page", "close": "closes the app"}

# train vs test rendering: what an ability-track model must generalise across
RENDER = {
    "train": {"font": "bitmap", "ink": [(15, 15, 15), (20, 20, 120)], "paper": [(250, 250, 250), (240, 240, 225)],
              "count_shape": "circle", "count_radius": (4.0, 5.0), "gui_layout": "row"},
    "test": {"font": "scalable", "ink": [(150, 20, 20), (10, 90, 30)], "paper": [(225, 235, 250), (250, 235, 210)],
             "count_shape": "square", "count_radius": (3.0, 6.0), "gui_layout": "column"},
}


@lru_cache(maxsize=8)
def _font(kind: str, size: int):
    return ImageFont.load_default_imagefont() if kind == "bitmap" else ImageFont.load_default(size=size)


def _text_image(rng, split: str, text: str, size_px: int):
    r = RENDER[split]
    img = canvas(jitter(rng, pick(rng, r["paper"]), 6))
    d = ImageDraw.Draw(img)
    font = _font(r["font"], size_px)
    box = d.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    x = float(rng.uniform(2, max(3, 62 - w))) - box[0]
    y = float(rng.uniform(2, max(3, 62 - h))) - box[1]
    d.text((x, y), text, fill=pick(rng, r["ink"]), font=font)
    return img, {"font": r["font"], "font_px": size_px}


def ocr_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    if qtype == "word":
        word = pick(rng, WORDS)
        img, render = _text_image(rng, split, word.upper(), int(rng.integers(14, 18)))
        q = template(rng, ["what word is written?", "what does the text say?", "read the word."])
        return Item(finish(img, rng, size, 3), q, word, "word", WORDS, qtype, render)
    digit = pick(rng, DIGITS)
    img, render = _text_image(rng, split, digit, int(rng.integers(18, 24)))
    q = template(rng, ["what number is written?", "which digit is shown?", "read the number."])
    return Item(finish(img, rng, size, 3), q, digit, "number", DIGITS, qtype, render)


def math_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    a, b = int(rng.integers(0, 10)), int(rng.integers(0, 10))
    if qtype == "minus" and a < b:
        a, b = b, a
    op = "+" if qtype == "plus" else "-"
    value = a + b if op == "+" else a - b
    img, render = _text_image(rng, split, f"{a}{op}{b}", int(rng.integers(16, 20)))
    q = template(rng, ["what is the answer?", "solve the sum.", "what does it equal?"])
    return Item(finish(img, rng, size, 3), q, str(value), "number", [str(i) for i in range(19)], qtype, render)


def count_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    r = RENDER[split]
    n = int(rng.integers(1, 7))
    img = canvas(jitter(rng, pick(rng, r["paper"]), 6))
    d = ImageDraw.Draw(img)
    colour = pick(rng, ["red", "blue", "green"] if split == "train" else ["orange", "purple", "black"])
    for col, row in cells(rng, n):
        shape(d, r["count_shape"], *cell_centre(rng, col, row, 6), float(rng.uniform(*r["count_radius"])),
              jitter(rng, COLOURS[colour], 10))
    q = template(rng, ["how many objects are there?", "count the objects.", "how many things can you see?"])
    render = {"shape": r["count_shape"], "colour": colour}
    return Item(finish(img, rng, size, 3), q, str(n), "number", [str(i) for i in range(1, 7)], qtype, render)


def gui_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    r = RENDER[split]
    labels = list(rng.permutation(list(ACTIONS)))[:3]
    action = pick(rng, labels)
    img = canvas(jitter(rng, (235, 235, 240) if split == "train" else (40, 45, 60), 6))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 63, 8], fill=(60, 90, 160) if split == "train" else (200, 120, 40))  # title bar
    font = _font("bitmap", 10)
    for i, (letter, label) in enumerate(zip("ABC", labels)):
        if r["gui_layout"] == "row":
            x0, y0, x1, y1 = 2 + i * 21, 30, 20 + i * 21, 58
        else:
            x0, y0, x1, y1 = 4, 11 + i * 17, 60, 26 + i * 17
        d.rectangle([x0, y0, x1, y1], fill=(200, 205, 215) if split == "train" else (90, 95, 120), outline=(0, 0, 0))
        d.text((x0 + 2, y0 + 1), letter, fill=(0, 0, 0) if split == "train" else (255, 255, 255), font=font)
        d.text((x0 + 2, y0 + 12 if r["gui_layout"] == "row" else y0 + 1) if r["gui_layout"] == "row" else (x0 + 12, y0 + 1),
               str(label), fill=(0, 0, 0) if split == "train" else (255, 255, 255), font=font)
    q = f"which button {ACTIONS[str(action)]}?"
    answer = "ABC"[labels.index(action)].lower()
    return Item(finish(img, rng, size, 3), q, answer, "choice", ["a", "b", "c"], qtype, {"layout": r["gui_layout"]})


GENERATORS = [
    Generator("ocr", "ability", "text in images: words and digits to read", ("word", "digit"), ocr_make),
    Generator("math", "ability", "rendered arithmetic: sums to solve", ("plus", "minus"), math_make),
    Generator("count", "ability", "counting objects in a picture", ("count",), count_make),
    Generator("gui", "ability", "app screens: which button does an action", ("button",), gui_make),
]
