#!/usr/bin/env bash
# Runs the app under Xvfb, drives it to each view with xdotool and saves PNG screenshots to
# docs/screenshots/ (light and dark themes, 1280x800 and 1920x1080).
# Needs: apt-get install -y xvfb xauth imagemagick xdotool mesa-vulkan-drivers libvulkan1
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
out=docs/screenshots
mkdir -p "$out"
export XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"
# A throwaway persistence folder, so runs start from the demos.
export XDG_DATA_HOME=$(mktemp -d) HOME_BACKUP=$HOME
shot() { # name
  sleep 1.5
  import -window root "$out/$1.png"
  echo "saved $out/$1.png"
}
click() { xdotool mousemove "$1" "$2" click 1; sleep 0.4; }

run_at() { # width height suffix
  local w=$1 h=$2 suffix=$3
  Xvfb :99 -screen 0 "${w}x${h}x24" >/dev/null 2>&1 &
  local xvfb=$!
  sleep 1
  DISPLAY=:99 target/release/modeldeck gui >/tmp/modeldeck-gui.log 2>&1 &
  local app=$!
  sleep 4
  export DISPLAY=:99
  local win
  win=$(xdotool search --sync --name ModelDeck | head -1)
  xdotool windowsize "$win" "$w" "$h"; xdotool windowmove "$win" 0 0; sleep 1
  # Playground: pick the gallery's "digit 3" thumbnail (found by position of the gallery row).
  shot "playground-$suffix"
  if [ -n "${GALLERY_X:-}" ]; then click "$GALLERY_X" "$GALLERY_Y"; shot "playground-prediction-$suffix"; fi
  # Models tab: the second tab button in the top bar.
  click "${MODELS_X:-190}" "${TAB_Y:-18}"; shot "models-$suffix"
  # Theme toggle: top right.
  click "$((w - 60))" "${TAB_Y:-18}"; shot "models-other-theme-$suffix"
  click "${PLAYGROUND_X:-110}" "${TAB_Y:-18}"; shot "playground-other-theme-$suffix"
  kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true
  kill "$xvfb" 2>/dev/null || true; wait "$xvfb" 2>/dev/null || true
}
run_at 1280 800 1280x800
run_at 1920 1080 1920x1080
