#!/usr/bin/env python3
"""PyTorch / transformers latency benchmark, the reference side of ModelDeck's
own benchmark. Times only the model's forward pass (under
torch.inference_mode()); pre-processing is done once, before timing.

Usage:
    /work/venv-torch/bin/python bench/pytorch_bench.py --model DIR [--batch N]
        [--iters K] [--warmup W] [--threads T] [--seq-len L] [--image PATH] [--json]
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random vit-b16 OUT_DIR
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random resnet50 OUT_DIR
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random convnext-tiny OUT_DIR
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random deberta-v3-base OUT_DIR
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random modernbert-base OUT_DIR
    /work/venv-torch/bin/python bench/pytorch_bench.py --make-random siglip-base OUT_DIR

--model DIR is a Hugging Face folder (config.json + weights). The task is
detected from the folder:
  * modules.json present (sentence-transformers): AutoModel forward + attention-
    masked mean pooling + L2 normalise (pooling/normalise are inside the timed
    region; they are negligible);
  * ModelDeckCnnForImageClassification (the demo models in models/, e.g.
    models/digits-v1): the same compact CNN written in torch.nn, weights from
    model.safetensors, images through ViTImageProcessor (as preprocessor_config.json says);
  * architectures[0] ends with ForImageClassification: image classification;
  * architectures[0] ends with ForSequenceClassification: text classification;
  * CLIPModel / SiglipModel: image encoder + text encoder on the labels ["a cat", "a dog"]
    (full forward: image embeds, text embeds, logits_per_image; SigLIP's prompts padded to 64
    tokens as its pipeline does, sigmoid scores);
  * anything else with a tokenizer: AutoModel forward (feature extraction).
Text inputs: every sequence is BENCH_TEXT tokenized with truncation=True,
max_length=L (special tokens included), so it has exactly L tokens whenever
BENCH_TEXT is long enough; the batch repeats that sequence N times (no padding).
Image inputs: --image (default assets/samples/chelsea.png) loaded like the
transformers pipeline (PIL, exif_transpose, RGB), pre-processed once with the
SLOW (PIL) image processor, repeated to batch N.

JSON (--json prints exactly one object on stdout):
  {"framework": "pytorch", "model": DIR as given, "task": ..., "batch": N,
   "seq_len": L or null (image models, CLIP), "threads": T, "iters": K,
   "warmup": W, "load_ms": model + tokenizer/processor load time,
   "latency_ms": {"p50", "p95", "mean"} (numpy percentile, linear),
   "throughput_per_s": batch * 1000 / p50, "flops": one forward pass
   (torch.utils.flop_counter), "peak_rss_mib" / "rss_mib": the process's peak
   and current resident memory, "torch_version": ...}

--make-random writes a randomly initialised save_pretrained folder
(model.safetensors + config.json + preprocessor_config.json) for benchmarking
both frameworks on a realistic size: vit-b16 = default ViTConfig (ViT-B/16,
224px, 1000 labels) with google/vit-base-patch16-224's processor settings;
resnet50 = default ResNetConfig (ResNet-50, 1000 labels) with
microsoft/resnet-50's processor settings; convnext-tiny = default ConvNextConfig
(ConvNeXt-T, 1000 labels) with facebook/convnext-tiny-224's; deberta-v3-base, modernbert-base and
siglip-base = the published configs of microsoft/deberta-v3-base, answerdotai/ModernBERT-base (3-label
classifiers) and google/siglip-base-patch16-224, with the tokenizer of the matching test fixture (its
small vocabulary's ids are valid rows of the full embedding tables). Put them outside the repository,
e.g. /work/bench-models/vit-b16 (the script refuses a path inside the repo).
"""
from __future__ import annotations

import argparse
import json
import resource
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parent.parent

# Copied verbatim into the Rust benchmark: keep it plain ASCII on one line.
# The paragraph both benchmarks tokenize; shared with modeldeck (src/bench.rs reads the same file).
BENCH_TEXT = (Path(__file__).resolve().parent / "bench_text.txt").read_text(encoding="utf-8")

CLIP_LABELS = ["a cat", "a dog"]


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO.resolve())
        return True
    except ValueError:
        return False


