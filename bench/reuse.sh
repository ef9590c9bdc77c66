#!/usr/bin/env bash
# The bench behind docs/results-reuse.md: MobileNetV2, EfficientNet-Lite0 and selfie
# segmentation on every dev clip of ../shared/data/video, every cached preset against the
# baselines to beat (skip-N, gate) and the noise floor, one thread, one run; then the BlazePose
# bundle (per-head fidelity and skip-2) per cached preset on the same clips.
# Usage: bench/reuse.sh [OUT_DIR] [extra bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-reuse}"
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
  "${clips[@]}" --threads 1 --baseline none \
  --mode full,exact,threshold=8,block-threshold=8,threshold=16,block-threshold=16,delta=8,block-delta=8,block-delta=16,block-delta=32,skip=2,skip=3,skip=4,skip=8,gate=2,gate=4 \
  --out "$out" --json "$out/bench.json" "$@"
cargo run --release -- bench --bundle assets/bundles/blazepose.toml \
  --clip "$data/video/static_vtest_pedestrians" --clip "$data/video/handheld_office_short" \
  --clip "$data/video/static_coin_motion" --clip "$data/video/handheld_cockatoo" \
  --threads 1 --baseline none --mode block-threshold=8,threshold=8,delta=8,block-delta=8,block-delta=32 \
  --out "$out/blazepose" --json "$out/blazepose/bench.json" "$@"
