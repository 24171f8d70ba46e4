#!/usr/bin/env bash
# Issue 5's targets side by side: each case runs `modeldeck bench` and bench/pytorch_bench.py in
# turn, ROUNDS times (alternating, so both sides see the same machine), and the table shows the
# best p50 of each side and their ratio, the load times and each process's resident memory after
# the runs (and at its peak, loading included), and the floating-point work of one forward pass
# (PyTorch's FlopCounterMode) over modeldeck's p50: the throughput to set against the machine's
# matmul figure (`cargo run --release --example matmul_bench`).
# On a busy machine take the best of several runs.
#
#   PYTHON=/work/venv-torch/bin/python bench/compare_all.sh
#
# MINILM (default target/fixtures/all-minilm-l6-v2), VIT, RESNET and CONVNEXT (default
# /work/bench-models/vit-b16, resnet50 and convnext-tiny, made by `pytorch_bench.py
# --make-random`) name the checkpoints; a missing one is skipped. THREADS (default 2), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
minilm=${MINILM:-target/fixtures/all-minilm-l6-v2}
vit=${VIT:-/work/bench-models/vit-b16}
resnet=${RESNET:-/work/bench-models/resnet50}
convnext=${CONVNEXT:-/work/bench-models/convnext-tiny}
[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/modeldeck}

# name model batch seq iters
cases=(
  "MiniLM-1x17|$minilm|1|17|30"
  "MiniLM-32x64|$minilm|32|64|8"
  "ViT-B/16|$vit|1|17|10"
  "ResNet-50|$resnet|1|17|20"
  "ConvNeXt-T|$convnext|1|17|20"
  "digits-v1-b1|models/digits-v1|1|17|500"
  "digits-v1-b256|models/digits-v1|256|17|200"
)
results=()
for c in "${cases[@]}"; do
  IFS='|' read -r name model batch seq iters <<<"$c"
  [ -e "$model/config.json" ] || { echo "skip $name: no $model" >&2; continue; }
  for _ in $(seq "$rounds"); do
    r=$("$bin" bench --model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" --threads "$threads" --json)
    t=$("$python" bench/pytorch_bench.py --model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" --threads "$threads" --json)
    results+=("$name|$r|$t")
  done
done
"$python" - "${results[@]}" <<'PY'
import json, sys
best = {}
order = []
for arg in sys.argv[1:]:
    name, r, t = arg.split("|", 2)
    r, t = json.loads(r), json.loads(t)
    if name not in best:
        order.append(name)
        best[name] = [float("inf")] * 8 + [t.get("flops") or 0]
    b = best[name]
    b[0] = min(b[0], r["latency_ms"]["p50"])
    b[1] = min(b[1], t["latency_ms"]["p50"])
    b[2] = min(b[2], r["load_ms"])
    b[3] = min(b[3], t["load_ms"])
    b[4] = min(b[4], r.get("peak_rss_mib") or float("nan"))
    b[5] = min(b[5], t.get("peak_rss_mib") or float("nan"))
    b[6] = min(b[6], r.get("rss_mib") or float("nan"))
    b[7] = min(b[7], t.get("rss_mib") or float("nan"))
print("| case | modeldeck p50 ms | pytorch p50 ms | ratio | GFLOP | modeldeck GFLOP/s | modeldeck load ms "
      "| pytorch load ms | modeldeck RSS MiB (peak) | pytorch RSS MiB (peak) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in order:
    m, p, lm, lp, rm, rp, nm, np_, flops = best[name]
    print(f"| {name} | {m:.3f} | {p:.3f} | {m / p:.2f} | {flops / 1e9:.3f} | {flops / m / 1e6:.0f} "
          f"| {lm:.0f} | {lp:.0f} | {nm:.0f} ({rm:.0f}) | {np_:.0f} ({rp:.0f}) |")
PY
