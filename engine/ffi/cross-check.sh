#!/usr/bin/env bash
# Builds the C ABI as it ships to phones (profile `phone`, without the ONNX and TFLite
# importers: phones load compiled plans) as a static library for Android (aarch64) and iOS
# (aarch64) on Linux, checks that it exports every function of the header, links each into the
# shared object a phone loads and measures it stripped, fails above the budget, and compiles
# the header for both triples.
# Needs: rustup targets aarch64-linux-android aarch64-apple-ios; clang, lld, llvm (llvm-ar,
# llvm-nm, llvm-strip). No NDK or Xcode: the libraries are linked here with lld, with the
# system libraries left as the dynamic imports they are on the phone.
set -euo pipefail
cd "$(dirname "$0")/../.."
header=engine/ffi/include/framecache.h
target_dir="${CARGO_TARGET_DIR:-target}"
# The stripped library's budget (issue 20: phone runtimes ship in 1-5 MB).
budget="${FRAMECACHE_PHONE_LIB_BUDGET:-6000000}"
# tract-linalg assembles its ARM kernels with the C compiler: give it clang for these targets.
sdk="$(mktemp -d)"   # cc-rs wants an iOS SDK path; an empty folder satisfies it here.
trap 'rm -rf "$sdk"' EXIT
export CC_aarch64_linux_android=clang CFLAGS_aarch64_linux_android=--target=aarch64-linux-android21
export AR_aarch64_linux_android=llvm-ar
export CC_aarch64_apple_ios=clang CFLAGS_aarch64_apple_ios=--target=arm64-apple-ios14.0 AR_aarch64_apple_ios=llvm-ar
export SDKROOT="$sdk"
symbols=$(grep -oE '\bfc_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
[ -n "$symbols" ] || { echo "no functions found in $header" >&2; exit 1; }
lld_bin="$(dirname "$(readlink -f "$(command -v ld.lld)")")"
# link TARGET LIB OUT EXPORTED...: the shared object (ELF) or dylib (Mach-O) a phone loads,
# keeping only what the exported functions reach.
link() {
  local target="$1" lib="$2" out="$3"; shift 3
  case "$target" in
    *android*)
      printf '{ global: fc_*; Java_*; JNI_OnLoad; local: *; };\n' >"$sdk/exports.map"
      ld.lld -shared -m aarch64linux --gc-sections --version-script="$sdk/exports.map" \
        $(printf -- '-u %s ' "$@") -o "$out" "$lib" ;;
    *ios*)
      printf '_%s\n' "$@" >"$sdk/exports.txt"
      "$lld_bin/ld64.lld" -dylib -arch arm64 -platform_version ios 14.0 14.0 -dead_strip \
        -undefined dynamic_lookup -exported_symbols_list "$sdk/exports.txt" -o "$out" "$lib" ;;
  esac
  llvm-strip "$out" 2>/dev/null || llvm-strip -x "$out"
}
for target in aarch64-linux-android aarch64-apple-ios; do
  echo "== $target: staticlib (profile phone)"
  RUSTFLAGS="-D warnings" cargo rustc -p framecache-ffi --lib --crate-type staticlib --profile phone \
    --target "$target" --locked -q $([ "$target" = aarch64-apple-ios ] && echo --no-default-features)
  lib="$target_dir/$target/phone/libframecache_ffi.a"
  # Debian's LLVM 14 cannot read the LLVM bitcode some std objects carry and says so for each;
  # it still lists every native object, ours included, and a missing symbol fails below.
  exported=$({ llvm-nm --defined-only --extern-only "$lib" 2>/dev/null || true; } | awk 'NF == 3 {print $3}' | sed 's/^_//' | sort -u)
  for s in $symbols; do
    grep -qx "$s" <<<"$exported" || { echo "$target: $lib does not export $s" >&2; exit 1; }
  done
  echo "   exports all $(wc -w <<<"$symbols") functions of the header"
  java=$(grep -E '^Java_|^JNI_OnLoad$' <<<"$exported" || true)
  so="$sdk/libframecache_ffi.$([ "$target" = aarch64-apple-ios ] && echo dylib || echo so)"
  link "$target" "$lib" "$so" $symbols $java
  size=$(stat -c %s "$so")
  echo "   linked and stripped: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB; budget $budget bytes), $(wc -w <<<"$java") JNI entry points"
  # tract's crates leave their source paths in what they link (panic locations).
  if grep -aq 'tract-onnx\|tract-tflite\|tract-core' "$so"; then
    echo "$target: the phone library links an importer" >&2; exit 1
  fi
  [ "$size" -le "$budget" ] || { echo "$target: $so is $size bytes, over the budget of $budget" >&2; exit 1; }
done
for triple in aarch64-linux-android21 arm64-apple-ios14.0; do
  echo "== header for $triple"
  clang --target="$triple" -ffreestanding -fsyntax-only -Werror -Wall -Wextra -x c "$header"
  clang --target="$triple" -ffreestanding -fsyntax-only -Werror -Wall -nostdinc++ -x c++ "$header"
done
echo "cross checks passed"
