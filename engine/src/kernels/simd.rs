//! Instruction-set levels and the one vector abstraction every fast kernel is written in.
//!
//! A kernel is written once, generic over [`Vector`], and instantiated per level inside a
//! `#[target_feature]` function ([`dispatch`]), so the compiler
//! emits AVX-512, AVX2+FMA or NEON code from the same source. The level is chosen at run time
//! from what the CPU reports (never by building for the host CPU) and passed explicitly to
//! every kernel call: a session holds its level, and tests run each level side by side.

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// An instruction-set level the kernels are compiled for.
///
/// Levels are ordered by capability, and most nest (a CPU that runs one runs every lower one),
/// but not all: AVX-VNNI (256-bit `vpdpbusd`) is on Alder Lake-class client CPUs without
/// AVX-512 and on Sapphire Rapids, not on Skylake-X or Cascade Lake. [`Level::is_available`]
/// asks the detected set, never the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable Rust (four-lane arrays the compiler vectorises with the target's baseline:
    /// SSE2 on x86-64, NEON on aarch64). Multiply and add are separate operations.
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX2 with AVX-VNNI (Alder Lake, Meteor Lake, Sapphire Rapids, Zen 5): the float kernels
    /// of [`Level::Avx2Fma`], and int8 products by the 256-bit `vpdpbusd`, four products per
    /// lane and instruction, where [`Level::Avx2Fma`] does two (`vpmaddwd`).
    #[cfg(target_arch = "x86_64")]
    Avx2Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX-512 with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later): the float kernels of
    /// [`Level::Avx512`], and int8 products by `vpdpbusd`, four products per lane and
    /// instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// Advanced SIMD with fused multiply-add (every aarch64 CPU that Android and iOS run on).
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// NEON with the dot-product instructions (Armv8.2 `dotprod`: Cortex-A55/A75 and later,
    /// Apple A11 and later): the float kernels of [`Level::Neon`], and int8 products by `sdot`,
    /// four products per lane and instruction.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Level {
    /// Every level this CPU can run, lowest first.
    pub fn available() -> Vec<Level> {
        let mut out = vec![Level::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                out.push(Level::Avx2Fma);
                if is_x86_feature_detected!("avxvnni") {
                    out.push(Level::Avx2Vnni);
                }
                if is_x86_feature_detected!("avx512f") {
                    out.push(Level::Avx512);
                    if is_x86_feature_detected!("avx512vnni") {
                        out.push(Level::Avx512Vnni);
                    }
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                out.push(Level::Neon);
                if std::arch::is_aarch64_feature_detected!("dotprod") {
                    out.push(Level::NeonDot);
                }
            }
        }
        out
    }

    /// [`Level::available`], detected once.
    pub(crate) fn detected() -> &'static [Level] {
        static DETECTED: std::sync::OnceLock<Vec<Level>> = std::sync::OnceLock::new();
        DETECTED.get_or_init(Self::available)
    }

    /// The best level this CPU supports.
    pub fn best() -> Level {
        *Self::detected().last().unwrap_or(&Level::Baseline)
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        Self::detected().contains(&self)
    }

    /// The level for a kernel whose vectors run along `n` contiguous floats (channels): AVX-512
    /// only when `n` fills whole 16-lane vectors, AVX2 (8 lanes, which every AVX-512 CPU runs)
    /// otherwise. Values past the last whole vector take a scalar tail, so 8 channels on
    /// AVX-512 were computed one float at a time. The choice depends only on the level and
    /// `n`, so every rectangle of a node runs the same code and cached equals full bit for bit.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub(crate) fn for_width(self, n: usize) -> Level {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 | Level::Avx512Vnni if !n.is_multiple_of(16) => Level::Avx2Fma,
            level => level,
        }
    }

    /// The level whose float kernels this one runs: itself, but for the dot-product levels
    /// ([`Level::NeonDot`], [`Level::Avx2Vnni`], [`Level::Avx512Vnni`]), which differ from
    /// [`Level::Neon`], [`Level::Avx2Fma`] and [`Level::Avx512`] in their int8 products only.
    pub fn float(self) -> Level {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => Level::Avx512,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Vnni => Level::Avx2Fma,
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => Level::Neon,
            level => level,
        }
    }
}

