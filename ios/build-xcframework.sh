#!/usr/bin/env bash
# Builds ios/build/FrameCacheFFI.xcframework (device arm64 + simulator arm64) from engine/ffi,
# with the committed header and a module map, for the Swift package. Needs macOS with Xcode and
# `rustup target add aarch64-apple-ios aarch64-apple-ios-sim`.
set -euo pipefail
cd "$(dirname "$0")/.."
for target in aarch64-apple-ios aarch64-apple-ios-sim; do
  cargo rustc -p framecache-ffi --lib --crate-type staticlib --release --no-default-features \
    --target "$target" --locked
done
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
  -library target/aarch64-apple-ios/release/libframecache_ffi.a -headers "$headers" \
  -library target/aarch64-apple-ios-sim/release/libframecache_ffi.a -headers "$headers" \
  -output ios/build/FrameCacheFFI.xcframework
echo "ios/build/FrameCacheFFI.xcframework"
