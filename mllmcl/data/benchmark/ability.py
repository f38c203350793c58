"""Ability track (non-IID): the test split is rendered with shifted parameters (other fonts, colours,
sizes, layouts) while questions and answer sets stay the same, as in MLLM-CL where ability test sets
come from other sources than the training data. Only Pillow's built-in fonts are used, so images are
identical on every machine."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import ImageDraw, ImageFont

from mllmcl.data.benchmark.core import Generator, Item, pick, template
from mllmcl.data.benchmark.draw import CANVAS, CELL, COLOURS, canvas, cell_centre, cells, finish, jitter, shape

WORDS = ["cat", "dog", "sun", "car", "box", "map", "pen", "cup", "hat", "bus"]
DIGITS = [str(i) for i in range(10)]
ACTIONS = {"save": "saves the file", "open": "opens a file", "print": "prints the page", "close": "closes the app"}
# each action's icon, as on a real toolbar: a shape in a colour, drawn beside its label
ICONS = {
    "save": ("square", "blue"),
    "open": ("triangle", "yellow"),
    "print": ("square", "black"),
    "close": ("circle", "red"),
}

# train vs test rendering: what an ability-track model must generalise across. Training varies every factor the
# test shifts (several inks, papers, sizes, shapes, colours and app themes), and the test split draws values of
# each factor that training never shows, so the shift is learnable in principle, as with MLLM-CL's ability test sets
# from other sources. Text keeps one (scalable, built-in) typeface so that it stays readable at 64 px. (A first
# version trained in the tiny bitmap font and tested in the scalable one: every expert scored at chance. A second
# trained one ink, one paper and one app theme: nothing taught invariance to them, and a vision probe trained on
# gui read its shifted test at 0.30.)
# App themes (window, title bar, button colours). The buttons sit on the tiny base's 16 px patch rows (A at y 16-31, B
# 32-47, C 48-63) with a large icon in the second patch column: with buttons straddling patch rows, and icons half the
# size, an expert fit only 0.625 of the training themes and read the test theme at chance (0.33); aligned, it reads
# the held-out theme at 0.905. Math's `a+b=` is laid out the same way, one glyph to a patch column (a sum centred as one
# string, glyphs straddling patches, left even the training split unfit: 0.15).
BUTTON_ROWS, BUTTON_HEIGHT = (16, 32, 48), 15
_GUI_THEMES = {
    "grey": {"window": (235, 235, 240), "bar": (60, 90, 160), "button": (200, 205, 215)},
    "mint": {"window": (225, 240, 230), "bar": (40, 130, 90), "button": (190, 215, 200)},
    "rose": {"window": (245, 228, 232), "bar": (150, 50, 80), "button": (225, 200, 205)},
    "slate": {"window": (225, 230, 240), "bar": (50, 60, 80), "button": (205, 210, 225)},
    "lemon": {"window": (248, 246, 220), "bar": (120, 110, 30), "button": (225, 222, 180)},
    "sand": {"window": (245, 238, 220), "bar": (200, 120, 40), "button": (225, 215, 185)},
}
RENDER = {
    "train": {
        "font_px": (19, 20, 21, 23, 24, 26),
        "ink": {
            "black": (15, 15, 15),
            "navy": (20, 20, 120),
            "maroon": (110, 20, 40),
            "plum": (80, 20, 110),
            "teal": (10, 80, 90),
            "brown": (90, 55, 20),
            "slate": (70, 70, 80),
            "olive": (80, 80, 10),
        },
        "paper": {
            "white": (250, 250, 250),
            "cream": (240, 240, 225),
            "grey": (228, 228, 228),
            "pink": (250, 228, 235),
            "mint": (225, 245, 230),
            "lavender": (235, 230, 250),
        },
        "count_shapes": ("circle", "triangle", "diamond"),
        "count_colours": ("red", "blue", "green", "yellow"),
        "count_radius": (3.5, 5.5),
        "gui_themes": ("grey", "mint", "rose", "slate", "lemon"),
    },
    "test": {
        "font_px": (22, 25),
        "ink": {"red": (150, 20, 20), "green": (10, 90, 30)},
        "paper": {"light blue": (225, 235, 250), "peach": (250, 235, 210)},
        "count_shapes": ("square",),
        "count_colours": ("orange", "purple", "black"),
        "count_radius": (3.0, 6.0),
        "gui_themes": ("sand",),
    },
}
# What each task's test split shifts, in words (meta.json and the task's spec say the same).
SHIFT = {
    "ocr": "test ink colours (red, green), paper colours (light blue, peach) and font sizes (22, 25 px) never seen in "
    "training, which varies 8 inks, 6 papers and 6 sizes",
    "math": "the render shift of ocr: test inks, papers and font sizes never seen in training (glyphs one to a patch "
    "column in both splits)",
    "count": "test objects are squares in orange, purple or black on held-out papers; training shows circles, "
    "triangles and diamonds in red, blue, green and yellow",
    "gui": "the test app theme (sand: window, title bar and button colours) is not one of the 5 training themes",
}


@lru_cache(maxsize=32)
def _font(kind: str, size: int):
    return ImageFont.load_default_imagefont() if kind == "bitmap" else ImageFont.load_default(size=size)


def _page(rng, split: str, scale: float = 1.0):
    """What every rendered text draws from `rng`, in one order: a size (times `scale`), ink and paper of the split, the
    paper's jitter, a random (dx, dy) in [-3, 3] px and the ink's jitter. Returns (canvas, font, ink colour, (dx, dy),
    render)."""
    r = RENDER[split]
    size_px = int(round(pick(rng, r["font_px"]) * scale))
    ink = pick(rng, sorted(r["ink"]))
    paper = pick(rng, sorted(r["paper"]))
    img = canvas(jitter(rng, r["paper"][paper], 6))
    offset = (float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3)))
    colour = jitter(rng, r["ink"][ink], 8)
    return img, _font("scalable", size_px), colour, offset, {"font_px": size_px, "ink": ink, "paper": paper}


def _draw_text(img, font, colour, text: str, centre: tuple[float, float]) -> None:
    d = ImageDraw.Draw(img)
    box = d.textbbox((0, 0), text, font=font, stroke_width=1)
    x = centre[0] - (box[2] - box[0]) / 2 - box[0]
    y = centre[1] - (box[3] - box[1]) / 2 - box[1]
    d.text((x, y), text, fill=colour, font=font, stroke_width=1, stroke_fill=colour)


def _text_image(rng, split: str, text: str, scale: float = 1.0):
    """`text` near the centre (glyph strokes are the signal, and a tiny vision tower sees 16 px patches), in one of the
    split's sizes (times `scale`), inks and papers."""
    img, font, colour, (dx, dy), render = _page(rng, split, scale)
    _draw_text(img, font, colour, text, (CANVAS / 2 + dx, CANVAS / 2 + dy))
    return img, render


