"""Contact sheet of MLLM-CL-mini: a few samples of every generator with their question and answer, so a
person can check at a glance that domains look different and questions are answerable by eye."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmark/preview.png"))
    p.add_argument("--per-task", type=int, default=6)
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=3, help="pixel zoom of each 64-px image")
    a = p.parse_args(argv)

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from mllmcl.data.benchmark import GENERATORS

    names = [n for n, g in GENERATORS.items() if g.track != "text"]
    cell_w, cell_h = 64 * a.scale + 8, 64 * a.scale + 36
    sheet = Image.new("RGB", (90 + cell_w * a.per_task, cell_h * len(names)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, name in enumerate(names):
        gen = GENERATORS[name]
        rng = np.random.default_rng(a.seed)
        d.text((4, r * cell_h + cell_h // 2), name, fill=(0, 0, 0), font=font)
        for c in range(a.per_task):
            item = gen.make(rng, a.split, 64, gen.question_types[c % len(gen.question_types)])
            x, y = 90 + c * cell_w, r * cell_h
            sheet.paste(item.image.resize((64 * a.scale, 64 * a.scale), Image.Resampling.NEAREST), (x, y))
            d.text((x, y + 64 * a.scale + 2), item.question[:34], fill=(0, 0, 0), font=font)
            d.text((x, y + 64 * a.scale + 16), f"-> {item.answer}", fill=(180, 0, 0), font=font)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
