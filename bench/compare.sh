#!/usr/bin/env bash
# Runs `modeldeck bench` and bench/pytorch_bench.py on the same model, batch, sequence length and
# thread count, one after the other, and prints their medians side by side.
#
#   bench/compare.sh MODEL_DIR [BATCH] [SEQ_LEN] [ITERS]
#
# PYTHON names an interpreter with torch + transformers (default: python3). THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/compare.sh MODEL_DIR [BATCH] [SEQ_LEN] [ITERS]}
batch=${2:-1}
seq=${3:-17}
iters=${4:-20}
threads=${THREADS:-2}
python=${PYTHON:-python3}
cargo build --release --quiet
rust=$(target/release/modeldeck bench --model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" --threads "$threads" --json)
torch=$("$python" bench/pytorch_bench.py --model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" --threads "$threads" --json)
"$python" - "$rust" "$torch" <<'PY'
import json, sys
r, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rl, tl = r["latency_ms"], t["latency_ms"]
print(f"model {r['model']}  batch {r['batch']}  seq_len {r.get('seq_len')}  threads {r['threads']}")
print(f"{'':12}{'modeldeck':>12}{'pytorch':>12}{'ratio':>8}")
for key in ("p50", "p95", "mean"):
    print(f"{key + ' ms':12}{rl[key]:12.2f}{tl[key]:12.2f}{rl[key] / tl[key]:8.2f}")
print(f"{'load ms':12}{r['load_ms']:12.1f}{t['load_ms']:12.1f}{r['load_ms'] / t['load_ms']:8.2f}")
print(f"{'inputs/s':12}{r['throughput_per_s']:12.1f}{t['throughput_per_s']:12.1f}")
PY