def rss_now_mib() -> float | None:
    """Resident memory now (VmRSS from /proc, Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def make_random(kind: str, out_dir: str) -> None:
    import torch
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ConvNextImageProcessor,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    out = Path(out_dir)
    if _inside_repo(out):
        sys.exit(f"refusing to write a large random checkpoint inside the repository: {out}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if kind == "vit-b16":
        model = ViTForImageClassification(ViTConfig(num_labels=1000))
        proc = ViTImageProcessor(
            size={"height": 224, "width": 224}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    elif kind == "resnet50":
        model = ResNetForImageClassification(ResNetConfig(num_labels=1000))
        proc = ConvNextImageProcessor(
            size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        )
    elif kind == "convnext-tiny":
        model = ConvNextForImageClassification(ConvNextConfig(num_labels=1000))
        proc = ConvNextImageProcessor(
            size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        )
    elif kind in TEXT_KINDS or kind == "siglip-base":
        model, fixture, max_len = make_random_tokenized(kind)
        # The fixture's tokenizer (a small vocabulary laid out like the real one: its ids are valid
        # rows of the full-size embedding table) with the real model's length limit.
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"):
            src = REPO / "tests" / "fixtures" / "models" / fixture / name
            if src.exists():
                (out / name).write_bytes(src.read_bytes())
        tc = json.loads((out / "tokenizer_config.json").read_text())
        tc["model_max_length"] = max_len
        (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))
        if kind == "siglip-base":
            from transformers import SiglipImageProcessor

            SiglipImageProcessor(size={"height": 224, "width": 224}, resample=3, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3).save_pretrained(out)
        proc = None
    else:
        sys.exit(f"unknown --make-random kind {kind!r}; expected vit-b16, resnet50, convnext-tiny, "
                 f"{', '.join(TEXT_KINDS)} or siglip-base")
    model.eval().save_pretrained(out, safe_serialization=True)
    if proc is not None:
        proc.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {kind} ({n / 1e6:.1f}M parameters) to {out}")


TEXT_KINDS = ("deberta-v3-base", "modernbert-base")


def make_random_tokenized(kind: str):
    """Full-size random models of the issue-16 families, by their published configs:
    microsoft/deberta-v3-base, answerdotai/ModernBERT-base (both with a 3-label classifier) and
    google/siglip-base-patch16-224. Returns (model, fixture folder whose tokenizer to copy,
    model_max_length)."""
    from transformers import (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        ModernBertConfig,
        ModernBertForSequenceClassification,
        SiglipConfig,
        SiglipModel,
    )

    labels = {"id2label": {0: "negative", 1: "neutral", 2: "positive"},
              "label2id": {"negative": 0, "neutral": 1, "positive": 2}}
    if kind == "deberta-v3-base":
        cfg = DebertaV2Config(
            vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0,
            layer_norm_eps=1e-7, relative_attention=True, max_relative_positions=-1, position_buckets=256,
            norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
            position_biased_input=False, pad_token_id=0, pooler_hidden_size=768, **labels,
        )
        return DebertaV2ForSequenceClassification(cfg), "deberta-v3-cls", 512
    if kind == "modernbert-base":
        cfg = ModernBertConfig(
            vocab_size=50368, hidden_size=768, intermediate_size=1152, num_hidden_layers=22,
            num_attention_heads=12, max_position_embeddings=8192, global_attn_every_n_layers=3,
            local_attention=128, classifier_pooling="mean", pad_token_id=495, **labels,
        )
        return ModernBertForSequenceClassification(cfg), "modernbert-cls", 8192
    cfg = SiglipConfig(
        text_config={"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "max_position_embeddings": 64, "pad_token_id": 0},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
    )
    return SiglipModel(cfg), "siglip-a", 64


def modeldeck_cnn(model_dir: Path):
    """ModelDeck's compact CNN (src/model/cnn.rs) in torch.nn: 3x3 convolutions (padding 1) with
    ReLU and 2x2 max pooling while the map is at least 2 wide, a hidden ReLU layer, a classifier."""
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text())

    class ModelDeckCnn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            chans = [3] + list(cfg["conv_channels"])
            self.convs = torch.nn.ModuleList(
                torch.nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(len(chans) - 1)
            )
            side = cfg["image_size"]
            for _ in cfg["conv_channels"]:
                side = max(side // 2, 1)
            self.hidden = torch.nn.Linear(chans[-1] * side * side, cfg["hidden_size"])
            self.classifier = torch.nn.Linear(cfg["hidden_size"], len(cfg["id2label"]))

        def forward(self, pixel_values):
            x = pixel_values
            for conv in self.convs:
                x = torch.relu(conv(x))
                if x.shape[2] >= 2:
                    x = torch.nn.functional.max_pool2d(x, 2)
            return self.classifier(torch.relu(self.hidden(x.flatten(1))))

    model = ModelDeckCnn()
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    return model


def detect_task(model_dir: Path) -> str:
    if (model_dir / "modules.json").exists():
        return "embedding"
    cfg = json.loads((model_dir / "config.json").read_text())
    arch = (cfg.get("architectures") or [""])[0]
    if arch == "ModelDeckCnnForImageClassification":
        return "modeldeck-cnn"
    if arch.endswith("ForImageClassification"):
        return "image-classification"
    if arch.endswith("ForSequenceClassification"):
        return "text-classification"
    if arch in ("CLIPModel", "SiglipModel") or cfg.get("model_type") in ("clip", "siglip"):
        return "zero-shot-image-classification"
    return "feature-extraction"


def text_batch(tok, seq_len: int, batch: int):
    import torch

    enc = tok(BENCH_TEXT, truncation=True, max_length=seq_len, return_tensors="pt")
    n = enc["input_ids"].shape[1]
    if n != seq_len:
        print(f"warning: BENCH_TEXT gives only {n} tokens (< --seq-len {seq_len})", file=sys.stderr)
    return {k: v.repeat(batch, 1).contiguous() for k, v in enc.items()}, n


def image_batch(proc, image_path: str, batch: int):
    from transformers.image_utils import load_image

    img = load_image(image_path)
    pv = proc(images=img, return_tensors="pt")["pixel_values"]
    return pv.repeat(batch, 1, 1, 1).contiguous()


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch forward-pass latency benchmark")
    ap.add_argument("--model", help="Hugging Face model folder")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=17)
    ap.add_argument("--image", default=str(REPO / "assets" / "samples" / "chelsea.png"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--precision", choices=["f32", "bf16", "int8"], default="f32",
                    help="bf16: the model cast to torch.bfloat16 (oneDNN's bf16 kernels); int8: "
                         "torch.ao.quantization.quantize_dynamic on the nn.Linear layers (qint8)")
    ap.add_argument("--make-random", nargs=2, metavar=("KIND", "OUT_DIR"),
                    help="write a random vit-b16 or resnet50 checkpoint and exit")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    if args.make_random:
        make_random(*args.make_random)
        return
    if not args.model:
        ap.error("--model DIR is required (or --make-random KIND OUT_DIR)")
    import numpy as np
    import transformers
    from transformers import (
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    model_dir = Path(args.model)
    task = detect_task(model_dir)
    seq_len = None

    t0 = time.perf_counter()
    if task == "modeldeck-cnn":
        from transformers import ViTImageProcessor

        model = modeldeck_cnn(model_dir)
        proc = ViTImageProcessor.from_pretrained(model_dir)
    elif task == "image-classification":
        model = AutoModelForImageClassification.from_pretrained(model_dir)
        proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    elif task == "zero-shot-image-classification":
        model = AutoModel.from_pretrained(model_dir)
        proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
        tok = AutoTokenizer.from_pretrained(model_dir)
    elif task == "text-classification":
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
    else:  # embedding / feature-extraction
        model = AutoModel.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
    model.eval()
    if args.precision == "bf16":
        model = model.to(torch.bfloat16)
    elif args.precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    load_ms = (time.perf_counter() - t0) * 1000.0
    pixel_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    if task == "image-classification":
        inputs = {"pixel_values": image_batch(proc, args.image, args.batch).to(pixel_dtype)}

        def forward():
            return model(**inputs).logits

    elif task == "modeldeck-cnn":
        pixels = image_batch(proc, args.image, args.batch).to(pixel_dtype)

        def forward():
            return model(pixels)

    elif task == "zero-shot-image-classification":
        siglip = model.config.model_type == "siglip"
        # As the zero-shot-image-classification pipeline tokenizes: SigLIP pads to 64 tokens.
        padding = {"padding": "max_length", "max_length": 64, "truncation": True} if siglip else {"padding": True}
        txt = tok([f"This is a photo of {label}." for label in CLIP_LABELS], return_tensors="pt", **padding)
        inputs = {"pixel_values": image_batch(proc, args.image, args.batch), **txt}

        def forward():
            logits = model(**inputs).logits_per_image
            return logits.sigmoid() if siglip else logits.softmax(-1)

    else:
        inputs, seq_len = text_batch(tok, args.seq_len, args.batch)
        if task == "text-classification":

            def forward():
                return model(**inputs).logits

        else:
            mask = inputs["attention_mask"].unsqueeze(-1).to(torch.float32)

            def forward():
                h = model(**inputs)[0]
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if task == "embedding":
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                return pooled

    lat = []
    with torch.inference_mode():
        # Floating-point operations of one forward pass (matrix products and convolutions, two
        # per multiply-add), counted by PyTorch itself: the work both frameworks do.
        from torch.utils.flop_counter import FlopCounterMode

        try:
            with FlopCounterMode(display=False) as counter:
                forward()
            flops = counter.get_total_flops()
        except AttributeError:
            # FlopCounterMode's module tracker hooks every module input for gradients and fails on
            # a parameter fed straight into a module (DeBERTa's relative embeddings' LayerNorm).
            flops = None
        for _ in range(args.warmup):
            forward()
        for _ in range(args.iters):
            t = time.perf_counter()
            forward()
            lat.append((time.perf_counter() - t) * 1000.0)
    p50, p95 = (float(x) for x in np.percentile(np.array(lat), [50, 95]))
    result = {
        "framework": "pytorch",
        "model": args.model,
        "precision": args.precision,
        "task": task,
        "batch": args.batch,
        "seq_len": seq_len,
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "load_ms": load_ms,
        "latency_ms": {"p50": p50, "p95": p95, "mean": float(np.mean(lat))},
        "throughput_per_s": args.batch * 1000.0 / p50,
        "flops": flops,
        # Peak resident memory of the process (Linux reports ru_maxrss in KiB) and now.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_mib": rss_now_mib(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {task} {args.model}: batch {args.batch}, seq_len {seq_len}, threads {args.threads}")
        print(f"  load {load_ms:.1f} ms; latency p50 {p50:.2f} ms, p95 {p95:.2f} ms, mean {np.mean(lat):.2f} ms "
              f"over {args.iters} iters (+{args.warmup} warmup); {result['throughput_per_s']:.1f} items/s")


if __name__ == "__main__":
    main()
