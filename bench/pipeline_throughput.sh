#!/usr/bin/env bash
# The batch pipeline (decode + preprocess on workers while the model runs) against the model alone
# (`bench --data`: the same records and batch size, all decoded first, forward passes only).
# Alternating rounds, best of each (the machine is noisy).
#   bench/pipeline_throughput.sh MODEL DATA BATCH [ROUNDS]
set -euo pipefail
model=$1 data=$2 batch=$3 rounds=${4:-3}
bin=${MODELDECK:-target/release/modeldeck}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
best_model=0 best_pipe=0
for r in $(seq "$rounds"); do
  m=$("$bin" bench --model "$model" --data "$data" --batch "$batch" --rounds 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["throughput_per_s"])')
  p=$("$bin" batch --model "$model" --input "$data" --output "$out/answers.csv" --overwrite --no-log --batch-size "$batch" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["throughput_per_s"])')
  echo "round $r: model alone $m/s, pipeline $p/s" >&2
  best_model=$(python3 -c "print(max($best_model, $m))")
  best_pipe=$(python3 -c "print(max($best_pipe, $p))")
done
python3 -c "print(f'$model on $data, batch $batch: model alone {$best_model:.1f}/s, pipeline {$best_pipe:.1f}/s = {100*$best_pipe/$best_model:.1f}% (best of $rounds rounds)')"