def _sum_image(rng, split: str, glyphs: str):
    """`glyphs` one to a patch column (centres x 8, 24, 40, 56), across patch rows 1-2, drawn from `rng` as
    `_text_image` draws, so a layout change alone changes no question that follows in the stream (nor the tiny base's
    tokenizer corpus)."""
    img, font, colour, (dx, dy), render = _page(rng, split)
    for col, glyph in enumerate(glyphs):
        _draw_text(img, font, colour, glyph, ((col + 0.5) * CELL + dx / 2, 2 * CELL + dy))
    return img, render


def ocr_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Read a rendered word or digit; font size, ink and paper vary, and the test split uses values never seen in
    training."""
    if qtype == "word":
        word = pick(rng, WORDS)
        img, render = _text_image(rng, split, word.upper())
        q = template(rng, ["what word is written?", "what does the text say?", "read the word."])
        return Item(finish(img, rng, size, 3), q, word, "word", WORDS, qtype, render)
    digit = pick(rng, DIGITS)
    img, render = _text_image(rng, split, digit, scale=1.5)
    q = template(rng, ["what number is written?", "which digit is shown?", "read the number."])
    return Item(finish(img, rng, size, 3), q, digit, "number", DIGITS, qtype, render)


# Math operands: 0-4 (25 sums, 15 differences), and the answer is worked: the sum as read, then its result ("3+4=7"),
# as a model shows its work. Measured on the tiny base with the result alone as the answer: operands 0-9 (200 problems)
# reached 0.20 on the shifted test after 4000 steps; 0-4 reached 0.835 on one base and 0.24-0.355 on another (its
# validation curve flat at 0.2-0.3 for 3000+ steps): learning to read two digits from a supervision that names neither
# was too slow and too fragile. Written out, each glyph is read with its own target (as OCR reads) and the result follows
# from text tokens.
MATH_OPERANDS = 5


def math_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Solve a rendered sum or difference of two small numbers (never negative), written `a+b=` one glyph to a patch
    column; the answer is the worked sum (`a+b=c`). The same train/test render shift as OCR."""
    a, b = int(rng.integers(0, MATH_OPERANDS)), int(rng.integers(0, MATH_OPERANDS))
    if qtype == "minus" and a < b:
        a, b = b, a
    op = "+" if qtype == "plus" else "-"
    value = a + b if op == "+" else a - b
    img, render = _sum_image(rng, split, f"{a}{op}{b}=")
    q = template(rng, ["what is the answer?", "solve the sum.", "what does it equal?"])
    return Item(finish(img, rng, size, 3), q, f"{a}{op}{b}={value}", "number", None, qtype, render)


