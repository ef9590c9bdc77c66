#!/usr/bin/env bash
# The recipes behind docs/results-distill.md, both on MobileNetV2's stride-16 (context) and
# stride-4 (detail) features, with MobileNetV2 run at 288x160 (a 16:9 frame with its aspect kept,
# as assets/bundles/mobilenet_v2_shared.toml runs it):
# - a person-segmentation head distilled from MediaPipe's selfie segmentation, trained on the
#   footage of bench/distill_footage.py plus four dev clips without people (negatives), held
#   out: static_vtest_pedestrians, megamind_b, handheld_office_short;
# - a face head distilled from BlazeFace's boxes (the `faces` head of assets/bundles/people.toml),
#   trained on megamind_a and fast_animation_bunny (the footage where BlazeFace finds faces) and
#   six clips with few or none, held out: megamind_b, handheld_office_short,
#   static_vtest_pedestrians.
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
  --input-size 288x160 --tap features.13.add.out --tap features.3.add.out --upsample 0 --copies 3 --epochs 30 \
  --train "$footage/vtest_rest" "$footage/megamind_a" "$footage/people_photos" \
          "$data/video/static_coin_motion" "$data/video/handheld_cockatoo" \
          "$data/video/pan_city_night" "$data/video/fast_animation_bunny" \
  --holdout "$data/video/static_vtest_pedestrians" "$footage/megamind_b" "$data/video/handheld_office_short" \
  --out "$out/person.head.safetensors" "$@"
cargo run --release -- distill \
  --teacher assets/bundles/people.toml --teacher-output faces \
  --backbone "$data/models/imagenet/mobilenet_v2.onnx" \
  --input-size 288x160 --tap features.13.add.out --tap features.3.add.out --upsample 0 --copies 3 --epochs 30 \
  --train "$footage/megamind_a" "$data/video/fast_animation_bunny" "$footage/vtest_rest" "$footage/photos" \
          "$footage/people_photos" "$data/video/static_coin_motion" "$data/video/handheld_cockatoo" \
          "$data/video/pan_city_night" \
  --holdout "$footage/megamind_b" "$data/video/handheld_office_short" "$data/video/static_vtest_pedestrians" \
  --out "$out/face.head.safetensors" "$@"
