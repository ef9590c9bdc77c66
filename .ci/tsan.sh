#!/usr/bin/env bash
# The C ABI under ThreadSanitizer: engine/ffi/tests/race.c races two pushing threads on one
# handle, a destroy against a push, and two destroys, against a staticlib whose Rust side is
# instrumented as well, std included (-Zsanitizer=thread with -Zbuild-std: a pinned nightly
# with rust-src). Instrumenting only the C side reported false races inside the engine's lock,
# which TSan could not see.
#
# The executable links Rust's own TSan runtime (the one rustc links into Rust executables):
# gcc's libtsan is older than the instrumentation nightly's LLVM emits (no `__tsan_memcpy`).
# Any report fails the run (halt_on_error, exit code 66). A second build of the harness with a
# deliberate race must be reported, so a TSan that is not live cannot pass. The build has its
# own target folder: it shares no artefact with the stable build.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${FRAMECACHE_TSAN_TOOLCHAIN:-nightly-2026-05-20}"
TARGET=x86_64-unknown-linux-gnu
rustup toolchain install "$TOOLCHAIN" --profile minimal --component rust-src

TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/framecache/target}/tsan"
RUSTFLAGS="-Zsanitizer=thread" cargo "+$TOOLCHAIN" build -Zbuild-std --target "$TARGET" --release --locked \
  -p framecache-ffi --no-default-features --features onnx --target-dir "$TARGET_DIR"
lib="$TARGET_DIR/$TARGET/release/libframecache_ffi.a"
runtime="$(rustc "+$TOOLCHAIN" --print sysroot)/lib/rustlib/$TARGET/lib/librustc-nightly_rt.tsan.a"
if [ "$(nm "$lib" 2>/dev/null | grep -c ' U __tsan_func_entry')" -eq 0 ]; then
  echo "tsan: $lib is not instrumented" >&2
  exit 1
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
build() { # build NAME [CFLAGS...]
  local name="$1"; shift
  gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=thread "$@" -I engine/ffi/include \
    -c engine/ffi/tests/race.c -o "$out/$name.o"
  gcc "$out/$name.o" "$lib" -Wl,--whole-archive "$runtime" -Wl,--no-whole-archive \
    -lpthread -ldl -lm -lrt -lstdc++ -o "$out/$name" 2> >(grep -v 'GNU-stack\|deprecated and will be removed' >&2)
}
build race
build seeded -DSEED_RACE
export TSAN_OPTIONS="halt_on_error=1:exitcode=66${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
model=assets/models/mobilenet_v2.onnx

set +e
"$out/seeded" "$model" > "$out/seeded.log" 2>&1
seeded=$?
set -e
if [ "$seeded" -ne 66 ] || ! grep -q 'WARNING: ThreadSanitizer: data race' "$out/seeded.log"; then
  echo "tsan: the deliberate race was not reported (exit $seeded):" >&2
  cat "$out/seeded.log" >&2
  exit 1
fi
echo "tsan: the deliberate race was reported, as it must be"
"$out/race" "$model"