def count_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Count 1-6 objects on a grid; the test split draws other shapes, sizes and colours than training."""
    r = RENDER[split]
    n = int(rng.integers(1, 7))
    paper = pick(rng, sorted(r["paper"]))
    img = canvas(jitter(rng, r["paper"][paper], 6))
    d = ImageDraw.Draw(img)
    colour = pick(rng, r["count_colours"])
    kind = pick(rng, r["count_shapes"])
    for col, row in cells(rng, n):
        shape(
            d,
            kind,
            *cell_centre(rng, col, row, 6),
            float(rng.uniform(*r["count_radius"])),
            jitter(rng, COLOURS[colour], 10),
        )
    q = template(rng, ["how many objects are there?", "count the objects.", "how many things can you see?"])
    render = {"shape": kind, "colour": colour, "paper": paper}
    return Item(finish(img, rng, size, 3), q, str(n), "number", [str(i) for i in range(1, 7)], qtype, render)


# GUI's answer is worked too: the icon to look for, then its button's letter ("blue square: b"). With the letter alone
# the expert's validation sat at 0.62 and its shifted test at 0.57 on the tiny base (0.905 on an earlier one): the
# action had to be tied to a row with nothing in between. Naming the icon first asks the expert for the words the base
# already grounds in images (its `general` suite asks for colours and shapes), and the letter then follows the
# icon: 0.995 on the held-out theme, the same base and budget.
def gui_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """A window with three stacked buttons, each a letter, an icon and an action; the answer names the action's icon
    and then the button's letter."""
    theme = pick(rng, RENDER[split]["gui_themes"])
    g = _GUI_THEMES[theme]
    labels = list(rng.permutation(list(ACTIONS)))[:3]
    action = pick(rng, labels)
    img = canvas(jitter(rng, g["window"], 6))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 63, 8], fill=g["bar"])  # title bar
    font = _font("bitmap", 10)
    for y0, letter, label in zip(BUTTON_ROWS, "ABC", labels):
        d.rectangle([3, y0, 60, y0 + BUTTON_HEIGHT], fill=jitter(rng, g["button"], 6), outline=(0, 0, 0))
        d.text((6, y0 + 2), letter, fill=(0, 0, 0), font=font)
        kind, colour = ICONS[str(label)]
        shape(d, kind, 24, y0 + BUTTON_HEIGHT / 2, BUTTON_HEIGHT / 2 - 1, COLOURS[colour])
        d.text((34, y0 + 2), str(label), fill=(0, 0, 0), font=font)
    q = f"which button {ACTIONS[str(action)]}?"
    kind, colour = ICONS[str(action)]
    answer = f"{colour} {kind}: {'abc'[labels.index(action)]}"  # worked: the icon to look for, then its button
    return Item(finish(img, rng, size, 3), q, answer, "choice", None, qtype, {"theme": theme})


GENERATORS = [
    Generator("ocr", "ability", "text in images: words and digits to read", ("word", "digit"), ocr_make, SHIFT["ocr"]),
    Generator("math", "ability", "rendered arithmetic: sums to solve", ("plus", "minus"), math_make, SHIFT["math"]),
    Generator("count", "ability", "counting objects in a picture", ("count",), count_make, SHIFT["count"]),
    Generator("gui", "ability", "app screens: which button does an action", ("button",), gui_make, SHIFT["gui"]),
]
