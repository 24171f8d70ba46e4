#!/usr/bin/env bash
# ModelDeck, PyTorch and ONNX Runtime side by side: each case runs `modeldeck bench`,
# bench/pytorch_bench.py and bench/onnx_bench.py in turn, ROUNDS times (alternating, so all three
# see the same machine), and the table shows the best p50 of each and ModelDeck's ratio to each,
# the load times and each process's resident memory after the runs (and at its peak, loading
# included), and the floating-point work of one forward pass (PyTorch's FlopCounterMode) over
# modeldeck's p50: the throughput to set against the machine's matmul figure (`cargo run
# --release --example matmul_bench`). On a busy machine take the best of several runs.
#
#   PYTHON=/work/venv-torch/bin/python bench/compare_all.sh
#   PRECISION=int8 PYTHON=/work/venv-torch/bin/python bench/compare_all.sh
#
# PRECISION (f32, bf16 or int8; default f32) goes to all three: modeldeck's --precision,
# PyTorch's bf16 cast or quantize_dynamic on nn.Linear, ONNX Runtime's quantize_dynamic (ONNX
# Runtime has no bf16 CPU path: its column is empty for bf16). The venv needs torch,
# transformers, onnx, onnxscript and onnxruntime (NO_ORT=1 leaves ONNX Runtime out).
# MINILM (default target/fixtures/all-minilm-l6-v2), VIT, RESNET, CONVNEXT, DEBERTA, MODERNBERT and
# SIGLIP (default /work/bench-models/vit-b16, resnet50, convnext-tiny, deberta-v3-base,
# modernbert-base and siglip-base, made by `pytorch_bench.py --make-random`) name the
# checkpoints; a missing one is skipped. THREADS (default 2), ROUNDS
# (default 3), CASES (a regular expression over the case names, default all).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
precision=${PRECISION:-f32}
only=${CASES:-.}
minilm=${MINILM:-target/fixtures/all-minilm-l6-v2}
vit=${VIT:-/work/bench-models/vit-b16}
resnet=${RESNET:-/work/bench-models/resnet50}
convnext=${CONVNEXT:-/work/bench-models/convnext-tiny}
deberta=${DEBERTA:-/work/bench-models/deberta-v3-base}
modernbert=${MODERNBERT:-/work/bench-models/modernbert-base}
siglip=${SIGLIP:-/work/bench-models/siglip-base}
[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/modeldeck}

# name model batch seq iters
cases=(
  "MiniLM-1x17|$minilm|1|17|30"
  "MiniLM-32x64|$minilm|32|64|8"
  "ViT-B/16|$vit|1|17|10"
  "ResNet-50|$resnet|1|17|20"
  "ConvNeXt-T|$convnext|1|17|20"
  "DeBERTa-v3-base-1x17|$deberta|1|17|20"
  "DeBERTa-v3-base-8x128|$deberta|8|128|5"
  "ModernBERT-base-1x17|$modernbert|1|17|20"
  "ModernBERT-base-8x128|$modernbert|8|128|5"
  "SigLIP-B/16|$siglip|1|17|10"
  "digits-v1-b1|models/digits-v1|1|17|500"
  "digits-v1-b256|models/digits-v1|256|17|200"
)
results=()
for c in "${cases[@]}"; do
  IFS='|' read -r name model batch seq iters <<<"$c"
  [[ "$name" =~ $only ]] || continue
  [ -e "$model/config.json" ] || { echo "skip $name: no $model" >&2; continue; }
  common=(--model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" --threads "$threads" --precision "$precision" --json)
  for _ in $(seq "$rounds"); do
    r=$("$bin" bench "${common[@]}")
    t=$("$python" bench/pytorch_bench.py "${common[@]}")
    o=null
    if [ "$precision" != bf16 ] && [ -z "${NO_ORT:-}" ]; then
      # A family onnx_bench.py does not export (SigLIP) or torch.onnx cannot trace leaves the
      # column empty instead of stopping the run.
      o=$("$python" bench/onnx_bench.py "${common[@]}" 2>/dev/null) || o=null
    fi
    results+=("$name|$r|$t|$o")
  done
done
"$python" - "${results[@]}" <<'PY'
import json, sys
best, order, fidelity = {}, [], {}
inf, nan = float("inf"), float("nan")
for arg in sys.argv[1:]:
    name, r, t, o = arg.split("|", 3)
    r, t, o = json.loads(r), json.loads(t), json.loads(o)
    if name not in best:
        order.append(name)
        best[name] = {"p50": [inf] * 3, "load": [inf] * 3, "rss": [inf] * 3, "peak": [inf] * 3,
                      "flops": t.get("flops") or 0}
    b = best[name]
    for i, x in enumerate((r, t, o)):
        if x is None:
            continue
        b["p50"][i] = min(b["p50"][i], x["latency_ms"]["p50"])
        b["load"][i] = min(b["load"][i], x["load_ms"])
        b["rss"][i] = min(b["rss"][i], x.get("rss_mib") or nan)
        b["peak"][i] = min(b["peak"][i], x.get("peak_rss_mib") or nan)
    if o is not None and "fidelity" in o:
        fidelity[name] = o["fidelity"]

def ms(v):
    return "" if v == inf else f"{v:.3f}" if v < 10 else f"{v:.1f}"

def ratio(a, b):
    return "" if inf in (a, b) else f"{a / b:.2f}"

print("| case | modeldeck p50 ms | pytorch p50 ms | onnxruntime p50 ms | vs pytorch | vs onnxruntime | GFLOP "
      "| modeldeck GFLOP/s | load ms (md / pt / ort) | RSS MiB, peak (md / pt / ort) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in order:
    b = best[name]
    m, p, o = b["p50"]
    loads = " / ".join("" if v == inf else f"{v:.0f}" for v in b["load"])
    rss = " / ".join("" if v == inf else f"{v:.0f} ({k:.0f})" for v, k in zip(b["rss"], b["peak"]))
    gflops = f"{b['flops'] / m / 1e6:.0f}" if b["flops"] and m != inf else ""
    # No count (PyTorch's FlopCounterMode cannot trace DeBERTa) leaves the cell empty.
    gflop = f"{b['flops'] / 1e9:.3f}" if b["flops"] else ""
    print(f"| {name} | {ms(m)} | {ms(p)} | {ms(o)} | {ratio(m, p)} | {ratio(m, o)} | {gflop} "
          f"| {gflops} | {loads} | {rss} |")
for name, f in fidelity.items():
    print(f"onnxruntime int8 fidelity against its f32 on {name}: {f}")
PY
