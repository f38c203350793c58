"""Domain track (IID): five visually distinct domains mirroring MLLM-CL's RS, Med, AD, Sci and Fin.
Each question is decidable from coarse layout (objects of 8+ px on a 16-px grid), with distractors,
random placement and noise so that a task is learnable by a tiny model but not trivial."""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from mllmcl.data.benchmark.core import Generator, Item, pick, template
from mllmcl.data.benchmark.draw import CELL, COLOURS, canvas, cell_centre, cells, finish, jitter, shape

YESNO = ["yes", "no"]
COUNTS = ["0", "1", "2", "3", "4"]

# --- rs: aerial tiles -------------------------------------------------------------------------------------
LAND = {"field": (150, 190, 70), "water": (40, 90, 170), "forest": (25, 85, 35), "town": (150, 145, 140)}
CORNERS = {"top left": (0, 0), "top right": (3, 0), "bottom left": (0, 3), "bottom right": (3, 3)}


def _rs_tiles(rng, majority: str | None = None, water: bool | None = None):
    kinds = list(LAND)
    if water is False:
        kinds.remove("water")
    grid = [[pick(rng, kinds) for _ in range(4)] for _ in range(4)]
    if majority:
        for col, row in cells(rng, 9):
            grid[row][col] = majority
    if water:
        col, row = cells(rng, 1)[0]
        grid[row][col] = "water"
    return grid


def _rs_draw(rng, grid, buildings: int = 0):
    img = canvas((0, 0, 0))
    d = ImageDraw.Draw(img)
    for row in range(4):
        for col in range(4):
            kind = grid[row][col]
            x, y = col * CELL, row * CELL
            d.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=jitter(rng, LAND[kind], 10))
            if kind == "field":
                for k in range(2, CELL, 4):
                    d.line([x, y + k, x + CELL - 1, y + k], fill=jitter(rng, (175, 205, 95), 8))
            elif kind == "forest":
                for _ in range(3):
                    shape(d, "circle", x + rng.uniform(3, 13), y + rng.uniform(3, 13), 3, jitter(rng, (15, 60, 20), 6))
            elif kind == "town":
                d.line([x, y + 8, x + CELL - 1, y + 8], fill=(90, 90, 90), width=2)
    if buildings:
        spots = [(c, r) for c, r in cells(rng, 16) if grid[r][c] != "water"][:buildings]
        for col, row in spots:
            cx, cy = cell_centre(rng, col, row, 6)
            d.rectangle([cx - 4, cy - 4, cx + 4, cy + 4], fill=jitter(rng, (200, 60, 45), 10), outline=(60, 20, 20))
    return img


