#!/usr/bin/env bash
# The reproduction study of docs/reproduction.md, end to end and resumable (rerun the same line after a kill).
# Usage: scripts/reproduce.sh [extra `medflip study run` flags, e.g. --seeds 0 --jobs 1]
set -euo pipefail
ROOT=${KERMANY_ROOT:-../shared/data/kermany-pneumonia}
OUT=${OUT:-runs/study}
if [ ! -f "$OUT/cache128/meta.json" ]; then
  medflip data import kermany --root "$ROOT" --out "$OUT/manifest.csv"
  medflip data split "$OUT/manifest.csv" --fractions 0.7,0.15,0.15 --seed 0 --overwrite
  medflip data cache "$OUT/manifest.csv" --size 128 --out "$OUT/cache128"
fi
medflip study run --out "$OUT" --cache "$OUT/cache128" "$@"
medflip study report --out "$OUT" --doc docs/reproduction.md --img docs/img --seeds "${SEEDS:-0,1,2}"
