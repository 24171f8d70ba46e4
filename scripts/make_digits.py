"""Converts scikit-learn's bundled handwritten digits (load_digits: 1,797 images of 8x8 pixels,
16 grey levels) into an ImageFolder data set under assets/digits/{train,test}/<digit>/NNNN.png.

Ink is bright on a dark background; grey level v (0..16) becomes round(v * 255 / 16). The split is
fixed: a seeded shuffle (numpy seed 0), 70% train and 30% test, stratified by digit.

Run by hand (needs scikit-learn and Pillow):  python scripts/make_digits.py
"""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

root = Path(__file__).resolve().parent.parent / "assets" / "digits"
digits = load_digits()
index = np.arange(len(digits.target))
train, test = train_test_split(index, test_size=0.3, random_state=0, stratify=digits.target)
for split, ids in (("train", train), ("test", test)):
    shutil.rmtree(root / split, ignore_errors=True)
    for i in sorted(ids):
        pixels = np.round(digits.images[i] * 255.0 / 16.0).astype(np.uint8)
        folder = root / split / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png", optimize=True)
print(f"train {len(train)}, test {len(test)} images in {root}")
