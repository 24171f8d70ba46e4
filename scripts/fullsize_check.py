#!/usr/bin/env python3
"""Full-size checks of the DeBERTa-v3, ModernBERT and SigLIP implementations against transformers,
on the random-weight benchmark checkpoints (bench/pytorch_bench.py --make-random deberta-v3-base |
modernbert-base | siglip-base DIR): texts of 24 to ~600 tokens (past DeBERTa-v3's 128-token
log-bucket boundary and ModernBERT's 128-token sliding window, and truncated at 512 for DeBERTa)
and SigLIP's zero-shot pipeline on the cat photo. Prints the largest probability difference.

    /work/venvs/torch/bin/python scripts/fullsize_check.py [MODELS_DIR (default /work/bench-models)]
"""
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import (AutoImageProcessor, AutoModel, AutoModelForSequenceClassification, AutoTokenizer,
                          pipeline)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "modeldeck"
models = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/bench-models")
torch.set_num_threads(2)
full = (ROOT / "bench" / "bench_text.txt").read_text()


def modeldeck(*args):
    return json.loads(subprocess.check_output([str(BIN), *args, "--json"], cwd=ROOT))


for name in ["deberta-v3-base", "modernbert-base"]:
    d = models / name
    tok = AutoTokenizer.from_pretrained(d)
    m = AutoModelForSequenceClassification.from_pretrained(d, attn_implementation="eager").eval()
    labels = [m.config.id2label[i] for i in range(m.config.num_labels)]
    for chars in [40, 200, 400, 800, 1200]:
        text = full[:chars]
        enc = tok(text, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            want = torch.softmax(m(**enc).logits[0], -1).tolist()
        got = {p["label"]: p["score"] for p in modeldeck("predict", "--model", str(d), "--text", text)["predictions"]}
        diff = max(abs(got[l] - w) for l, w in zip(labels, want))
        print(f"{name}: {enc['input_ids'].shape[1]} tokens, max |prob diff| {diff:.2g}")

d = models / "siglip-base"
m = AutoModel.from_pretrained(d).eval()
pipe = pipeline("zero-shot-image-classification", model=m, tokenizer=AutoTokenizer.from_pretrained(d),
                image_processor=AutoImageProcessor.from_pretrained(d, use_fast=False))
labels = ["a cat", "a dog", "a cup of coffee"]
want = {r["label"]: r["score"] for r in pipe(str(ROOT / "assets/samples/chelsea.png"), candidate_labels=labels)}
got = modeldeck("predict", "--model", str(d), "--image", "assets/samples/chelsea.png", "--labels", ",".join(labels))
print(f"siglip-base: max |prob diff| {max(abs(p['score'] - want[p['label']]) for p in got['predictions']):.2g}")
