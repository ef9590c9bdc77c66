#!/usr/bin/env bash
# The measurements behind docs/results-kernels.md: full inference of framecache against every
# peer of ../shared/tools/peers (interleaved, same tensors) at 1 and 2 threads, framecache's and
# ONNX Runtime's per-op profiles, and the BlazePose body against ONNX Runtime.
# Usage: bench/kernels.sh OUT_DIR   (needs `bash ../shared/tools/peers/setup.sh` once)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/kernels.sh OUT_DIR}"
mkdir -p "$out"
data=../shared/data
py="${PEERS_DIR:-$HOME/.cache/framecache-peers}/venv/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/framecache/target}"
cargo build --release -p framecache --example profile
prof="$CARGO_TARGET_DIR/release/examples/profile"
declare -A onnx=([mobilenet_v2]=imagenet/mobilenet_v2 [efficientnet_lite0]=imagenet/efficientnet_lite0
  [selfie]=mediapipe/selfie_segmentation [pose_body]=mediapipe/pose_landmark_full)
for m in mobilenet_v2 efficientnet_lite0 selfie pose_body; do
  f="$data/models/${onnx[$m]}.onnx"
  for t in 1 2; do
    "$prof" "$f" "$t" --nodes > "$out/profile_${m}_t$t.txt"
    "$py" bench/ort_profile.py "$f" --threads "$t" > "$out/ort_profile_${m}_t$t.txt"
  done
  # ORT's default: its workers spin between nodes and between runs (framecache's spin within a frame).
  "$py" bench/ort_profile.py "$f" --threads 2 --spin > "$out/ort_profile_${m}_t2_spin.txt"
  if [ "$m" != pose_body ]; then
    "$py" ../shared/tools/peers/time_peers.py --model "$m" --threads 1,2 --frames 60 \
      --json "$out/peers_$m.json" > "$out/peers_$m.txt" 2>&1
  fi
done
grep -H "median" "$out"/profile_*.txt "$out"/ort_profile_*.txt
