#!/usr/bin/env bash
# Builds the engine's JNI library (framecache-ffi, with its `jni` feature) for the app:
# app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so.
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`,
# `rustup target add aarch64-linux-android`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo ndk --target arm64-v8a --platform 24 --output-dir android/app/src/main/jniLibs \
  build --release -p framecache-ffi --locked
ls -l android/app/src/main/jniLibs/arm64-v8a/libframecache_ffi.so
