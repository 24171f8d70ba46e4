#!/usr/bin/env bash
# Runs the app under Xvfb, drives it with xdotool and saves PNG screenshots to docs/screenshots/:
# the Playground (the first-start sample, a gallery click, a drawn digit and a pasted 20000x200
# panorama, A and B side by side), the Models view, both themes, and the Monitor view 30 s into a
# drifting replay (charts, alerts, drift table), the Deploy view during and after a canary and the
# Evaluate view (an evaluation, a confusion cell's records, a comparison on a drifted copy and its
# disagreements), at 1280x800 and 1920x1080; edge vs cloud (a local and a served model, a canary
# between them, the Monitor), at 1280x800 (`scripts/screenshots.sh edge` takes only those); then
# the HTML reports rendered by headless Chromium.
# Needs: apt-get install -y xvfb xauth imagemagick xdotool xclip
# Coordinates match the default layout (top bar, left-anchored gallery); adjust if the UI moves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
out=docs/screenshots
mkdir -p "$out"
XDG_RUNTIME_DIR=$(mktemp -d)
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_RUNTIME_DIR
# A throwaway persistence folder, so every run starts from the demos in dark theme.
XDG_DATA_HOME=$(mktemp -d)
export XDG_DATA_HOME
# A panorama wider than any GPU texture (4 megapixels): a white bar on black, a "1" to the digits.
panorama=$(mktemp --suffix=.png)
python3 - "$panorama" <<'PY'  # ImageMagick's default policy refuses a 20000 px side
import struct, sys, zlib
w, h = 20000, 200
row = bytes([0]) + b"".join(b"\xff\xff\xff" if 9500 <= x < 10500 else b"\x00\x00\x00" for x in range(w))
blank = bytes([0]) + b"\x00" * (3 * w)
data = b"".join(row if 20 <= y < 180 else blank for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))
PY

shot() { sleep 1.5; import -window root "$out/$1.png"; echo "saved $out/$1.png"; }
click() { xdotool mousemove "$1" "$2" click 1; sleep 0.5; }
draw_seven() { # on the drawing canvas
  xdotool mousemove 40 270 mousedown 1
  for p in "80 268" "130 268" "140 272" "120 320" "100 360" "90 395"; do xdotool mousemove $p; sleep 0.05; done
  xdotool mouseup 1; sleep 0.3; xdotool mousemove 600 700
}