def rs_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Aerial tiles: is there water, what covers most of the land, how many buildings, what fills a corner; tile layout,
    colours and noise vary."""
    if qtype == "water":
        has = bool(rng.random() < 0.5)
        grid = _rs_tiles(rng, water=has)
        q = template(rng, ["is there water in the image?", "can you see any water?", "is there a lake or river?"])
        return Item(finish(_rs_draw(rng, grid), rng, size), q, "yes" if has else "no", "yesno", YESNO, qtype)
    if qtype == "cover":
        major = pick(rng, LAND)
        grid = _rs_tiles(rng, majority=major)
        q = template(
            rng, ["what covers most of the image?", "what is the main land cover?", "what covers most of the land?"]
        )
        return Item(finish(_rs_draw(rng, grid), rng, size), q, major, "word", list(LAND), qtype)
    if qtype == "buildings":
        n = int(rng.integers(0, 5))
        grid = [[pick(rng, ["field", "field", "forest", "water"]) for _ in range(4)] for _ in range(4)]
        for r in range(4):  # buildings stand on land: keep at least 4 land cells
            grid[r][r] = "field"
        q = template(rng, ["how many buildings are there?", "how many houses can you see?", "count the buildings."])
        return Item(finish(_rs_draw(rng, grid, buildings=n), rng, size), q, str(n), "number", COUNTS, qtype)
    corner = pick(rng, CORNERS)
    grid = _rs_quadrants(rng)
    col, row = CORNERS[corner]
    q = template(rng, ["what is in the {c} corner?", "what covers the {c} corner?"], c=corner)
    return Item(finish(_rs_draw(rng, grid), rng, size), q, grid[row][col], "word", list(LAND), qtype)


def _rs_quadrants(rng):
    """Each 2x2-cell quadrant one land type (a corner question is about a region, not a single tile)."""
    quads = [[pick(rng, LAND) for _ in range(2)] for _ in range(2)]
    return [[quads[r // 2][c // 2] for c in range(4)] for r in range(4)]


# --- med: stained tissue with cells --------------------------------------------------------------------
def _med_draw(rng, n_cells: int, abnormal_cell: tuple[int, int] | None):
    img = canvas(jitter(rng, (235, 175, 200), 10))
    d = ImageDraw.Draw(img)
    for _ in range(40):  # tissue texture
        x, y = rng.uniform(0, 64, 2)
        d.ellipse([x - 2, y - 1, x + 2, y + 1], fill=jitter(rng, (215, 140, 180), 12))
    spots = cells(rng, n_cells + (1 if abnormal_cell is None else 0))
    if abnormal_cell is not None:
        spots = [c for c in spots if c != abnormal_cell][: n_cells - 1] + [abnormal_cell]
    for col, row in spots[:n_cells]:
        cx, cy = cell_centre(rng, col, row, 6)
        if abnormal_cell is not None and (col, row) == abnormal_cell:
            shape(d, "circle", cx, cy, 7, jitter(rng, (50, 30, 110), 8), outline=(20, 10, 50), width=2)
        else:
            shape(d, "circle", cx, cy, 4.5, jitter(rng, (165, 95, 190), 10))
            shape(d, "circle", cx, cy, 1.8, jitter(rng, (110, 50, 140), 8))
    return img


def med_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Pathology slides: is a cell abnormal, how many cells, on which side is the abnormal one; cell count, placement
    and stain vary."""
    if qtype == "abnormal":
        has = bool(rng.random() < 0.5)
        n = int(rng.integers(2, 6))
        ab = cells(rng, 1)[0] if has else None
        q = template(
            rng, ["is there an abnormal cell?", "does the tissue show an abnormal cell?", "is any cell abnormal?"]
        )
        return Item(finish(_med_draw(rng, n, ab), rng, size), q, "yes" if has else "no", "yesno", YESNO, qtype)
    if qtype == "count":
        n = int(rng.integers(1, 6))
        q = template(rng, ["how many cells are there?", "how many cells can you count?", "count the cells."])
        return Item(finish(_med_draw(rng, n, None), rng, size), q, str(n), "number", ["1", "2", "3", "4", "5"], qtype)
    side = pick(rng, ["left", "right"])
    col = int(rng.integers(0, 2)) if side == "left" else int(rng.integers(2, 4))
    n = int(rng.integers(2, 5))
    q = template(rng, ["is the abnormal cell on the left or right?", "where is the abnormal cell, left or right?"])
    return Item(
        finish(_med_draw(rng, n, (col, int(rng.integers(0, 4)))), rng, size), q, side, "word", ["left", "right"], qtype
    )


# --- ad: forward road view -----------------------------------------------------------------------------
LIGHTS = {"red": (235, 30, 30), "yellow": (245, 200, 20), "green": (30, 220, 70)}
LANE_X = {"left": 10, "ego": 32, "right": 54}


def _ad_draw(rng, light: str | None, cars: dict[str, int]):
    img = canvas(jitter(rng, (150, 195, 235), 10))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 22, 63, 63], fill=jitter(rng, (95, 95, 100), 6))  # road
    d.rectangle([0, 20, 63, 22], fill=jitter(rng, (70, 140, 60), 10))  # verge
    for x in (21, 43):
        for y in range(24, 64, 8):
            d.line([x, y, x, y + 4], fill=(235, 235, 235), width=1)
    if light:
        x = float(rng.uniform(6, 56))
        d.rectangle([x - 4, 2, x + 4, 18], fill=(25, 25, 25))
        shape(d, "circle", x, 10, 3.5, LIGHTS[light])
    for lane, depth in cars.items():
        w = 7 + depth * 2  # nearer cars are bigger
        cy = 30 + depth * 8
        cx = LANE_X[lane] + rng.uniform(-1.5, 1.5)
        colour = jitter(
            rng, pick(rng, [(200, 30, 30), (240, 240, 240), (30, 60, 180), (20, 20, 20), (230, 180, 30)]), 10
        )
        d.rectangle([cx - w / 2, cy - w / 2.6, cx + w / 2, cy + w / 2.6], fill=colour, outline=(10, 10, 10))
    return img