/// Asks the memory system to bring the cache line holding `p` into L2, without waiting for
/// it and without faulting: any address may be passed (callers compute them with
/// `wrapping_add`). A no-op where the target has no prefetch hint (and under Miri).
#[inline(always)]
pub(crate) fn prefetch_l2<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: SSE is part of x86-64's baseline, and a prefetch never faults or reads into the
    // program's state.
    unsafe {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    };
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: a prefetch hint never faults and touches no register or memory the program sees.
    unsafe {
        std::arch::asm!("prfm pldl2keep, [{0}]", in(reg) p, options(nostack, preserves_flags, readonly))
    };
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    let _ = p;
}

/// One SIMD register of `f32` lanes. All methods are `#[inline(always)]`, so that they are
/// compiled with the target features of the kernel they are inlined into.
pub(crate) trait Vector: Copy {
    const LANES: usize;
    /// The level's integer vector for the int8 products ([`IntVector`]).
    type Int: IntVector;
    /// Vector registers of the level (the tile shapes depend on it).
    const REGISTERS: usize;
    /// # Safety
    /// `p` must be valid for reading `LANES` floats.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` must be valid for writing `LANES` floats.
    unsafe fn store(self, p: *mut f32);
    /// Stores the first `n` lanes (`n < LANES`) and nothing past them: a masked store where the
    /// level has one, otherwise lane by lane (a copy through memory of a run-time length is a
    /// `memcpy` call, which the GEMM epilogue paid per pixel on partial tiles).
    ///
    /// # Safety
    /// `p` must be valid for writing `n` floats.
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        let mut tmp = [0.0f32; 16];
        // SAFETY: LANES <= 16 at every level; `p` holds `n` floats (the contract).
        unsafe {
            self.store(tmp.as_mut_ptr());
            for (i, &v) in tmp.iter().enumerate().take(n.min(Self::LANES)) {
                std::ptr::write_volatile(p.add(i), v);
            }
        }
    }
    fn splat(x: f32) -> Self;
    /// `self * b + c` (fused where the level has FMA).
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn div(self, b: Self) -> Self;
    fn max(self, b: Self) -> Self;
    fn min(self, b: Self) -> Self;
    /// The sum of the lanes, in one fixed order per level (halves added pairwise down to one
    /// lane on the SIMD levels: a few shuffles where adding the lanes one by one is a chain of
    /// `LANES` dependent additions).
    fn sum(self) -> f32;
}

/// One lane of the SIMD levels' `max`, for scalar code that must give a vector lane's bits (a
/// row's tail after its whole vectors, the portable level). `f32::max` leaves the sign of a
/// zero result unspecified, and the vector instructions do not: x86's `maxps` returns its second
/// operand unless the first is greater (so `max(-0, 0)` is `+0`, and a NaN gives the second
/// operand), NEON's `fmax` takes `+0` over `-0` (as `f32::max` compiles there). A clip of a
/// `-0` in a row's tail once came out `-0` where the same value in a vector came out `+0`, so
/// a cached rectangle and the full map differed in that bit.
#[inline(always)]
pub(crate) fn max_lane(a: f32, b: f32) -> f32 {
    if cfg!(target_arch = "x86_64") {
        if a > b {
            a
        } else {
            b
        }
    } else {
        a.max(b)
    }
}

/// One lane of the SIMD levels' `min`, as [`max_lane`]: x86's `minps` returns its second operand
/// unless the first is smaller.
#[inline(always)]
pub(crate) fn min_lane(a: f32, b: f32) -> f32 {
    if cfg!(target_arch = "x86_64") {
        if a < b {
            a
        } else {
            b
        }
    } else {
        a.min(b)
    }
}

/// The portable vector: four lanes in a plain array.
#[derive(Clone, Copy)]
pub(crate) struct Portable(pub(crate) [f32; 4]);

impl Portable {
    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Portable([f(self.0[0], b.0[0]), f(self.0[1], b.0[1]), f(self.0[2], b.0[2]), f(self.0[3], b.0[3])])
    }
}