evaluate_shots() { # size window: the Evaluate view on the shipped digits test split
  local size=$1 win=$2
  click 445 12 # Evaluate tab
  click 77 67 # Evaluate A (digits-v1)
  sleep 2
  shot "evaluate-a-$size"
  click 106 490 # the confusion cell "label 2, predicted 1"
  xdotool mousemove 400 600; for _ in $(seq 1 8); do xdotool click 5; done
  shot "evaluate-confusion-cell-$size"
  xdotool windowfocus --sync "$win"
  click 510 44 # the drift field
  xdotool type --delay 30 "contrast=0.5,noise=0.1"; xdotool key Tab
  click 354 67 # Compare A and B
  sleep 3
  xdotool mousemove 640 $((${size#*x} - 25))
  shot "evaluate-compare-drift-$size"
  xdotool mousemove 400 600; for _ in $(seq 1 7); do xdotool click 5; done
  shot "evaluate-disagreements-$size"
}

run_at() { # width height
  local w=$1 h=$2 size="$1x$2"
  Xvfb :99 -screen 0 "${w}x${h}x24" >/dev/null 2>&1 &
  local xvfb=$!
  sleep 1
  DISPLAY=:99 target/release/modeldeck gui >/tmp/modeldeck-gui.log 2>&1 &
  local app=$!
  export DISPLAY=:99
  local win
  win=$(xdotool search --sync --name ModelDeck | head -1)
  xdotool windowmove "$win" 0 0 windowsize "$win" "$w" "$h"
  sleep 3
  shot "playground-first-start-$size"
  click 443 128 # gallery: digit 3
  shot "playground-gallery-$size"
  draw_seven
  shot "playground-drawing-$size"
  xclip -selection clipboard -t image/png -i "$panorama" &
  sleep 0.5
  xdotool windowfocus --sync "$win" key ctrl+v
  shot "playground-pasted-panorama-$size"
  click 240 12 # Models tab
  shot "models-$size"
  click $((w - 52)) 12 # theme toggle
  shot "models-light-$size"
  click 161 12 # Playground tab
  shot "playground-light-$size"
  click $((w - 52)) 12 # back to dark
  click 308 12 # Monitor tab
  click 186 145 # time charts: last minute
  click 1022 44 # Start replay (demo digits, 50 req/s, brightness drift from request 600)
  sleep 30
  shot "monitor-drift-$size"
  xdotool mousemove 640 600
  for _ in $(seq 1 9); do xdotool click 5; done # down to the drift table
  shot "monitor-drift-table-$size"
  click 376 12 # Deploy tab
  click 30 113 # Start: a canary of B (digits-v2) on drifted digits at 400 req/s
  sleep 15
  for _ in 1 2 3 4; do click 891 115; click 891 100; done # dismiss the Monitor's alert toasts
  xdotool mousemove 640 $((h - 25))
  shot "deploy-canary-$size"
  sleep 8
  click 760 634 # the third decision: its evidence
  xdotool mousemove 640 $((h - 25))
  shot "deploy-canary-evidence-$size"
  evaluate_shots "$size" "$win"
  kill "$app" 2>/dev/null || true
  wait "$app" 2>/dev/null || true
  kill "$xvfb" 2>/dev/null || true
  wait "$xvfb" 2>/dev/null || true
}
edge_cloud_shots() { # edge vs cloud at 1280x800: slot A runs digits-v1 here, slot B is digits-v2
  # behind `modeldeck serve` (another process, reached over HTTP with the Open Inference Protocol).
  target/release/modeldeck serve --model demo:digits-v2 --name digits-v2 --addr 127.0.0.1:18432 --no-log \
    >/tmp/modeldeck-serve.log 2>&1 &
  local serve=$!
  Xvfb :99 -screen 0 1280x800x24 >/dev/null 2>&1 &
  local xvfb=$!
  sleep 1
  export DISPLAY=:99
  target/release/modeldeck gui --a demo:digits-v1 --b oip+http://127.0.0.1:18432/digits-v2 >/tmp/modeldeck-gui.log 2>&1 &
  local app=$!
  local win
  win=$(xdotool search --sync --name ModelDeck | head -1)
  xdotool windowmove "$win" 0 0 windowsize "$win" 1280 800
  sleep 4
  click 443 128 # gallery: digit 3, to both
  shot "edge-cloud-playground-1280x800"
  click 240 12 # Models: the remote card
  shot "edge-cloud-models-1280x800"
  click 376 12 # Deploy
  click 30 113 # Start the canary of B (remote) against A (local)
  sleep 20
  for _ in 1 2 3 4; do click 891 115; click 891 100; done # dismiss the alert toasts
  xdotool mousemove 640 775
  shot "edge-cloud-canary-1280x800"
  click 308 12 # Monitor: both arms' latency
  click 186 145 # last minute
  for _ in 1 2 3 4; do click 891 115; click 891 100; done
  xdotool mousemove 640 775
  shot "edge-cloud-monitor-1280x800"
  kill "$app" "$serve" 2>/dev/null || true
  wait "$app" "$serve" 2>/dev/null || true
  kill "$xvfb" 2>/dev/null || true
  wait "$xvfb" 2>/dev/null || true
}
if [ "${1:-}" = edge ]; then
  edge_cloud_shots
  exit 0
fi
run_at 1280 800
run_at 1920 1080
edge_cloud_shots

# The HTML reports of an evaluation and a comparison, rendered by headless Chromium.
if command -v chromium >/dev/null; then
  tmp=$(mktemp -d)
  target/release/modeldeck eval --model demo:digits-v1 --data assets/digits/test --report "$tmp/evaluation.html" >/dev/null
  target/release/modeldeck compare --a demo:digits-v1 --b demo:digits-v2 --data assets/digits/test \
    --drift contrast=0.5,noise=0.1 --report "$tmp/comparison.html" >/dev/null
  for name in evaluation comparison; do
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp/profile" \
      --screenshot="$out/report-$name.png" --window-size=1280,2400 "file://$tmp/$name.html" 2>/dev/null
    echo "saved $out/report-$name.png"
  done
  rm -rf "$tmp"
fi
