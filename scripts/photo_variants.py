#!/usr/bin/env python3
"""A folder data set of full-size photos for precision agreement checks (issue 15).

Writes OUT/<photo>/<i>.png: each shipped photo in assets/samples (chelsea, coffee) in N variants
(random crop of 60-100% of each side, horizontal flip, rotation of up to 15 degrees, brightness
and contrast of 0.7-1.3, resized to 256-480 px on the short side), seeded, so that
`modeldeck compare --a M --b M --precision-b int8 --data OUT` measures top-1 agreement between
two precisions of a full-size image classifier on more than two inputs.

    python3 scripts/photo_variants.py OUT_DIR [--per-photo 60] [--seed 0]

Needs Pillow only.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


def variant(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
    short = rng.randint(256, 480)
    scale = short / min(out.size)
    return out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))), Image.BICUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--per-photo", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out_dir)
    for photo in sorted(SAMPLES.glob("*.png")):
        img = Image.open(photo).convert("RGB")
        folder = out / photo.stem
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_photo):
            variant(img, rng).save(folder / f"{i:03d}.png")
    print(f"wrote {args.per_photo} variants of each photo in {SAMPLES} to {out}")


if __name__ == "__main__":
    main()