impl Vector for Portable {
    const LANES: usize = 4;
    type Int = PortableInt;
    const REGISTERS: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract.
        Portable(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable([x; 4])
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable([
            self.0[0] * b.0[0] + c.0[0],
            self.0[1] * b.0[1] + c.0[1],
            self.0[2] * b.0[2] + c.0[2],
            self.0[3] * b.0[3] + c.0[3],
        ])
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.zip(b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self.zip(b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self.zip(b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        self.zip(b, |x, y| x / y)
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        self.zip(b, max_lane)
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        self.zip(b, min_lane)
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        let [a, b, c, d] = self.0;
        (a + c) + (b + d)
    }
}

/// A [`Vector`] over one intrinsic register type: the names of its intrinsics, and how its
/// fused multiply-add `a * b + c` is spelled.
macro_rules! intrinsic_vector {
    ($arch:literal, $name:ident($reg:ty), lanes $lanes:literal, registers $regs:literal, int $int:ty,
     $load:ident, $store:ident, $splat:ident, $add:ident, $sub:ident, $mul:ident, $div:ident, $max:ident, $min:ident,
     |$a:ident, $b:ident, $c:ident| $fma:expr, sum |$v:ident| $sum:expr
     $(, store_first |$sv:ident, $sp:ident, $sn:ident| $sf:expr)?) => {
        #[cfg(target_arch = $arch)]
        #[derive(Clone, Copy)]
        pub(crate) struct $name($reg);

        // SAFETY (every method): the intrinsics need their target features, which every caller
        // has: these methods are only reached from kernels instantiated inside the
        // `#[target_feature]` entry functions of [`dispatch`], after the level was detected;
        // pointers are the caller's contract.
        #[cfg(target_arch = $arch)]
        impl Vector for $name {
            const LANES: usize = $lanes;
            type Int = $int;
            const REGISTERS: usize = $regs;
            #[inline(always)]
            unsafe fn load(p: *const f32) -> Self {
                // SAFETY: see above.
                $name(unsafe { $load(p) })
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                // SAFETY: see above.
                unsafe { $store(p, self.0) }
            }
            $(
            #[inline(always)]
            unsafe fn store_first(self, $sp: *mut f32, $sn: usize) {
                let $sv = self.0;
                debug_assert!($sn < $lanes);
                // SAFETY: see above.
                unsafe { $sf }
            }
            )?
            #[inline(always)]
            fn splat(x: f32) -> Self {
                // SAFETY: see above.
                $name(unsafe { $splat(x) })
            }
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                let ($a, $b, $c) = (self.0, b.0, c.0);
                // SAFETY: see above.
                $name(unsafe { $fma })
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $add(self.0, b.0) })
            }
            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $sub(self.0, b.0) })
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $mul(self.0, b.0) })
            }
            #[inline(always)]
            fn div(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $div(self.0, b.0) })
            }
            #[inline(always)]
            fn max(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $max(self.0, b.0) })
            }
            #[inline(always)]
            fn min(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $min(self.0, b.0) })
            }
            #[inline(always)]
            fn sum(self) -> f32 {
                let $v = self.0;
                // SAFETY: see above.
                unsafe { $sum }
            }
        }
    };
}

/// The sum of an AVX register's 8 lanes: upper half onto lower, then pairs, then the last two.
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sum8(v: __m256) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2)))
    }
}

intrinsic_vector!("x86_64", Avx2(__m256), lanes 8, registers 16, int Avx2Int,
    _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_div_ps,
    _mm256_max_ps, _mm256_min_ps, |a, b, c| _mm256_fmadd_ps(a, b, c), sum |v| sum8(v),
    store_first |v, p, n| _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), v));
// Int8 products at this level run the AVX2 integer vectors (every AVX-512 CPU has AVX2, and
// the entry function enables it): the same bits, a narrower register.
intrinsic_vector!("x86_64", Avx512(__m512), lanes 16, registers 32, int Avx2Int,
    _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_div_ps,
    _mm512_max_ps, _mm512_min_ps, |a, b, c| _mm512_fmadd_ps(a, b, c),
    sum |v| sum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))))),
    store_first |v, p, n| _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v));
// vfmaq_f32(c, a, b) = c + a * b, fused.
intrinsic_vector!("aarch64", Neon(float32x4_t), lanes 4, registers 32, int NeonInt,
    vld1q_f32, vst1q_f32, vdupq_n_f32, vaddq_f32, vsubq_f32, vmulq_f32, vdivq_f32,
    vmaxq_f32, vminq_f32, |a, b, c| vfmaq_f32(c, a, b), sum |v| vaddvq_f32(v));

