#!/usr/bin/env bash
# The runs behind docs/results-compress.md: MobileNetV2 and selfie segmentation compressed by
# weight clustering, the wavelet input, structured pruning and quantization-aware training,
# with int8 on top of clustering and of pruning, each measured
# against its source by `framecache bench --variant` on the same frames in one run.
# Calibration and fitting use two dev clips (pan_city_night, fast_animation_bunny); the other
# five are held out and measured. Usage: bench/compress.sh [OUT_DIR] (MODELS="imagenet/mobilenet_v2"
# for one model).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/compress}"
data=../shared/data
v="$data/video"
calib=("$v/pan_city_night" "$v/fast_animation_bunny")
held=(static_vtest_pedestrians static_coin_motion handheld_cockatoo handheld_office_short driving_highway_lanes)
mkdir -p "$out"
cargo build --release --locked
fc=("${CARGO_TARGET_DIR:-target}/release/framecache")

for m in ${MODELS:-imagenet/mobilenet_v2 mediapipe/selfie_segmentation}; do
  src="$data/models/$m.onnx"
  n=$(basename "$m")
  run() { local name="$1"; shift; /usr/bin/time -f "$name: %e s" "${fc[@]}" compress "$src" --out "$out/$n.$name.safetensors" "$@"; }
  run cluster --method cluster --calibrate "${calib[@]}"
  run cluster-nobc --method cluster
  run cluster-e02 --method cluster --max-error 0.02 --calibrate "${calib[@]}"
  run cluster-k32 --method cluster --centroids 32 --calibrate "${calib[@]}"
  run wavelet --method wavelet
  run prune --method prune --ratio 0.4 --calibrate "${calib[@]}"
  run wavelet-lh-hl --method wavelet --bands LL,LH,HL --fit "${calib[@]}"
  run wavelet-ll --method wavelet --bands LL --fit "${calib[@]}"
  run wavelet-ll-nofit --method wavelet --bands LL
  /usr/bin/time -f "quantize: %e s" "${fc[@]}" quantize "$out/$n.cluster.safetensors" --calibrate "${calib[@]}" \
    --out "$out/$n.cluster.int8.safetensors"
  /usr/bin/time -f "quantize: %e s" "${fc[@]}" quantize "$src" --calibrate "${calib[@]}" --out "$out/$n.int8.safetensors"
  /usr/bin/time -f "quantize: %e s" "${fc[@]}" quantize "$out/$n.prune.safetensors" --calibrate "${calib[@]}" \
    --out "$out/$n.prune.int8.safetensors"
  run qat --method qat --calibrate "${calib[@]}" --epochs 5
  variants=()
  for f in cluster cluster-nobc cluster-e02 cluster-k32 wavelet wavelet-lh-hl wavelet-ll wavelet-ll-nofit prune \
    cluster.int8 prune.int8 int8 qat; do
    variants+=(--variant "$out/$n.$f.safetensors")
  done
  clips=()
  for c in "${held[@]}"; do clips+=(--clip "$v/$c"); done
  "${fc[@]}" bench --model "$src" "${variants[@]}" "${clips[@]}" --mode full,skip=2 --baseline none \
    --threads 1 --json "$out/$n.bench.json" --out "$out/$n.bench" > "$out/$n.bench.md"
done

# Accuracy against the label of the labelled clip (handheld_cockatoo: ImageNet class 89 in
# every frame, ../shared/data/README.md), for MobileNetV2 and each of its compressed forms.
if [ -f "$out/mobilenet_v2.cluster.safetensors" ]; then
  mkdir -p "$out/labels"
  echo '{"class": 89}' > "$out/labels/handheld_cockatoo.labels.json"
  variants=()
  for f in cluster cluster-nobc cluster-e02 cluster-k32 wavelet wavelet-lh-hl wavelet-ll wavelet-ll-nofit prune \
    cluster.int8 prune.int8 int8; do
    variants+=(--variant "$out/mobilenet_v2.$f.safetensors")
  done
  "${fc[@]}" bench --model "$data/models/imagenet/mobilenet_v2.onnx" "${variants[@]}" --clip "$v/handheld_cockatoo" \
    --reference "$out/labels" --mode full --baseline none --threads 1 --json "$out/labelled.json" > "$out/labelled.md"
fi
