#!/usr/bin/env bash
# The recipe behind docs/results-distill.md: a person-segmentation head distilled from
# MediaPipe's selfie segmentation onto MobileNetV2's stride-16 (context) and stride-4 (detail)
# features, trained on the footage of bench/distill_footage.py plus four dev clips without
# people (negatives), held out: static_vtest_pedestrians, megamind_b, handheld_office_short.
# Usage: bench/distill.sh FOOTAGE_DIR [OUT_DIR] [extra distill args]
set -euo pipefail
cd "$(dirname "$0")/.."
footage="$1"
out="${2:-target/distill}"
shift 2 || shift $#
data=../shared/data
mkdir -p "$out"
cargo run --release -- distill \
  --teacher "$data/models/mediapipe/selfie_segmentation.onnx" \
  --backbone "$data/models/imagenet/mobilenet_v2.onnx" \
  --tap features.13.add.out --tap features.3.add.out --upsample 0 --copies 3 --epochs 30 \
  --train "$footage/vtest_rest" "$footage/megamind_a" "$footage/people_photos" \
          "$data/video/static_coin_motion" "$data/video/handheld_cockatoo" \
          "$data/video/pan_city_night" "$data/video/fast_animation_bunny" \
  --holdout "$data/video/static_vtest_pedestrians" "$footage/megamind_b" "$data/video/handheld_office_short" \
  --out "$out/person.head.safetensors" "$@"