def ad_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Road views: the traffic light's colour, is a car in our lane, which side lane is free; cars (lane, distance,
    colour) and the light vary."""
    if qtype == "light":
        light = pick(rng, LIGHTS)
        cars = {lane: int(rng.integers(0, 4)) for lane in LANE_X if rng.random() < 0.4}
        q = template(
            rng,
            ["what colour is the traffic light?", "which colour is the light showing?", "what colour is the signal?"],
        )
        return Item(finish(_ad_draw(rng, light, cars), rng, size), q, light, "word", list(LIGHTS), qtype)
    if qtype == "ego_car":
        has = bool(rng.random() < 0.5)
        cars = {lane: int(rng.integers(0, 4)) for lane in ("left", "right") if rng.random() < 0.5}
        if has:
            cars["ego"] = int(rng.integers(0, 4))
        light = pick(rng, [None, *LIGHTS])
        q = template(
            rng, ["is there a car in our lane?", "is a car ahead of us in our lane?", "is our lane blocked by a car?"]
        )
        return Item(finish(_ad_draw(rng, light, cars), rng, size), q, "yes" if has else "no", "yesno", YESNO, qtype)
    free = pick(rng, ["left", "right"])
    busy = "right" if free == "left" else "left"
    cars = {busy: int(rng.integers(0, 4))}
    if rng.random() < 0.5:
        cars["ego"] = int(rng.integers(0, 4))
    q = template(rng, ["which lane is free, left or right?", "is the left or the right lane free?"])
    return Item(
        finish(_ad_draw(rng, pick(rng, [None, *LIGHTS]), cars), rng, size), q, free, "word", ["left", "right"], qtype
    )


# --- sci: labelled diagrams ----------------------------------------------------------------------------
SHAPES = ["circle", "square", "triangle"]
SCI_COLOURS = ["red", "green", "blue", "yellow"]


def _sci_base(rng):
    img = canvas(jitter(rng, (250, 250, 245), 4))
    d = ImageDraw.Draw(img)
    for x in range(0, 64, 16):  # faint grid paper
        d.line([x, 0, x, 63], fill=(225, 230, 240))
        d.line([0, x, 63, x], fill=(225, 230, 240))
    return img, d


def _arrow(d, rng, col, row):
    cx, cy = cell_centre(rng, col, row, 7)
    horizontal = rng.random() < 0.5
    if horizontal:
        d.line([cx - 6, cy, cx + 5, cy], fill=(10, 10, 10), width=2)
        d.polygon([(cx + 7, cy), (cx + 3, cy - 3), (cx + 3, cy + 3)], fill=(10, 10, 10))
    else:
        d.line([cx, cy - 6, cx, cy + 5], fill=(10, 10, 10), width=2)
        d.polygon([(cx, cy + 7), (cx - 3, cy + 3), (cx + 3, cy + 3)], fill=(10, 10, 10))


def sci_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Diagrams: which shape is largest, how many arrows, what colour is the circle; shapes, colours, placement and
    distractor arrows vary."""
    img, d = _sci_base(rng)
    if qtype == "largest":
        kinds = list(rng.permutation(SHAPES))
        spots = [(c * 21 + 10.5, r) for c, r in zip(range(3), rng.uniform(16, 48, 3))]
        radii = [float(rng.uniform(3.5, 5.5)), float(rng.uniform(3.5, 5.5)), float(rng.uniform(9, 10.5))]
        order = rng.permutation(3)
        for k, (x, y), rad in zip([kinds[i] for i in order], spots, radii):
            shape(d, k, x, y, rad, jitter(rng, COLOURS[pick(rng, SCI_COLOURS)], 10), outline=(0, 0, 0))
        answer = [kinds[i] for i in order][2]
        q = template(rng, ["which shape is largest?", "which shape is the biggest?", "what is the largest shape?"])
        return Item(finish(img, rng, size, 3), q, str(answer), "word", SHAPES, qtype)
    if qtype == "arrows":
        n = int(rng.integers(1, 5))
        spots = cells(rng, n + 1)
        for col, row in spots[:n]:
            _arrow(d, rng, col, row)
        col, row = spots[n]
        shape(
            d,
            pick(rng, SHAPES),
            *cell_centre(rng, col, row, 7),
            5,
            jitter(rng, COLOURS[pick(rng, SCI_COLOURS)]),
            outline=(0, 0, 0),
        )
        q = template(rng, ["how many arrows are there?", "how many arrows does the diagram show?", "count the arrows."])
        return Item(finish(img, rng, size, 3), q, str(n), "number", ["1", "2", "3", "4"], qtype)
    colour = pick(rng, SCI_COLOURS)
    others = [c for c in SCI_COLOURS if c != colour]
    spots = cells(rng, 3)
    kinds = ["circle", *rng.permutation(["square", "triangle"])]
    for k, (col, row), c in zip(kinds, spots, [colour, *rng.permutation(others)[:2]]):
        shape(d, k, *cell_centre(rng, col, row, 7), 6, jitter(rng, COLOURS[str(c)], 10), outline=(0, 0, 0))
    if rng.random() < 0.5:
        _arrow(d, rng, *[c for c in cells(rng, 16) if c not in spots][0])
    q = template(rng, ["what colour is the circle?", "which colour is the circle?", "the circle is what colour?"])
    return Item(finish(img, rng, size, 3), q, colour, "word", SCI_COLOURS, qtype)