/// One register of `i32` accumulators for the int8 products, one lane per output channel.
/// Each multiply-add takes a **unit** of `GROUP` consecutive input values at once (32 bits):
///
/// - `GROUP = 2`: `(k, k + 1)` pairs of `i16`, the inputs minus their zero point (−255..=255),
///   so no sum saturates (x86 `vpmaddwd`; NEON widening multiplies and a pairwise add);
/// - `GROUP = 4`: `k..k + 4` quads of `i8`, the inputs shifted by 128 from the unsigned byte
///   (−128..=127), which `sdot` multiplies by `i8` weights; the product adds back what the
///   shift took, `(128 − zero) · Σ w`, per channel in `i32` (`Int8Packed`).
///
/// The weights are packed as one unit per channel, the input as one unit broadcast to every
/// lane. Either way the sums are exact integers, so every level computes the same ones.
/// Methods are `#[inline(always)]`, as for [`Vector`].
pub(crate) trait IntVector: Copy {
    const LANES: usize;
    /// Vector registers of the level (the tile shapes depend on it).
    const REGISTERS: usize;
    /// Input values per unit: 2 (`i16` pairs) or 4 (`i8` quads).
    const GROUP: usize;
    /// The `f32` vector of the same lanes, for the epilogue.
    type F: Vector;
    /// `LANES` channels' weight units.
    type W: Copy;
    /// One unit of input values, broadcast.
    type A: Copy;
    fn zero() -> Self;
    /// # Safety
    /// `p` must be valid for reading `LANES` `i32`.
    unsafe fn load(p: *const i32) -> Self;
    fn add(self, b: Self) -> Self;
    /// # Safety
    /// `p` must be valid for reading `LANES` units (`4 · LANES` bytes).
    unsafe fn load_w(p: *const u32) -> Self::W;
    /// The unit `unit` (its first value in the low bits), broadcast.
    fn splat_a(unit: u32) -> Self::A;
    /// `self[c] + Σ_j a[j] · w[c][j]` over the unit's values, for every lane `c`.
    fn madd(self, a: Self::A, w: Self::W) -> Self;
    /// The lanes converted to `f32` (exact below 2^24 in magnitude).
    fn to_f32(self) -> Self::F;
    /// Writes the input values of `src[..n]` as unit values at `dst`: `q = quantize(src[i])`,
    /// `src[i] · inv` rounded to nearest (ties to even), clamped to `lo..=hi`, as
    /// [`super::int8::quantize`] defines it; an `i16` `q` where `GROUP = 2`, and where
    /// `GROUP = 4` the byte `q + zero − QUAD_BIAS` ([`super::int8::QUAD_BIAS`]: an `i8` for
    /// NEON's `sdot`, a `u8` for `vpdpbusd`) (vectors where the level has them, that function
    /// for the rest).
    ///
    /// # Safety
    /// `src` must be valid for reading `n` floats and `dst` for writing `n` values of the
    /// unit's type (`4 / GROUP` bytes each).
    #[inline(always)]
    unsafe fn quantize(src: *const f32, n: usize, inv: f32, lo: f32, hi: f32, zero: f32, dst: *mut u8) {
        let _ = zero; // pairs are relative to the zero point
        let dst = dst.cast::<i16>();
        for i in 0..n {
            // SAFETY: the caller's contract.
            unsafe { dst.add(i).write_unaligned(super::int8::quantize(*src.add(i), inv, lo, hi)) };
        }
    }
}

/// The portable integer vector: four `i32` lanes.
#[derive(Clone, Copy)]
pub(crate) struct PortableInt([i32; 4]);

