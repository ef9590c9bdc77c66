#!/usr/bin/env bash
# The kernel tests under Miri: the unsafe kernels (raw-pointer rows, rectangles written through
# `OutBuf`, im2col and transposed-conv scratch) checked for undefined behaviour, out-of-bounds
# access and aliasing violations (Stacked Borrows) against the naive reference.
#
# Miri interprets: the kernels run about a million times slower than native code. So under Miri
# the property tests draw small geometries (`common::size`) and run FRAMECACHE_PROPTEST_CASES
# cases each (default 2 here); Miri sees no SIMD level, so this covers the portable kernels,
# which every SIMD level shares its drivers with. Nothing here is timed.
#
# The toolchain is a pinned nightly (Miri ships only with nightlies), so a new nightly cannot
# turn CI red by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${FRAMECACHE_MIRI_TOOLCHAIN:-nightly-2026-05-20}"
rustup toolchain install "$TOOLCHAIN" --profile minimal --component miri,rust-src
cargo "+$TOOLCHAIN" miri setup

export FRAMECACHE_PROPTEST_CASES="${FRAMECACHE_PROPTEST_CASES:-2}"
# Isolation off: proptest reads the regression files beside the tests.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
cargo "+$TOOLCHAIN" miri test --locked -p framecache --test kernels
# The session's worker pool (`exec::pool`): a closure shared with workers by a lifetime-erased
# pointer, spin waits and parking, checked for data races and use after return.
cargo "+$TOOLCHAIN" miri test --locked -p framecache --lib exec::pool
