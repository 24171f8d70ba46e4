#!/usr/bin/env bash
# A real Prometheus server scrapes ModelDeck's metrics endpoint while traffic flows, and its
# HTTP API must return ModelDeck series. Installs nothing: needs `prometheus` on PATH (Debian:
# `apt-get install -y prometheus`), curl and python3.
#
# Usage: scripts/prometheus_smoke.sh [COMMAND]
#   COMMAND runs under `bash -c` with METRICS_ADDR set to the address it must serve metrics on,
#   for example:  scripts/prometheus_smoke.sh \
#     'target/release/modeldeck monitor --model M --data D --metrics-addr "$METRICS_ADDR"'
#   Default: `modeldeck monitor` replaying the demo digits to demo:digits-v1 at 200 requests/s,
#   with brightness drift from request 600 (the binary is built here if missing).
# Ports: METRICS_PORT (default 19464) and PROM_PORT (default 19090), both on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
METRICS_PORT="${METRICS_PORT:-19464}"
PROM_PORT="${PROM_PORT:-19090}"
export METRICS_ADDR="127.0.0.1:${METRICS_PORT}"
PROM_URL="http://127.0.0.1:${PROM_PORT}"
WAIT_S="${WAIT_S:-60}"

for tool in prometheus curl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAIL: $tool is not on PATH (Debian: apt-get install -y $tool)" >&2
        exit 1
    fi
done
for port in "$METRICS_PORT" "$PROM_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "FAIL: port $port on 127.0.0.1 is already in use; set METRICS_PORT / PROM_PORT" >&2
        exit 1
    fi
done

if [[ $# -gt 0 ]]; then
    COMMAND="$*"
else
    BIN=target/release/modeldeck
    if [[ ! -x "$BIN" ]]; then
        cargo build --release --bin modeldeck
    fi
    COMMAND="$BIN monitor --model demo:digits-v1 --data assets/digits/test --loop --rate 200 \
        --drift brightness=-0.5@600+300 --label-delay 1s --every 5s --metrics-addr \"\$METRICS_ADDR\""
fi

TMP="$(mktemp -d -t modeldeck-prometheus-XXXXXX)"
PIDS=()
cleanup() {
    local status=$?
    # Each child leads its own process group (setsid), so a COMMAND that forks is ended too.
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        echo "--- ModelDeck output (last 20 lines) ---" >&2
        tail -n 20 "$TMP/modeldeck.log" >&2 2>/dev/null || true
        echo "--- Prometheus output (last 20 lines) ---" >&2
        tail -n 20 "$TMP/prometheus.log" >&2 2>/dev/null || echo "(not started)" >&2
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT INT TERM

echo "ModelDeck: $COMMAND (METRICS_ADDR=$METRICS_ADDR)"
setsid bash -c "$COMMAND" >"$TMP/modeldeck.log" 2>&1 &
PIDS+=($!)

deadline=$((SECONDS + WAIT_S))
until curl -sf "http://$METRICS_ADDR/metrics" -o /dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "${PIDS[0]}" 2>/dev/null; then
        echo "FAIL: nothing answers at http://$METRICS_ADDR/metrics" >&2
        exit 1
    fi
    sleep 0.5
done
echo "ModelDeck serves http://$METRICS_ADDR/metrics"

cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: modeldeck
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['$METRICS_ADDR']
YAML
setsid prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
echo "Prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}') at $PROM_URL, scraping every 1 s"

# Prints the query's vector as "labels value" lines; exits non-zero when it is empty.
query() {
    curl -sf --get "$PROM_URL/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
body = json.load(sys.stdin)
result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
for series in result:
    labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
    print(f"  {{{labels}}} {series['"'"'value'"'"'][1]}")
sys.exit(0 if result else 1)'
}

deadline=$((SECONDS + WAIT_S))
until query 'modeldeck_predictions_total' >"$TMP/result.txt" 2>/dev/null; do
    if ((SECONDS > deadline)); then
        echo "FAIL: Prometheus has no modeldeck_predictions_total after ${WAIT_S} s" >&2
        exit 1
    fi
    if ! kill -0 "${PIDS[1]}" 2>/dev/null; then
        echo "FAIL: Prometheus exited" >&2
        exit 1
    fi
    sleep 1
done
echo "modeldeck_predictions_total:"
cat "$TMP/result.txt"

# A few scrapes later, rates and the latency histogram are queryable too.
sleep 5
echo "up{job=\"modeldeck\"}:"
query 'up{job="modeldeck"}'
echo "rate(modeldeck_predictions_total[5s]):"
query 'rate(modeldeck_predictions_total[5s])'
echo "histogram_quantile(0.95, rate(modeldeck_prediction_latency_seconds_bucket[5s])):"
query 'histogram_quantile(0.95, rate(modeldeck_prediction_latency_seconds_bucket[5s]))'
echo "modeldeck_process_resident_memory_bytes:"
query 'modeldeck_process_resident_memory_bytes'
echo "PASS: Prometheus scraped ModelDeck and answers queries for its series"
