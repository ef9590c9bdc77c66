#!/usr/bin/env bash
# Builds the engine's JNI library (framecache-ffi, with its `jni` feature, without the model
# importers) for the app, app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so, and compiles the
# bundled model into the plan file the library loads, app/src/main/plans/mobilenet_v2.fcplan
# (an APK asset).
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`,
# `rustup target add aarch64-linux-android`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo ndk --target arm64-v8a --platform 24 --output-dir android/app/src/main/jniLibs \
  build --profile phone -p framecache-ffi --locked
ls -l android/app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so
mkdir -p android/app/src/main/plans
cargo run --release --locked -p framecache-app -- compile assets/models/mobilenet_v2.onnx \
  --out android/app/src/main/plans/mobilenet_v2.fcplan