impl IntVector for PortableInt {
    const LANES: usize = 4;
    const REGISTERS: usize = 16;
    const GROUP: usize = 2;
    type F = Portable;
    type W = [i16; 8];
    type A = [i32; 2];
    #[inline(always)]
    fn zero() -> Self {
        PortableInt([0; 4])
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        // SAFETY: the caller's contract.
        PortableInt(unsafe { p.cast::<[i32; 4]>().read_unaligned() })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        PortableInt(std::array::from_fn(|c| self.0[c] + b.0[c]))
    }
    #[inline(always)]
    unsafe fn load_w(p: *const u32) -> [i16; 8] {
        // SAFETY: the caller's contract.
        unsafe { p.cast::<[i16; 8]>().read_unaligned() }
    }
    #[inline(always)]
    fn splat_a(pair: u32) -> [i32; 2] {
        [i32::from(pair as u16 as i16), i32::from((pair >> 16) as u16 as i16)]
    }
    #[inline(always)]
    fn madd(self, a: [i32; 2], w: [i16; 8]) -> Self {
        let l = |c: usize| self.0[c] + a[0] * i32::from(w[2 * c]) + a[1] * i32::from(w[2 * c + 1]);
        PortableInt([l(0), l(1), l(2), l(3)])
    }
    #[inline(always)]
    fn to_f32(self) -> Portable {
        Portable(self.0.map(|x| x as f32))
    }
}

/// Eight `i32` lanes in an AVX2 register (`vpmaddwd` + `vpaddd`).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2Int(__m256i);

// SAFETY (every method): as for the `Vector` levels, only reached inside an entry function
// with AVX2 enabled (the AVX2 and AVX-512 ones), after detection.
#[cfg(target_arch = "x86_64")]
impl IntVector for Avx2Int {
    const LANES: usize = 8;
    const REGISTERS: usize = 16;
    const GROUP: usize = 2;
    type F = Avx2;
    type W = __m256i;
    type A = __m256i;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: see above.
        Avx2Int(unsafe { _mm256_setzero_si256() })
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        // SAFETY: see above.
        Avx2Int(unsafe { _mm256_loadu_si256(p.cast()) })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: see above.
        Avx2Int(unsafe { _mm256_add_epi32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn load_w(p: *const u32) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_loadu_si256(p.cast()) }
    }
    #[inline(always)]
    fn splat_a(pair: u32) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_set1_epi32(pair as i32) }
    }
    #[inline(always)]
    fn madd(self, a: __m256i, w: __m256i) -> Self {
        // SAFETY: see above.
        Avx2Int(unsafe { _mm256_add_epi32(self.0, _mm256_madd_epi16(a, w)) })
    }
    #[inline(always)]
    fn to_f32(self) -> Avx2 {
        // SAFETY: see above.
        Avx2(unsafe { _mm256_cvtepi32_ps(self.0) })
    }
    #[inline(always)]
    unsafe fn quantize(src: *const f32, n: usize, inv: f32, lo: f32, hi: f32, _zero: f32, dst: *mut u8) {
        let dst = dst.cast::<i16>();
        // SAFETY: see above; pointers are the caller's contract.
        unsafe {
            let (vi, vlo, vhi) = (_mm256_set1_ps(inv), _mm256_set1_ps(lo), _mm256_set1_ps(hi));
            let mut i = 0;
            while i + 8 <= n {
                let x = _mm256_mul_ps(_mm256_loadu_ps(src.add(i)), vi);
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                let q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, vlo), vhi));
                let q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
                _mm_storeu_si128(dst.add(i).cast(), q16);
                i += 8;
            }
            for j in i..n {
                dst.add(j).write_unaligned(super::int8::quantize(*src.add(j), inv, lo, hi));
            }
        }
    }
}

/// Four `i32` lanes in a NEON register: widening multiplies of the low and high halves, then
/// a pairwise add folds each channel's two products.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy)]
pub(crate) struct NeonInt(int32x4_t);

