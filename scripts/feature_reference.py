#!/usr/bin/env python3
"""Reference values for the monitor's input and output features (src/monitor/features.rs).

Writes tests/fixtures/features/{images,texts,outputs}.json, which tests/feature_reference.rs
compares against to 1e-6 relative:

- images: brightness, contrast, sharpness, size, aspect ratio and channel means with numpy and
  scipy.ndimage.laplace, on the decoded RGB pixels (PIL), with an FNV-1a hash of those pixels so
  the test knows it decoded the same ones;
- texts: characters, tokens (special tokens included, no truncation) and unknown tokens with
  the Hugging Face `tokenizers` library on each fixture model's tokenizer.json (and the real
  all-MiniLM-L6-v2 when its folder is given);
- outputs: top-1 probability and scipy.stats.entropy of float32 probability vectors, and
  embedding norms.

Run from the repository root with numpy, scipy, pillow and tokenizers installed:
    python scripts/feature_reference.py [--minilm target/fixtures/all-minilm-l6-v2]
The synthetic images (noise, tiny) are written once with a fixed seed and committed.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, stats
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/features"

TEXT_MODELS = ["bert-cls-5", "bert-cls-trunc", "distilbert-cls-a", "roberta-cls", "xlm-roberta-cls", "st-bert-mean"]
TEXTS = [
    "The movie was great!",
    "",
    "Ünïcödé façade — naïve café",
    "日本語のテキストと絵文字 🎉🚀",
    "xqzjv qqqq zzzzzzzz wvwvw",
    "a literal [UNK] and [CLS] in the text",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 12),
]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def synthetic_images():
    rng = np.random.default_rng(20261130)
    noise = OUT / "noise_37x23.png"
    if not noise.exists():
        Image.fromarray(rng.integers(0, 256, size=(23, 37, 3), dtype=np.uint8), "RGB").save(noise)
    tiny = OUT / "tiny_2x2.png"
    if not tiny.exists():
        Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [250, 250, 250]]], np.uint8)).save(tiny)
    return [noise, tiny]


def image_features(path: Path) -> dict:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    h, w, _ = pixels.shape
    rgb = pixels.astype(np.float64)
    lum = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    # scipy's laplace is the 4-neighbour kernel; interior pixels only (no boundary rule).
    sharpness = float(ndimage.laplace(lum)[1:-1, 1:-1].var()) if h >= 3 and w >= 3 else 0.0
    return {
        "path": str(path.relative_to(ROOT)),
        "pixels_fnv1a64": f"{fnv1a64(pixels.tobytes()):016x}",
        "features": {
            "brightness": float(lum.mean()),
            "contrast": float(lum.std()),
            "sharpness": sharpness,
            "width": float(w),
            "height": float(h),
            "aspect_ratio": w / h,
            "mean_r": float(rgb[..., 0].mean() / 255.0),
            "mean_g": float(rgb[..., 1].mean() / 255.0),
            "mean_b": float(rgb[..., 2].mean() / 255.0),
        },
    }


def unknown_id(path: Path, tokenizer: Tokenizer):
    model = json.loads(path.read_text())["model"]
    if model.get("unk_id") is not None:
        return model["unk_id"]
    if model.get("unk_token"):
        return tokenizer.token_to_id(model["unk_token"])
    return None


def text_features(path: Path) -> list:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    unk = unknown_id(path, tokenizer)
    rows = []
    for text in TEXTS:
        tokens = len(tokenizer.encode(text).ids)
        content = tokenizer.encode(text, add_special_tokens=False).ids
        unknown = sum(1 for i in content if i == unk) if unk is not None else 0
        rows.append({"text": text, "chars": len(text), "tokens": tokens, "unknown": unknown})
    return rows


def output_features() -> dict:
    rng = np.random.default_rng(7)
    probs = [
        np.array([0.7, 0.2, 0.1], np.float32),
        np.full(10, 0.1, np.float32),
        np.array([1.0, 0.0, 0.0, 0.0], np.float32),
        rng.dirichlet(np.full(1000, 0.05)).astype(np.float32),
        # sigmoid scores of a multi-label model: entropy of the normalised vector
        np.array([0.9, 0.8, 0.05], np.float32),
    ]
    embeddings = [rng.standard_normal(384).astype(np.float32), np.array([3.0, 4.0], np.float32)]
    return {
        "scores": [
            {
                "probs": [float(x) for x in p],
                "confidence": float(p.max()),
                "entropy": float(stats.entropy(p.astype(np.float64))),
            }
            for p in probs
        ],
        "embeddings": [
            {"embedding": [float(x) for x in e], "embedding_norm": float(np.linalg.norm(e.astype(np.float64)))}
            for e in embeddings
        ],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm", type=Path, help="folder of all-MiniLM-L6-v2 (optional)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    digit = sorted((ROOT / "assets/digits/test/3").glob("*.png"))[0]
    images = [ROOT / "assets/samples/chelsea.png", digit] + synthetic_images()
    texts = {m: text_features(ROOT / "tests/fixtures/models" / m / "tokenizer.json") for m in TEXT_MODELS}
    if args.minilm:
        texts["minilm"] = text_features(args.minilm / "tokenizer.json")
    for name, value in [
        ("images", [image_features(p) for p in images]),
        ("texts", texts),
        ("outputs", output_features()),
    ]:
        (OUT / f"{name}.json").write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name}.json")


if __name__ == "__main__":
    main()
