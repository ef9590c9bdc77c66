#!/usr/bin/env bash
# The engine's test suite on aarch64 under qemu-user: kernels against the naive reference at
# every level (NEON and portable), the exactness and delta property tests, the session tests,
# and the real models against tract. Emulated time means nothing, so nothing here is timed.
#
# Property tests run FRAMECACHE_PROPTEST_CASES cases each (default 64 here, against 96-256 on
# the host): emulation is 10-50x slower, and CI has 90 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
rustup target add aarch64-unknown-linux-gnu

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export FRAMECACHE_PROPTEST_CASES="${FRAMECACHE_PROPTEST_CASES:-64}"

cargo test --release --locked --target aarch64-unknown-linux-gnu -p framecache --lib --tests
# Without the training crate (candle): it is not part of the engine or the phone library.
cargo test --release --locked --target aarch64-unknown-linux-gnu -p framecache-tests --no-default-features \
  --test real_models
