"""Suites that are not learned tasks: `language` (text-only questions measuring linguistic retention) and
`general` (captions/attributes of simple shapes, the base's pretraining on colours, shapes, counts, sizes
and positions: the skills the tasks reuse)."""

from __future__ import annotations

import zlib

import numpy as np
from PIL import ImageDraw

from mllmcl.data.benchmark.core import Generator, Item, pick, template
from mllmcl.data.benchmark.draw import COLOURS, canvas, cell_centre, cells, finish, jitter, shape

# --- language: facts x templates; each fact's held-out template is the test split ----------------------
OPPOSITES = [
    ("hot", "cold"),
    ("up", "down"),
    ("big", "small"),
    ("left", "right"),
    ("yes", "no"),
    ("day", "night"),
    ("fast", "slow"),
    ("open", "close"),
    ("old", "new"),
    ("wet", "dry"),
    ("high", "low"),
    ("black", "white"),
    ("in", "out"),
    ("full", "empty"),
    ("light", "dark"),
    ("early", "late"),
]
COLOUR_FACTS = [
    ("grass", "green"),
    ("the sky", "blue"),
    ("snow", "white"),
    ("a banana", "yellow"),
    ("blood", "red"),
    ("coal", "black"),
    ("a lemon", "yellow"),
    ("the sea", "blue"),
    ("milk", "white"),
    ("a leaf", "green"),
    ("a tomato", "red"),
    ("an orange", "orange"),
]
OPP_T = ["what is the opposite of {a}?", "the opposite of {a} is what?", "what word means the opposite of {a}?"]
COL_T = ["what colour is {a}?", "{a} is usually what colour?", "which colour is {a}?"]
NEXT_T = ["what number comes after {a}?", "what is one more than {a}?", "which number follows {a}?"]
SEQ_T = ["what comes next: {a}?", "continue the sequence: {a}?", "next number in {a}?"]


def _facts():
    facts = []
    for a, b in OPPOSITES:
        facts += [("opposite", OPP_T, a, b), ("opposite", OPP_T, b, a)]
    facts += [("colour_fact", COL_T, a, b) for a, b in COLOUR_FACTS]
    facts += [("next_number", NEXT_T, str(n), str(n + 1)) for n in range(9)]
    for start in range(0, 4):
        for step in (1, 2):
            seq = [start + k * step for k in range(3)]
            if seq[-1] + step <= 9:
                facts.append(("sequence", SEQ_T, " ".join(map(str, seq)), str(seq[-1] + step)))
    return facts


FACTS = _facts()
LANGUAGE_TYPES = ("opposite", "colour_fact", "next_number", "sequence")


def _held_out(fact_index: int, n_templates: int) -> int:
    return zlib.crc32(str(fact_index).encode()) % n_templates