// SAFETY (every method): only reached inside the NEON entry function, after detection.
#[cfg(target_arch = "aarch64")]
impl IntVector for NeonInt {
    const LANES: usize = 4;
    const REGISTERS: usize = 32;
    const GROUP: usize = 2;
    type F = Neon;
    type W = int16x8_t;
    type A = int16x8_t;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: see above.
        NeonInt(unsafe { vdupq_n_s32(0) })
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        // SAFETY: see above.
        NeonInt(unsafe { vld1q_s32(p) })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: see above.
        NeonInt(unsafe { vaddq_s32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn load_w(p: *const u32) -> int16x8_t {
        // SAFETY: see above.
        unsafe { vld1q_s16(p.cast()) }
    }
    #[inline(always)]
    fn splat_a(pair: u32) -> int16x8_t {
        // SAFETY: see above.
        unsafe { vreinterpretq_s16_u32(vdupq_n_u32(pair)) }
    }
    #[inline(always)]
    fn madd(self, a: int16x8_t, w: int16x8_t) -> Self {
        // SAFETY: see above.
        unsafe {
            let lo = vmull_s16(vget_low_s16(a), vget_low_s16(w));
            let hi = vmull_high_s16(a, w);
            NeonInt(vaddq_s32(self.0, vpaddq_s32(lo, hi)))
        }
    }
    #[inline(always)]
    fn to_f32(self) -> Neon {
        // SAFETY: see above.
        Neon(unsafe { vcvtq_f32_s32(self.0) })
    }
    #[inline(always)]
    unsafe fn quantize(src: *const f32, n: usize, inv: f32, lo: f32, hi: f32, _zero: f32, dst: *mut u8) {
        let dst = dst.cast::<i16>();
        // SAFETY: see above; pointers are the caller's contract.
        unsafe {
            let (vi, vlo, vhi) = (vdupq_n_f32(inv), vdupq_n_f32(lo), vdupq_n_f32(hi));
            let mut i = 0;
            while i + 4 <= n {
                // vrndnq: to nearest, ties to even.
                let r = vrndnq_f32(vmulq_f32(vld1q_f32(src.add(i)), vi));
                let q = vcvtq_s32_f32(vminq_f32(vmaxq_f32(r, vlo), vhi));
                vst1_s16(dst.add(i), vmovn_s32(q));
                i += 4;
            }
            for j in i..n {
                dst.add(j).write_unaligned(super::int8::quantize(*src.add(j), inv, lo, hi));
            }
        }
    }
}

/// Four `i32` lanes in a NEON register, multiplied by `sdot` (the `dotprod` feature): each
/// lane adds the four products of a quad of `i8` inputs with its channel's quad of `i8`
/// weights in one instruction.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy)]
pub(crate) struct NeonDot(int32x4_t);

// SAFETY (every method): only reached inside the int8 kernel's `neon,dotprod` entry function,
// after detection (`Level::NeonDot`).
#[cfg(target_arch = "aarch64")]
impl IntVector for NeonDot {
    const LANES: usize = 4;
    const REGISTERS: usize = 32;
    const GROUP: usize = 4;
    type F = Neon;
    type W = int8x16_t;
    type A = int8x16_t;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: see above.
        NeonDot(unsafe { vdupq_n_s32(0) })
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        // SAFETY: see above.
        NeonDot(unsafe { vld1q_s32(p) })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: see above.
        NeonDot(unsafe { vaddq_s32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn load_w(p: *const u32) -> int8x16_t {
        // SAFETY: see above.
        unsafe { vld1q_s8(p.cast()) }
    }
    #[inline(always)]
    fn splat_a(unit: u32) -> int8x16_t {
        // SAFETY: see above.
        unsafe { vreinterpretq_s8_u32(vdupq_n_u32(unit)) }
    }
    #[inline(always)]
    fn madd(self, a: int8x16_t, w: int8x16_t) -> Self {
        let mut acc = self.0;
        // SAFETY: see above (the `sdot` intrinsics are not stable in Rust yet; the instruction
        // reads and writes registers only).
        unsafe {
            std::arch::asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
                acc = inout(vreg) acc,
                w = in(vreg) w,
                a = in(vreg) a,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        NeonDot(acc)
    }
    #[inline(always)]
    fn to_f32(self) -> Neon {
        // SAFETY: see above.
        Neon(unsafe { vcvtq_f32_s32(self.0) })
    }
    #[inline(always)]
    unsafe fn quantize(src: *const f32, n: usize, inv: f32, lo: f32, hi: f32, zero: f32, dst: *mut u8) {
        let dst = dst.cast::<i8>();
        let shift = zero - 128.0;
        // SAFETY: see above; pointers are the caller's contract.
        unsafe {
            let (vi, vlo, vhi, vs) = (vdupq_n_f32(inv), vdupq_n_f32(lo), vdupq_n_f32(hi), vdupq_n_f32(shift));
            let q = |p: *const f32| {
                // vrndnq: to nearest, ties to even; the clamped value plus the shift is an
                // integer in -128..=127, exact in f32.
                let r = vrndnq_f32(vmulq_f32(vld1q_f32(p), vi));
                vcvtq_s32_f32(vaddq_f32(vminq_f32(vmaxq_f32(r, vlo), vhi), vs))
            };
            let mut i = 0;
            while i + 8 <= n {
                let halves = vcombine_s16(vmovn_s32(q(src.add(i))), vmovn_s32(q(src.add(i + 4))));
                vst1_s8(dst.add(i), vmovn_s16(halves));
                i += 8;
            }
            for j in i..n {
                let v = super::int8::quantize(*src.add(j), inv, lo, hi);
                *dst.add(j) = (v + shift as i16) as i8;
            }
        }
    }
}

/// An integer vector multiplied by `vpdpbusd` ([`Avx512Dot`], [`Avx2Dot`]): each `i32` lane
/// adds the four products of a quad of `u8` inputs with its channel's quad of `i8` weights in
/// one instruction. The two differ in width and intrinsics only, and in how `quantize` packs
/// bytes (the `quantize` block quantizes whole vectors and returns how many values it did).
macro_rules! dot_vector {
    ($(#[$doc:meta])* $name:ident($reg:ty), lanes $lanes:literal, registers $regs:literal, float $f:ident,
     $zero:ident, $load:ident, $add:ident, $set1:ident, $dpbusd:ident, $cvt:ident,
     quantize |$src:ident, $n:ident, $inv:ident, $lo:ident, $hi:ident, $z:ident, $dst:ident| $quantize:block) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[derive(Clone, Copy)]
        pub(crate) struct $name($reg);

        // SAFETY (every method): only reached inside the int8 kernel's entry function for this
        // vector's level (`avx512vnni` or `avxvnni` enabled), after detection; pointers are the
        // caller's contract.
        #[cfg(target_arch = "x86_64")]
        impl IntVector for $name {
            const LANES: usize = $lanes;
            const REGISTERS: usize = $regs;
            const GROUP: usize = 4;
            type F = $f;
            type W = $reg;
            type A = $reg;
            #[inline(always)]
            fn zero() -> Self {
                // SAFETY: see above.
                $name(unsafe { $zero() })
            }
            #[inline(always)]
            unsafe fn load(p: *const i32) -> Self {
                // SAFETY: see above.
                $name(unsafe { $load(p.cast()) })
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                // SAFETY: see above.
                $name(unsafe { $add(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn load_w(p: *const u32) -> $reg {
                // SAFETY: see above.
                unsafe { $load(p.cast()) }
            }
            #[inline(always)]
            fn splat_a(unit: u32) -> $reg {
                // SAFETY: see above.
                unsafe { $set1(unit as i32) }
            }
            #[inline(always)]
            fn madd(self, a: $reg, w: $reg) -> Self {
                // SAFETY: see above. The unsigned operand is the input, the signed one the weights.
                $name(unsafe { $dpbusd(self.0, a, w) })
            }
            #[inline(always)]
            fn to_f32(self) -> $f {
                // SAFETY: see above.
                $f(unsafe { $cvt(self.0) })
            }
            #[inline(always)]
            unsafe fn quantize($src: *const f32, $n: usize, $inv: f32, $lo: f32, $hi: f32, $z: f32, $dst: *mut u8) {
                let vectors: usize = $quantize;
                for j in vectors..$n {
                    // SAFETY: the caller's contract (`src` holds `n` floats, `dst` `n` bytes).
                    unsafe {
                        let v = super::int8::quantize(*$src.add(j), $inv, $lo, $hi);
                        *$dst.add(j) = (v + $z as i16) as u8;
                    }
                }
            }
        }
    };
}

dot_vector!(
    /// Sixteen `i32` lanes in an AVX-512 register (AVX-512 VNNI).
    Avx512Dot(__m512i), lanes 16, registers 32, float Avx512,
    _mm512_setzero_si512, _mm512_loadu_si512, _mm512_add_epi32, _mm512_set1_epi32, _mm512_dpbusd_epi32,
    _mm512_cvtepi32_ps,
    // The whole vectors of `quantize`; the macro quantizes the values after them one by one.
    quantize |src, n, inv, lo, hi, zero, dst| {
        // SAFETY: see above; pointers are the caller's contract.
        unsafe {
            let (vi, vlo, vhi, vz) =
                (_mm512_set1_ps(inv), _mm512_set1_ps(lo), _mm512_set1_ps(hi), _mm512_set1_ps(zero));
            let mut i = 0;
            while i + 16 <= n {
                let x = _mm512_mul_ps(_mm512_loadu_ps(src.add(i)), vi);
                let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                // The clamped value plus the zero point is an integer in 0..=255, exact in f32.
                let q = _mm512_cvtps_epi32(_mm512_add_ps(_mm512_min_ps(_mm512_max_ps(r, vlo), vhi), vz));
                _mm_storeu_si128(dst.add(i).cast(), _mm512_cvtepi32_epi8(q));
                i += 16;
            }
            i
        }
    }
);

dot_vector!(
    /// Eight `i32` lanes in an AVX2 register, multiplied by the VEX-encoded `vpdpbusd` of
    /// AVX-VNNI: [`Avx512Dot`] at half the width, for CPUs without AVX-512.
    Avx2Dot(__m256i), lanes 8, registers 16, float Avx2,
    _mm256_setzero_si256, _mm256_loadu_si256, _mm256_add_epi32, _mm256_set1_epi32, _mm256_dpbusd_avx_epi32,
    _mm256_cvtepi32_ps,
    // The whole vectors of `quantize`; the macro quantizes the values after them one by one.
    quantize |src, n, inv, lo, hi, zero, dst| {
        // SAFETY: see above; pointers are the caller's contract.
        unsafe {
            let (vi, vlo, vhi, vz) =
                (_mm256_set1_ps(inv), _mm256_set1_ps(lo), _mm256_set1_ps(hi), _mm256_set1_ps(zero));
            let mut i = 0;
            while i + 8 <= n {
                let x = _mm256_mul_ps(_mm256_loadu_ps(src.add(i)), vi);
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                // The clamped value plus the zero point is an integer in 0..=255, exact in f32;
                // packing with unsigned saturation then keeps it as it is.
                let q = _mm256_cvtps_epi32(_mm256_add_ps(_mm256_min_ps(_mm256_max_ps(r, vlo), vhi), vz));
                let words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
                _mm_storel_epi64(dst.add(i).cast(), _mm_packus_epi16(words, words));
                i += 8;
            }
            i
        }
    }
);

/// A kernel written once over [`Vector`]: its arguments, and [`Kernel::run`] instantiated per
/// level by [`dispatch`]. Implementations mark `run` `#[inline(always)]`, so that its body is
/// compiled inside the level's `#[target_feature]` entry function.
pub(crate) trait Kernel {
    type Output;
    fn run<V: Vector>(self) -> Self::Output;
}

/// Runs `kernel` with the vectors of `level`. Panics if this CPU cannot run `level` (running
/// it anyway would be undefined behaviour); sessions validate their level up front.
pub(crate) fn dispatch<K: Kernel>(level: Level, kernel: K) -> K::Output {
    assert!(level.is_available(), "this CPU cannot run SIMD level {level:?}");
    match level {
        Level::Baseline => kernel.run::<Portable>(),
        // SAFETY: the level's features were detected (asserted above).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma | Level::Avx2Vnni => unsafe { entry_avx2(kernel) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 | Level::Avx512Vnni => unsafe { entry_avx512(kernel) },
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        Level::Neon | Level::NeonDot => unsafe { entry_neon(kernel) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn entry_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx2>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn entry_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx512>()
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn entry_neon<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Neon>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel tests check every available level, so the levels the product ships must be
    /// among them where they exist: NEON on every aarch64 CPU (and under qemu in CI).
    #[test]
    fn the_shipped_levels_are_detected() {
        let levels = Level::available();
        assert_eq!(levels[0], Level::Baseline);
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "levels ascend: {levels:?}");
        #[cfg(target_arch = "aarch64")]
        assert!(levels.contains(&Level::Neon), "NEON not detected: {levels:?}");
        // qemu's default CPU has the dot-product instructions, so CI runs their int8 kernel.
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            assert!(levels.contains(&Level::NeonDot), "dotprod not a level: {levels:?}");
        }
        assert_eq!(Level::best(), *levels.last().unwrap());
        for l in levels {
            assert!(l.is_available());
        }
    }
}
