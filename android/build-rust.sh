#!/usr/bin/env bash
# Builds the engine's JNI library (framecache-ffi, with its `jni` feature, without the model
# importers) for the app, app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so, and compiles the
# bundle the app runs (MobileNetV2's ImageNet classes and the person mask distilled onto its
# backbone, both in assets/) into the one file the library loads,
# app/src/main/plans/mobilenet_v2_shared.fcbundle (an APK asset).
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`,
# `rustup target add aarch64-linux-android`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo ndk --target arm64-v8a --platform 24 --output-dir android/app/src/main/jniLibs \
  build --profile phone -p framecache-ffi --locked
ls -l android/app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so
mkdir -p android/app/src/main/plans
cargo run --release --locked -p framecache-app -- compile assets/bundles/mobilenet_v2_shared.toml --bundle \
  --out android/app/src/main/plans/mobilenet_v2_shared.fcbundle
