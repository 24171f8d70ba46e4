#!/usr/bin/env python3
"""ONNX Runtime latency benchmark: the third column of bench/compare_all.sh.

Exports the same checkpoint that `modeldeck bench` and bench/pytorch_bench.py time with
torch.onnx.export (once, cached outside the repository), optionally quantises it with ONNX
Runtime's own dynamic int8 quantisation (`quantize_dynamic`, its defaults: per-tensor QInt8
weights, activations quantised per tensor at run time), and times `InferenceSession.run` on the
same inputs as the other two benchmarks (bench/bench_text.txt truncated to --seq-len tokens, or
assets/samples/chelsea.png through the checkpoint's image processor).

Usage (torch, transformers, onnx, onnxscript and onnxruntime from PyPI, in a venv outside the repo):
    /work/venv-torch/bin/python bench/onnx_bench.py --model DIR [--batch N] [--seq-len L]
        [--iters K] [--warmup W] [--threads T] [--precision f32|int8] [--cache DIR] [--json]

The session runs with intra_op_num_threads=T, inter_op_num_threads=1, sequential execution and
all graph optimisations (ORT_ENABLE_ALL), the settings a latency-minded user picks. Sentence
embedding models (modules.json) are exported with their mean pooling and L2 normalisation inside
the graph, as both other benchmarks time them. `--precision int8` also reports the fidelity of
ONNX Runtime's int8 output against its own f32 output on the benchmark input (cosine for
embeddings, top-1 agreement and the largest probability difference for classifiers).

JSON: {"framework": "onnxruntime", "model", "task", "precision", "batch", "seq_len", "threads",
"iters", "warmup", "load_ms" (session creation from the .onnx file), "export_ms" (0 when
cached), "latency_ms": {"p50", "p95", "mean"}, "throughput_per_s", "onnx_bytes",
"peak_rss_mib", "rss_mib", "fidelity" (int8 only), "onnxruntime_version"}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pytorch_bench as pb  # noqa: E402  (the same inputs and task detection)


def cache_dir(model_dir: Path, root: Path) -> Path:
    """One folder per checkpoint content (config + weights' size and mtime)."""
    h = hashlib.sha256()
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return root / f"{model_dir.resolve().name}-{h.hexdigest()[:12]}"


def load_torch(model_dir: Path, task: str):
    import torch
    from transformers import AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

    if task == "modeldeck-cnn":
        return pb.modeldeck_cnn(model_dir)
    if task == "image-classification":
        return AutoModelForImageClassification.from_pretrained(model_dir)
    if task == "text-classification":
        return AutoModelForSequenceClassification.from_pretrained(model_dir)
    if task in ("embedding", "feature-extraction"):
        base = AutoModel.from_pretrained(model_dir)

        class Pooled(torch.nn.Module):
            def __init__(self, m, normalize):
                super().__init__()
                self.m, self.normalize = m, normalize

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                h = self.m(**kwargs)[0]
                mask = attention_mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                return pooled

        return Pooled(base, task == "embedding")
    raise SystemExit(f"onnx_bench: task {task} is not exported by this script")


def make_inputs(model_dir: Path, task: str, args):
    """Numpy feeds by input name, and the sequence length (text) or None."""
    from transformers import AutoImageProcessor, AutoTokenizer, ViTImageProcessor

    if task in ("image-classification", "modeldeck-cnn"):
        proc = (ViTImageProcessor if task == "modeldeck-cnn" else AutoImageProcessor).from_pretrained(
            model_dir, **({} if task == "modeldeck-cnn" else {"use_fast": False}))
        return {"pixel_values": pb.image_batch(proc, args.image, args.batch).numpy()}, None
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc, n = pb.text_batch(tok, args.seq_len, args.batch)
    return {k: v.numpy() for k, v in enc.items()}, n


def export(model_dir: Path, task: str, feeds: dict, out: Path) -> float:
    import torch

    model = load_torch(model_dir, task).eval()
    # Positional inputs in the order of the models' signatures (HF's and Pooled's).
    order = ["pixel_values", "input_ids", "attention_mask", "token_type_ids"]
    names = [k for k in order if k in feeds]
    tensors = tuple(torch.from_numpy(feeds[k]) for k in names)
    axes = {k: ({0: "batch", 1: "seq"} if k != "pixel_values" else {0: "batch"}) for k in names}
    axes["output"] = {0: "batch"}
    t0 = time.perf_counter()
    tmp = out.with_suffix(".tmp.onnx")
    with torch.inference_mode():
        torch.onnx.export(model, tensors, str(tmp), input_names=names, output_names=["output"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    tmp.replace(out)
    return (time.perf_counter() - t0) * 1000.0


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def fidelity(task: str, f32, int8) -> dict:
    import numpy as np

    if task in ("embedding", "feature-extraction"):
        a, b = f32.reshape(len(f32), -1), int8.reshape(len(int8), -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return {"min_cosine": float(cos.min())}

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pa, pb_ = softmax(f32), softmax(int8)
    return {"top1_agreement": float((pa.argmax(-1) == pb_.argmax(-1)).mean()),
            "max_prob_diff": float(np.abs(pa - pb_).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description="ONNX Runtime forward-pass latency benchmark")
    ap.add_argument("--model", required=True, help="Hugging Face model folder")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=17)
    ap.add_argument("--precision", choices=["f32", "int8"], default="f32")
    ap.add_argument("--image", default=str(pb.REPO / "assets" / "samples" / "chelsea.png"))
    ap.add_argument("--cache", default=os.environ.get("ONNX_CACHE", str(Path.home() / ".cache" / "modeldeck-bench" / "onnx")))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    task = pb.detect_task(model_dir)
    feeds, seq_len = make_inputs(model_dir, task, args)
    folder = cache_dir(model_dir, Path(args.cache))
    if pb._inside_repo(folder):
        raise SystemExit("onnx_bench: the export cache must be outside the repository")
    folder.mkdir(parents=True, exist_ok=True)
    f32_path, int8_path = folder / "model.onnx", folder / "model.int8.onnx"
    export_ms = 0.0
    if not f32_path.exists():
        export_ms = export(model_dir, task, feeds, f32_path)
    path = f32_path
    if args.precision == "int8":
        if not int8_path.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            t0 = time.perf_counter()
            quantize_dynamic(str(f32_path), str(int8_path), weight_type=QuantType.QInt8)
            export_ms += (time.perf_counter() - t0) * 1000.0
        path = int8_path

    t0 = time.perf_counter()
    sess = session(path, args.threads)
    load_ms = (time.perf_counter() - t0) * 1000.0
    wanted = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in wanted}

    def forward():
        return sess.run(None, feeds)[0]

    for _ in range(args.warmup):
        out = forward()
    lat = []
    for _ in range(args.iters):
        t = time.perf_counter()
        out = forward()
        lat.append((time.perf_counter() - t) * 1000.0)
    p50, p95 = (float(x) for x in np.percentile(np.array(lat), [50, 95]))
    result = {
        "framework": "onnxruntime",
        "model": args.model,
        "task": task,
        "precision": args.precision,
        "batch": args.batch,
        "seq_len": seq_len,
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "load_ms": load_ms,
        "export_ms": export_ms,
        "latency_ms": {"p50": p50, "p95": p95, "mean": float(np.mean(lat))},
        "throughput_per_s": args.batch * 1000.0 / p50,
        "onnx_bytes": path.stat().st_size,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_mib": pb.rss_now_mib(),
        "onnxruntime_version": ort.__version__,
    }
    if args.precision == "int8":
        result["fidelity"] = fidelity(task, session(f32_path, args.threads).run(None, feeds)[0], out)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"onnxruntime {args.precision} {task} {args.model}: batch {args.batch}, seq_len {seq_len}, "
              f"threads {args.threads}")
        print(f"  load {load_ms:.1f} ms; latency p50 {p50:.2f} ms, p95 {p95:.2f} ms over {args.iters} iters"
              + (f"; fidelity {result['fidelity']}" if "fidelity" in result else ""))


if __name__ == "__main__":
    main()
