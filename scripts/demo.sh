#!/usr/bin/env bash
# Set up the environment and run the main job on the sample clip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
CLIP=${CLIP:-../shared/data/hdtf_aoc_8s.mp4}
OUT=${OUT:-outputs/hdtf_aoc_8s}
mkdir -p "$(dirname "$OUT")"
.venv/bin/dtnerf-process "$CLIP" --output-dir "$OUT/dataset"