def language_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Train asks each fact with all but one template; test asks it with the held-out one (never seen)."""
    pool = [(i, f) for i, f in enumerate(FACTS) if f[0] == qtype]
    i, (_, templates, a, b) = pick(rng, pool)
    held = _held_out(i, len(templates))
    k = held if split == "test" else pick(rng, [j for j in range(len(templates)) if j != held])
    answer_type = "number" if qtype in ("next_number", "sequence") else "word"
    return Item(None, templates[k].format(a=a), b, answer_type, None, qtype)


# --- general: simple shapes on plain backgrounds ---------------------------------------------------------
G_COLOURS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
G_SHAPES = ["circle", "square", "triangle"]
QUADRANTS = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1), "bottom right": (1, 1)}


def _bg(rng):
    return jitter(rng, pick(rng, [(128, 128, 128), (200, 200, 190), (70, 80, 90), (180, 160, 140)]), 12)


def general_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Pretraining questions on simple shapes: colour, kind, count, left or right, which is bigger, which corner, is a
    colour there; no train/test shift."""
    img = canvas(_bg(rng))
    d = ImageDraw.Draw(img)
    if qtype in ("colour", "shape"):
        colour, kind = pick(rng, G_COLOURS), pick(rng, G_SHAPES)
        col, row = cells(rng, 1, grid=2)[0]
        shape(
            d,
            kind,
            col * 32 + rng.uniform(12, 20),
            row * 32 + rng.uniform(12, 20),
            float(rng.uniform(7, 11)),
            jitter(rng, COLOURS[colour], 10),
        )
        if qtype == "colour":
            q = template(rng, ["what colour is the shape?", "which colour is the shape?", "what colour is it?"])
            return Item(finish(img, rng, size, 3), q, colour, "word", G_COLOURS, qtype)
        q = template(rng, ["what shape is it?", "which shape is shown?", "what shape do you see?"])
        return Item(finish(img, rng, size, 3), q, kind, "word", G_SHAPES, qtype)
    if qtype == "count":
        n = int(rng.integers(1, 7))
        colour = pick(rng, G_COLOURS)
        for col, row in cells(rng, n):
            shape(
                d,
                pick(rng, G_SHAPES),
                *cell_centre(rng, col, row, 6),
                float(rng.uniform(4, 5.5)),
                jitter(rng, COLOURS[colour], 10),
            )
        q = template(rng, ["how many shapes are there?", "how many shapes can you see?", "count the shapes."])
        return Item(finish(img, rng, size, 3), q, str(n), "number", [str(i) for i in range(1, 7)], qtype)
    c1, c2 = [str(c) for c in rng.permutation(G_COLOURS)[:2]]
    if qtype == "position":
        left_first = bool(rng.random() < 0.5)
        xs = (rng.uniform(8, 24), rng.uniform(40, 56))
        y1, y2 = rng.uniform(10, 54, 2)
        shape(d, pick(rng, G_SHAPES), xs[0] if left_first else xs[1], y1, 6, jitter(rng, COLOURS[c1], 10))
        shape(d, pick(rng, G_SHAPES), xs[1] if left_first else xs[0], y2, 6, jitter(rng, COLOURS[c2], 10))
        q = template(
            rng,
            ["is the {a} shape left or right of the {b} one?", "is the {a} shape on the left or right?"],
            a=c1,
            b=c2,
        )
        return Item(finish(img, rng, size, 3), q, "left" if left_first else "right", "word", ["left", "right"], qtype)
    if qtype == "bigger":
        (col1, row1), (col2, row2) = cells(rng, 2, grid=2)
        big_first = bool(rng.random() < 0.5)
        r_big, r_small = float(rng.uniform(10, 13)), float(rng.uniform(4, 6))
        shape(
            d,
            pick(rng, G_SHAPES),
            col1 * 32 + 16,
            row1 * 32 + 16,
            r_big if big_first else r_small,
            jitter(rng, COLOURS[c1]),
        )
        shape(
            d,
            pick(rng, G_SHAPES),
            col2 * 32 + 16,
            row2 * 32 + 16,
            r_small if big_first else r_big,
            jitter(rng, COLOURS[c2]),
        )
        q = template(
            rng, ["which is bigger, the {a} or the {b} shape?", "which shape is bigger, {a} or {b}?"], a=c1, b=c2
        )
        return Item(finish(img, rng, size, 3), q, c1 if big_first else c2, "word", G_COLOURS, qtype)
    if qtype == "where":
        quadrant = pick(rng, QUADRANTS)
        col, row = QUADRANTS[quadrant]
        shape(
            d,
            pick(rng, G_SHAPES),
            col * 32 + rng.uniform(10, 22),
            row * 32 + rng.uniform(10, 22),
            7,
            jitter(rng, COLOURS[c1], 10),
        )
        q = template(rng, ["where is the {a} shape?", "in which corner is the {a} shape?"], a=c1)
        return Item(finish(img, rng, size, 3), q, quadrant, "word", list(QUADRANTS), qtype)
    has = bool(rng.random() < 0.5)
    present = [c1] if has else []
    present += [str(c) for c in rng.permutation([c for c in G_COLOURS if c != c1])[: int(rng.integers(1, 3))]]
    for (col, row), c in zip(cells(rng, len(present)), present):
        shape(d, pick(rng, G_SHAPES), *cell_centre(rng, col, row, 6), 5.5, jitter(rng, COLOURS[c], 10))
    q = template(rng, ["is there a {a} shape?", "can you see a {a} shape?"], a=c1)
    return Item(finish(img, rng, size, 3), q, "yes" if has else "no", "yesno", ["yes", "no"], qtype)


GENERATORS = [
    Generator(
        "language", "text", "text-only questions: opposites, sequences, word facts", LANGUAGE_TYPES, language_make
    ),
    Generator(
        "general",
        "pretrain",
        "simple shapes: colours, counts, sizes, positions",
        ("colour", "shape", "count", "position", "bigger", "where", "exists"),
        general_make,
    ),
]
