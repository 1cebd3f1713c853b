//! Run-time CPU dispatch for the front end's hot loops, the way rustfft and rubato do it.
//!
//! The crate is compiled for baseline x86-64 (SSE2, 4 lanes, no FMA). The per-frame loops are
//! written once as `#[inline(always)]` bodies; a `#[target_feature(enable = "avx2,fma")]` wrapper
//! compiles a second copy that the compiler vectorises 8 lanes wide (with fused multiply-adds where
//! the body asks for them through [`madd`]). [`level`] detects the CPU once and caches the answer.
//!
//! Setting the environment variable `VOICEPRINT_SIMD=scalar` before the first call forces the
//! baseline path (for benchmarks and for ruling the fast path out when debugging).

use std::sync::atomic::{AtomicU8, Ordering};

/// Which copy of the hot loops to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Baseline code (SSE2 on x86-64, whatever the target allows elsewhere).
    Scalar,
    /// AVX2 + FMA copies (x86-64 only; chosen only when the CPU has both).
    Avx2Fma,
}

const UNKNOWN: u8 = 0;
const SCALAR: u8 = 1;
const AVX2_FMA: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The best level this CPU supports (detected on the first call, then cached).
#[inline]
pub(crate) fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        SCALAR => Level::Scalar,
        AVX2_FMA => Level::Avx2Fma,
        _ => {
            let detected = detect();
            let code = match detected {
                Level::Scalar => SCALAR,
                Level::Avx2Fma => AVX2_FMA,
            };
            LEVEL.store(code, Ordering::Relaxed);
            detected
        }
    }
}

fn detect() -> Level {
    let forced_scalar = std::env::var_os("VOICEPRINT_SIMD").is_some_and(|v| v == "scalar");
    if !forced_scalar && avx2_fma_available() {
        Level::Avx2Fma
    } else {
        Level::Scalar
    }
}

/// Whether the CPU can run the [`Level::Avx2Fma`] copies (ignores the environment override).
pub(crate) fn avx2_fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a · b + c`: one fused multiply-add when `FMA` (the caller is compiled with the `fma` target
/// feature), else a multiply and an add, rounded separately (never a call to libm's `fmaf`).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Runs `scalar` or, when `level` is [`Level::Avx2Fma`], `avx2` (a `#[target_feature]` function).
///
/// Written as a macro because a `#[target_feature]` function can only be called from `unsafe`
/// code, and the safety argument (the level was detected on this CPU) is the same everywhere.
macro_rules! dispatch {
    ($level:expr, avx2: $avx2:expr, scalar: $scalar:expr $(,)?) => {{
        match $level {
            #[cfg(target_arch = "x86_64")]
            $crate::features::simd::Level::Avx2Fma => {
                // SAFETY: `Level::Avx2Fma` is only produced by `simd::level()` (or a test that
                // checked `avx2_fma_available()`) after detecting AVX2 and FMA on this CPU.
                unsafe { $avx2 }
            }
            _ => $scalar,
        }
    }};
}
pub(crate) use dispatch;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn level_is_cached_and_consistent_with_the_cpu() {
        let first = level();
        assert_eq!(level(), first);
        if first == Level::Avx2Fma {
            assert!(avx2_fma_available());
        }
    }

    #[test]
    fn madd_without_fma_rounds_twice() {
        // (1 + 2^-12)² = 1 + 2^-11 + 2^-24 needs 25 bits: rounded it loses the 2^-24 that the
        // fused form keeps.
        let a = 1.0 + 1.0 / 4096.0;
        let plain = madd::<false>(a, a, -1.0);
        let fused = madd::<true>(a, a, -1.0);
        assert_eq!(plain, a * a - 1.0);
        assert_eq!(fused, a.mul_add(a, -1.0));
        assert_ne!(plain, fused);
    }
}