# --- fin: bar and line charts --------------------------------------------------------------------------
BAR_COLOURS = ["red", "green", "blue", "orange"]


def _axes(rng):
    img = canvas(jitter(rng, (245, 245, 235), 4))
    d = ImageDraw.Draw(img)
    d.line([4, 4, 4, 59], fill=(60, 60, 60))
    d.line([4, 59, 60, 59], fill=(60, 60, 60))
    for y in range(14, 59, 15):
        d.line([5, y, 60, y], fill=(220, 220, 215))
    return img, d


def fin_make(rng: np.random.Generator, split: str, size: int, qtype: str) -> Item:
    """Charts: the colour of the highest or lowest bar, or whether a price line goes up or down; bar order and heights,
    slope and noise vary."""
    img, d = _axes(rng)
    if qtype in ("highest", "lowest"):
        colours = list(rng.permutation(BAR_COLOURS))
        heights = list(rng.uniform(18, 34, 4))
        target = int(rng.integers(0, 4))
        heights[target] = float(rng.uniform(44, 52)) if qtype == "highest" else float(rng.uniform(6, 10))
        for i, (c, h) in enumerate(zip(colours, heights)):
            x = 8 + i * 13
            d.rectangle([x, 59 - h, x + 9, 58], fill=jitter(rng, COLOURS[str(c)], 10))
        q = template(
            rng, [f"which bar is {qtype}?", f"what colour is the {qtype} bar?", f"which colour has the {qtype} bar?"]
        )
        return Item(finish(img, rng, size, 3), q, str(colours[target]), "word", BAR_COLOURS, qtype)
    up = bool(rng.random() < 0.5)
    start, end = (float(rng.uniform(42, 54)), float(rng.uniform(8, 20)))
    if not up:
        start, end = end, start
    xs = np.linspace(6, 60, 7)
    ys = np.linspace(start, end, 7) + rng.normal(0, 3, 7)
    colour = COLOURS[pick(rng, BAR_COLOURS)]
    d.line([(float(x), float(y)) for x, y in zip(xs, ys)], fill=colour, width=2)
    q = template(rng, ["is the trend up or down?", "is the price going up or down?", "does the line go up or down?"])
    return Item(finish(img, rng, size, 3), q, "up" if up else "down", "word", ["up", "down"], qtype)


GENERATORS = [
    Generator(
        "rs",
        "domain",
        "aerial images: land cover, water, buildings",
        ("water", "cover", "buildings", "corner"),
        rs_make,
    ),
    Generator("med", "domain", "pathology slides: stained tissue and cells", ("abnormal", "count", "side"), med_make),
    Generator(
        "ad", "domain", "driving scenes: road, lanes, cars, traffic lights", ("light", "ego_car", "free_lane"), ad_make
    ),
    Generator(
        "sci", "domain", "science diagrams: shapes, arrows, labels", ("largest", "arrows", "circle_colour"), sci_make
    ),
    Generator("fin", "domain", "financial charts: bars and price lines", ("highest", "lowest", "trend"), fin_make),
]
