#!/usr/bin/env bash
# Builds ios/build/FrameCacheFFI.xcframework (device arm64 + simulator arm64) from engine/ffi,
# with the committed header and a module map, for the Swift package, and compiles the bundle the
# app runs (MobileNetV2's classes and its distilled person mask) into the one file the library
# loads (ios/build/mobilenet_v2_shared.fcbundle, an app resource).
# Needs macOS with Xcode and `rustup target add aarch64-apple-ios aarch64-apple-ios-sim`.
set -euo pipefail
cd "$(dirname "$0")/.."
for target in aarch64-apple-ios aarch64-apple-ios-sim; do
  cargo rustc -p framecache-ffi --lib --crate-type staticlib --profile phone --no-default-features \
    --target "$target" --locked
done
mkdir -p ios/build
cargo run --release --locked -p framecache-app -- compile assets/bundles/mobilenet_v2_shared.toml --bundle \
  --out ios/build/mobilenet_v2_shared.fcbundle
headers="$(mktemp -d)"
cp engine/ffi/include/framecache.h "$headers/"
cat > "$headers/module.modulemap" <<'MAP'
module FrameCacheFFI {
    header "framecache.h"
    export *
}
MAP
rm -rf ios/build/FrameCacheFFI.xcframework
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/phone/libframecache_ffi.a -headers "$headers" \
  -library target/aarch64-apple-ios-sim/phone/libframecache_ffi.a -headers "$headers" \
  -output ios/build/FrameCacheFFI.xcframework
echo "ios/build/FrameCacheFFI.xcframework"
