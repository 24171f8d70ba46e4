#!/usr/bin/env python3
"""A full-size ResNet-50 checkpoint in Hugging Face's layout (ResNetForImageClassification,
25.6 M parameters) with random weights, for throughput measurements only (its answers mean
nothing). Standard library only: no torch needed.

    python3 bench/make_resnet50_random.py OUT_DIR [LABEL ...]
"""
import json
import math
import os
import random
import struct
import sys
from array import array

out = sys.argv[1]
labels = sys.argv[2:] or ["cat", "coffee"]
os.makedirs(out, exist_ok=True)
rng = random.Random(0)
tensors = {}


def put(name, shape, values):
    tensors[name] = (shape, values)


def conv(prefix, cin, cout, k):
    std = math.sqrt(2.0 / (cin * k * k))
    n = cout * cin * k * k
    put(f"{prefix}.convolution.weight", [cout, cin, k, k], array("f", (rng.gauss(0.0, std) for _ in range(n))))
    bn = f"{prefix}.normalization"
    put(f"{bn}.weight", [cout], array("f", [1.0] * cout))
    put(f"{bn}.bias", [cout], array("f", [0.0] * cout))
    put(f"{bn}.running_mean", [cout], array("f", [0.0] * cout))
    put(f"{bn}.running_var", [cout], array("f", [1.0] * cout))


depths, hidden, embedding = [3, 4, 6, 3], [256, 512, 1024, 2048], 64
conv("resnet.embedder.embedder", 3, embedding, 7)
cin = embedding
for s, (depth, cout) in enumerate(zip(depths, hidden)):
    for l in range(depth):
        p = f"resnet.encoder.stages.{s}.layers.{l}"
        mid = cout // 4
        if l == 0:
            conv(f"{p}.shortcut", cin, cout, 1)
        conv(f"{p}.layer.0", cin, mid, 1)
        conv(f"{p}.layer.1", mid, mid, 3)
        conv(f"{p}.layer.2", mid, cout, 1)
        cin = cout
std = math.sqrt(1.0 / cin)
put("classifier.1.weight", [len(labels), cin], array("f", (rng.gauss(0.0, std) for _ in range(len(labels) * cin))))
put("classifier.1.bias", [len(labels)], array("f", [0.0] * len(labels)))

header, offset = {}, 0
for name, (shape, values) in tensors.items():
    size = len(values) * 4
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
    offset += size
blob = json.dumps(header).encode()
blob += b" " * (-len(blob) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for _, values in tensors.values():
        if sys.byteorder != "little":
            values.byteswap()
        f.write(values.tobytes())
config = {
    "architectures": ["ResNetForImageClassification"],
    "model_type": "resnet",
    "depths": depths,
    "hidden_sizes": hidden,
    "embedding_size": embedding,
    "hidden_act": "relu",
    "layer_type": "bottleneck",
    "downsample_in_first_stage": False,
    "downsample_in_bottleneck": False,
    "num_channels": 3,
    "id2label": {str(i): l for i, l in enumerate(labels)},
    "label2id": {l: i for i, l in enumerate(labels)},
}
json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
json.dump({
    "crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "ConvNextImageProcessor", "resample": 3,
    "rescale_factor": 1 / 255, "size": {"shortest_edge": 224},
}, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2)
print(f"{out}: {offset // 4 / 1e6:.1f} M parameters")
