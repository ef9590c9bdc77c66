#!/usr/bin/env bash
# The bench behind docs/results-int8.md: MobileNetV2, EfficientNet-Lite0 and selfie
# segmentation quantized by `framecache quantize` (min/max ranges unless METHOD says otherwise),
# then fp32 and int8 measured in one interleaved run per clip, one thread.
#
# Calibration uses two dev clips, handheld_office_short and fast_animation_bunny (the shortest
# of their kinds: indoor handheld, animation); fidelity is reported on every dev clip, and the
# five others are held out. The int8 files are written beside copies of the float models in
# OUT_DIR/models, since `bench --precision int8` finds `NAME.int8.safetensors` beside the model.
# Usage: bench/int8.sh [OUT_DIR] [extra bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-int8}"
shift || true
data=../shared/data
method="${METHOD:-minmax}"
mkdir -p "$out/models"
models=()
for m in imagenet/mobilenet_v2 imagenet/efficientnet_lite0 mediapipe/selfie_segmentation; do
  name=$(basename "$m")
  cp "$data/models/$m.onnx" "$out/models/$name.onnx"
  cargo run --release -- quantize "$out/models/$name.onnx" --method "$method" \
    --calibrate "$data/video/handheld_office_short" "$data/video/fast_animation_bunny"
  models+=(--model "$out/models/$name.onnx")
done
clips=()
for c in static_vtest_pedestrians static_coin_motion handheld_cockatoo handheld_office_short \
         pan_city_night fast_animation_bunny driving_highway_lanes; do
  clips+=(--clip "$data/video/$c")
done
cargo run --release -- bench "${models[@]}" "${clips[@]}" --threads 1 --baseline none \
  --precision fp32,int8 --mode full,exact,threshold=8,skip=2 \
  --json "$out/bench.json" "$@" > "$out/report.md"
echo "wrote $out/report.md and $out/bench.json"
