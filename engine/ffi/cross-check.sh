#!/usr/bin/env bash
# Builds the C ABI as a static library for Android (aarch64) and iOS (aarch64) on Linux, checks
# that it exports every function of the header, and compiles the header for both triples.
# Needs: rustup targets aarch64-linux-android aarch64-apple-ios; clang, lld, llvm (llvm-ar,
# llvm-nm). No NDK or Xcode: the libraries are checked, not linked into an app.
set -euo pipefail
cd "$(dirname "$0")/../.."
header=engine/ffi/include/framecache.h
target_dir="${CARGO_TARGET_DIR:-target}"
# tract-linalg assembles its ARM kernels with the C compiler: give it clang for these targets.
sdk="$(mktemp -d)"   # cc-rs wants an iOS SDK path; an empty folder satisfies it here.
trap 'rm -rf "$sdk"' EXIT
export CC_aarch64_linux_android=clang CFLAGS_aarch64_linux_android=--target=aarch64-linux-android21
export AR_aarch64_linux_android=llvm-ar
export CC_aarch64_apple_ios=clang CFLAGS_aarch64_apple_ios=--target=arm64-apple-ios14.0 AR_aarch64_apple_ios=llvm-ar
export SDKROOT="$sdk"
symbols=$(grep -oE '\bfc_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
[ -n "$symbols" ] || { echo "no functions found in $header" >&2; exit 1; }
for target in aarch64-linux-android aarch64-apple-ios; do
  echo "== $target: staticlib"
  RUSTFLAGS="-D warnings" cargo rustc -p framecache-ffi --lib --crate-type staticlib --profile cross-check \
    --target "$target" --locked -q $([ "$target" = aarch64-apple-ios ] && echo --no-default-features)
  lib="$target_dir/$target/cross-check/libframecache_ffi.a"
  # Debian's LLVM 14 cannot read the LLVM bitcode some std objects carry and says so for each;
  # it still lists every native object, ours included, and a missing symbol fails below.
  exported=$({ llvm-nm --defined-only --extern-only "$lib" 2>/dev/null || true; } | awk 'NF == 3 {print $3}' | sed 's/^_//' | sort -u)
  for s in $symbols; do
    grep -qx "$s" <<<"$exported" || { echo "$target: $lib does not export $s" >&2; exit 1; }
  done
  echo "   exports all $(wc -w <<<"$symbols") functions of the header"
done
for triple in aarch64-linux-android21 arm64-apple-ios14.0; do
  echo "== header for $triple"
  clang --target="$triple" -ffreestanding -fsyntax-only -Werror -Wall -Wextra -x c "$header"
  clang --target="$triple" -ffreestanding -fsyntax-only -Werror -Wall -nostdinc++ -x c++ "$header"
done
echo "cross checks passed"
