//! Branch-free maths the compiler vectorises (libm's `logf` does not), written once and compiled
//! for both dispatch levels of [`super::simd`].

use super::simd::madd;

/// Natural log of every element, in place. Accurate to about 1e-7 relative for positive normal
/// inputs (Cephes `logf` polynomial); callers floor their inputs at `f32::EPSILON` first.
#[inline(always)]
pub(crate) fn ln_in_place<const FMA: bool>(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = ln_poly::<FMA>(*x);
    }
}

/// [`ln_in_place`]'s logarithm of one value (baseline arithmetic).
#[inline(always)]
pub(crate) fn ln_fast(x: f32) -> f32 {
    ln_poly::<false>(x)
}

/// The Cephes `logf` reduction and polynomial; with `FMA` the Horner steps are fused (at least as
/// accurate, about 2× fewer instructions).
#[inline(always)]
fn ln_poly<const FMA: bool>(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    // x = m · 2^e with m in [0.5, 1).
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < SQRT_HALF;
    e -= i32::from(small);
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let ef = e as f32;
    let z = m * m;
    let mut y = 7.037_683_6e-2_f32;
    y = madd::<FMA>(y, m, -1.151_461e-1);
    y = madd::<FMA>(y, m, 1.167_699_9e-1);
    y = madd::<FMA>(y, m, -1.242_014_1e-1);
    y = madd::<FMA>(y, m, 1.424_932_3e-1);
    y = madd::<FMA>(y, m, -1.666_805_8e-1);
    y = madd::<FMA>(y, m, 2.000_071_5e-1);
    y = madd::<FMA>(y, m, -2.499_999_4e-1);
    y = madd::<FMA>(y, m, 3.333_333e-1);
    y = y * m * z;
    y = madd::<FMA>(-2.121_944_4e-4, ef, y);
    y = madd::<FMA>(-0.5, z, y);
    madd::<FMA>(0.693_359_4, ef, m + y)
}

/// Sum of a slice with eight independent accumulators (vectorises, and is more accurate than a
/// serial `f32` sum). Lane `j` adds elements `j, j + 8, …` in order whatever the vector width, so
/// the result is bit-identical at every dispatch level.
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `Σ (x − m)²` with eight accumulators; never fused, so bit-identical at every dispatch level
/// (the VAD's decisions must not depend on the CPU).
#[inline(always)]
pub(crate) fn sum_sq_dev8(xs: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            let d = x - m;
            *a += d * d;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|x| (x - m) * (x - m)).sum::<f32>()
}
