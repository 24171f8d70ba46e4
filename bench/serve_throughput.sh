#!/usr/bin/env bash
# `modeldeck serve` against the same model in process, and MLServer against `modeldeck serve`,
# measured with one client (`modeldeck loadtest`) on this machine.
#
#   bench/serve_throughput.sh [SECONDS_PER_LEVEL]
#
# For demo:digits-v1 (the shipped test split) and all-MiniLM-L6-v2 (assets/text/reviews.csv):
#   - in process: `loadtest --model M` at 1, 8, 32 concurrent callers (batch 1) and 1 caller x 32;
#   - served: `modeldeck serve --model M`, then the same loadtest against oip+http://…
# Then MLServer 1.7.1 serving the scikit-learn digits classifier (scripts/mlserver_digits.py)
# against `modeldeck serve` serving digits-v1, same client, same levels. The client and the
# server share the machine's cores, as they would on one edge box. The remote sources allow 32
# requests in flight (?concurrency=32; the default is 8).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}s"
BIN=target/release/modeldeck
cargo build --release -q
MINILM="${MODELDECK_MINILM_DIR:-target/fixtures/all-minilm-l6-v2}"
[ -f "$MINILM/model.safetensors" ] || bash scripts/fetch_minilm.sh
PORT=18431
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

levels() { # MODEL DATA LABEL
  echo "## $3"
  "$BIN" loadtest --model "$1" --data "$2" --concurrency 1,8,32 --batch 1 --duration "$SECS"
  "$BIN" loadtest --model "$1" --data "$2" --concurrency 1 --batch 32 --duration "$SECS"
}

serve() { # MODEL NAME
  "$BIN" serve --model "$1" --name "$2" --addr "127.0.0.1:$PORT" --no-log >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && return; sleep 0.1; done
  echo "serve did not start" >&2; exit 1
}

for case in "demo:digits-v1|assets/digits/test|digits" "$MINILM|assets/text/reviews.csv|minilm"; do
  IFS='|' read -r model data name <<<"$case"
  levels "$model" "$data" "$name in process"
  serve "$model" "$name"
  levels "oip+http://127.0.0.1:$PORT/$name?concurrency=32" "$data" "$name behind modeldeck serve"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done

PY="$(bash scripts/peers_venv.sh | tail -1)/bin/python"
DIR="$(mktemp -d)"
"$PY" scripts/mlserver_digits.py train "$DIR" >/dev/null
"$PY" scripts/mlserver_digits.py serve "$DIR" "$PORT" 2>/dev/null | { read -r _; cat >/dev/null; } &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/v2/models/digits-sklearn/ready" >/dev/null && break; sleep 0.2; done
levels "oip+http://127.0.0.1:$PORT/digits-sklearn?preprocessor=models/digits-v1/preprocessor_config.json&concurrency=32" assets/digits/test "scikit-learn digits behind MLServer 1.7.1"
