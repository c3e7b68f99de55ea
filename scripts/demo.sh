#!/usr/bin/env bash
# Set up the environment and run the main job on the sample clip:
# process the video into a dataset, then train dtnerf-small on it (CPU, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
CLIP=${CLIP:-../shared/data/hdtf_aoc_8s.mp4}
OUT=${OUT:-outputs/hdtf_aoc_8s}
if [ ! -f "$CLIP" ]; then
  echo "demo: sample clip not found: $CLIP (set CLIP=/path/to/video.mp4)" >&2
  exit 1
fi
mkdir -p "$OUT"
.venv/bin/dtnerf-process "$CLIP" --output-dir "$OUT/dataset"
.venv/bin/ns-train dtnerf-small --data "$OUT/dataset" --output-dir "$OUT/runs" \
  --vis tensorboard --viewer.quit-on-train-completion True "$@"
CONFIG=$(ls -t "$OUT"/runs/*/dtnerf-small/*/config.yml | head -n 1)
echo
echo "dataset:       $OUT/dataset   (report.json, contact_sheet.png)"
echo "trained model: $CONFIG"
echo "watch it talk: .venv/bin/ns-viewer --load-config $CONFIG"
