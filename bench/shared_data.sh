#!/usr/bin/env bash
# The bench behind docs/results.md: MobileNetV2, EfficientNet-Lite0 and selfie segmentation on
# every clip of ../shared/data/video, engine full vs exact vs thresholds 4 and 8, with tract and
# ONNX Runtime as peers, one thread. Usage: bench/shared_data.sh [OUT_DIR] [extra bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-results}"
shift || true
data=../shared/data
clips=()
for c in static_vtest_pedestrians static_coin_motion handheld_cockatoo handheld_office_short \
         pan_city_night fast_animation_bunny driving_highway_lanes; do
  clips+=(--clip "$data/video/$c")
done
cargo run --release -- bench \
  --model "$data/models/imagenet/mobilenet_v2.onnx" \
  --model "$data/models/imagenet/efficientnet_lite0.onnx" \
  --model "$data/models/mediapipe/selfie_segmentation.onnx" \
  "${clips[@]}" \
  --mode full,exact,threshold=4,threshold=8 --threads 1 --baseline tract,ort \
  --out "$out" --json "$out/bench.json" "$@"
