#!/usr/bin/env bash
# The desktop app's resident memory with the demo models loaded, measured from outside by /proc:
# starts `modeldeck gui` under Xvfb with a fresh settings folder (so slots A and B load the demos
# digits-v1 and digits-v2), waits, reads VmRSS and the proportional set size (Pss, shared library
# pages divided among their users), predicts one gallery sample in both slots and reads again.
# Needs: apt-get install -y xvfb xdotool mesa-vulkan-drivers.   BIN= runs an already built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/modeldeck}
XDG_RUNTIME_DIR=$(mktemp -d)
chmod 700 "$XDG_RUNTIME_DIR"
XDG_DATA_HOME=$(mktemp -d)
export XDG_RUNTIME_DIR XDG_DATA_HOME
Xvfb :98 -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=:98 "$bin" gui >/tmp/modeldeck-app-memory.log 2>&1 &
app=$!
win=$(DISPLAY=:98 xdotool search --sync --name ModelDeck | head -1)
DISPLAY=:98 xdotool windowmove "$win" 0 0 windowsize "$win" 1280 800
report() {
  local rss pss
  rss=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$app/status")
  pss=$(awk '/^Pss:/ {printf "%.0f", $2 / 1024}' "/proc/$app/smaps_rollup")
  echo "$1: RSS $rss MiB, PSS $pss MiB"
}
sleep 8
report "idle, demos loaded"
DISPLAY=:98 xdotool mousemove 443 128 click 1 # gallery: digit 3, predicted by A and B
sleep 4
report "after predicting a sample in A and B"
sleep 10
report "idle 10 s later"
# SHOT=file.png saves the screen, to check that the demos loaded and answered.
[ -z "${SHOT:-}" ] || DISPLAY=:98 import -window root "$SHOT"
