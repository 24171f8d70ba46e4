#!/usr/bin/env bash
# Trains the embedded demo models with `modeldeck train` and writes models/MODELS.md and
# models/metrics.json from `modeldeck eval` (nothing in them is typed by hand).
#
#   digits-v1: the compact CNN on the clean training split.
#   digits-v2: the same recipe on newer data: the training split plus a drifted copy of it
#              (brighter, washed-out, noisy, slightly rotated scans), i.e. a data update.
#   digits-shuffled: a deliberately useless model for the bad canary: a new head on digits-v2's
#              frozen features trained on shuffled labels (near chance accuracy).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
md=target/release/modeldeck
drift="brightness=0.25,contrast=0.5,noise=0.1,rotate=15"
eval_seed=7
v1=(train --data assets/digits/train --out models/digits-v1 --seed 0)
v2=(train --data assets/digits/train --out models/digits-v2 --seed 0 --add-drifted "$drift")
shuffled=(train --data assets/digits/train --out models/digits-shuffled --base models/digits-v2 --seed 0 --shuffle-labels)
rm -rf models/digits-v1 models/digits-v2 models/digits-shuffled
"$md" "${v1[@]}" --json > /dev/null
"$md" "${v2[@]}" --json > /dev/null
"$md" "${shuffled[@]}" --json > /dev/null
metrics="{}"
for m in digits-v1 digits-v2 digits-shuffled; do
  clean=$("$md" eval --model "models/$m" --data assets/digits/test --json)
  drifted=$("$md" eval --model "models/$m" --data assets/digits/test --drift "$drift" --seed "$eval_seed" --json)
  metrics=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); m[sys.argv[2]]={"clean":json.loads(sys.argv[3])["accuracy"],"drifted":json.loads(sys.argv[4])["accuracy"]}; print(json.dumps(m))' "$metrics" "$m" "$clean" "$drifted")
done
python3 - "$metrics" "$drift" "$eval_seed" "${v1[*]}" "${v2[*]}" "${shuffled[*]}" <<'PY'
import json, sys
metrics, drift, seed, v1, v2, shuffled = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
metrics_doc = {"drift": drift, "eval_seed": int(seed), "test_data": "assets/digits/test", "models": metrics}
open("models/metrics.json", "w").write(json.dumps(metrics_doc, indent=2) + "\n")
rows = "\n".join(
    f"| {name} | {m['clean'] * 100:.2f}% | {m['drifted'] * 100:.2f}% |" for name, m in metrics.items()
)
v2_cmd = v2.replace(drift, '"' + drift + '"')
open("models/MODELS.md", "w").write(f"""# Embedded demo models

Written by `scripts/make_demo_models.sh`; the numbers come from `modeldeck eval` (also in
`models/metrics.json`, which the tests check against).

digits-v1 and digits-v2 are ModelDeck's compact CNN (`ModelDeckCnnForImageClassification`: two 3x3
convolutions with 16 and 32 channels, ReLU and 2x2 max pooling, a 64-unit hidden layer, a linear
classifier; 8x8 RGB input) trained with AdamW (lr 3e-3, weight decay 1e-4, batch 32), a 15%
stratified validation split, early stopping after 8 epochs without a better validation accuracy,
seed 0, on the digits in `assets/digits` (see its README for provenance and licence).

digits-shuffled is deliberately useless, the bad model a canary should roll back: digits-v2 with
its classifier replaced by a new linear head trained on digits-v2's frozen 64-unit features with
the training labels randomly permuted (seeded) across the images, validation split included, so
nothing ties an image to its label and early stopping cannot pick an epoch by the true labels
(AdamW, lr 5e-2, otherwise as above). It has digits-v2's speed and input handling; only its
answers are bad.

| model | command | data |
| --- | --- | --- |
| digits-v1 | `modeldeck {v1}` | the 1,257 training images |
| digits-v2 | `modeldeck {v2_cmd}` | the same images plus a drifted copy of each (a data update) |
| digits-shuffled | `modeldeck {shuffled}` | the 1,257 training images with their labels shuffled |

Accuracy on the 540 test images, clean and with the drift `{drift}` injected
(`modeldeck eval --model demo:NAME --data assets/digits/test [--drift "{drift}" --seed {seed}]`):

| model | clean | drifted |
| --- | --- | --- |
{rows}
""")
print(open("models/MODELS.md").read())
PY
