#!/usr/bin/env bash
# Set up the environment and run the whole job on the sample clip with the CPU preset:
# process the video into a dataset, train dtnerf-small, evaluate it on the held-out frames,
# and export a talking video driven by new speech (the first 10 s of ../shared/data/speech_en_60s.wav).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
CLIP=${CLIP:-../shared/data/hdtf_aoc_8s.mp4}
SPEECH=${SPEECH:-../shared/data/speech_en_60s.wav}
SPEECH_SECONDS=${SPEECH_SECONDS:-10}
OUT=${OUT:-outputs/hdtf_aoc_8s}
for f in "$CLIP" "$SPEECH"; do
  if [ ! -f "$f" ]; then
    echo "demo: input not found: $f (set CLIP=/path/to/video.mp4 or SPEECH=/path/to/speech.wav)" >&2
    exit 1
  fi
done
mkdir -p "$OUT"
start=$SECONDS
step() { echo; echo "==> $1"; }

step "1/4 process $CLIP"
.venv/bin/dtnerf-process "$CLIP" --output-dir "$OUT/dataset"
t_process=$((SECONDS - start))

step "2/4 train dtnerf-small"
.venv/bin/ns-train dtnerf-small --data "$OUT/dataset" --output-dir "$OUT/runs" \
  --vis tensorboard --viewer.quit-on-train-completion True "$@"
CONFIG=$(ls -t "$OUT"/runs/*/dtnerf-small/*/config.yml | head -n 1)
t_train=$((SECONDS - start))

step "3/4 evaluate on the held-out frames"
.venv/bin/dtnerf-eval --load-config "$CONFIG" --output "$OUT/eval"
t_eval=$((SECONDS - start))

step "4/4 talking video driven by the first ${SPEECH_SECONDS} s of $SPEECH"
VIDEO="$OUT/talking_$(basename "${SPEECH%.*}")_${SPEECH_SECONDS}s.mp4"
.venv/bin/dtnerf-render --load-config "$CONFIG" --audio "$SPEECH" --duration "$SPEECH_SECONDS" --output "$VIDEO"
t_render=$((SECONDS - start))

echo
echo "dataset:          $OUT/dataset   (report.json, contact_sheet.png)"
echo "trained model:    $CONFIG"
echo "evaluation table: $OUT/eval/metrics.md   (metrics.json, strip.png)"
echo "talking video:    $VIDEO"
echo "watch it talk:    .venv/bin/ns-viewer --load-config $CONFIG"
echo "time: process $((t_process))s, train $((t_train - t_process))s, evaluate $((t_eval - t_train))s," \
  "render $((t_render - t_eval))s, total $((t_render))s (after set-up)"
