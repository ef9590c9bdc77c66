#!/usr/bin/env bash
# The bench behind docs/results-approx.md: MobileNetV2 and selfie segmentation on the static,
# handheld, pan and driving clips of ../shared/data/video, engine-full vs threshold, delta and
# motion modes, one thread, in one run per motion-vector grid.
# Usage: bench/approximate.sh [OUT_DIR] [extra bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-approx}"
shift || true
data=../shared/data
clips=()
for c in static_vtest_pedestrians static_coin_motion handheld_cockatoo handheld_office_short \
         pan_city_night driving_highway_lanes; do
  clips+=(--clip "$data/video/$c")
done
for align in 2 8; do
  cargo run --release -- bench \
    --model "$data/models/imagenet/mobilenet_v2.onnx" \
    --model "$data/models/mediapipe/selfie_segmentation.onnx" \
    "${clips[@]}" --frames 60 \
    --mode full,threshold=4,threshold=8,delta=4,delta=8,motion=4,motion=8 --motion-align "$align" \
    --threads 1 --baseline none \
    --out "$out/align$align" --json "$out/align$align/bench.json" "$@"
done
