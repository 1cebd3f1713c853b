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
    let [s] = sum8_n([xs]);
    s
}

/// [`sum8`] of `N` slices of one length at once: the same additions in the same order per slice
/// (bit-identical results), with `N` independent dependency chains in flight instead of one.
/// Slices of different lengths are summed one by one.
#[inline(always)]
pub(crate) fn sum8_n<const N: usize>(xs: [&[f32]; N]) -> [f32; N] {
    sum_lanes_n(xs, [0.0; N], identity)
}

/// `Σ (x − m)²` with eight accumulators; never fused, so bit-identical at every dispatch level
/// (the VAD's decisions must not depend on the CPU).
#[inline(always)]
pub(crate) fn sum_sq_dev8(xs: &[f32], m: f32) -> f32 {
    let [s] = sum_sq_dev8_n([xs], [m]);
    s
}

/// [`sum_sq_dev8`] of `N` slices of one length (slice `i` about `m[i]`) at once, bit-identical to
/// `N` separate calls.
#[inline(always)]
pub(crate) fn sum_sq_dev8_n<const N: usize>(xs: [&[f32]; N], m: [f32; N]) -> [f32; N] {
    sum_lanes_n(xs, m, sq_dev)
}

/// `Σ term(x, m[i])` over each slice: lane `j` of slice `i` adds the terms of elements
/// `j, j + 8, …` in order, then the eight lanes and the tail are added in order.
#[inline(always)]
fn sum_lanes_n<const N: usize>(
    xs: [&[f32]; N],
    m: [f32; N],
    term: impl Fn(f32, f32) -> f32 + Copy,
) -> [f32; N] {
    let len = xs.first().map_or(0, |x| x.len());
    if xs.iter().any(|x| x.len() != len) {
        let mut out = [0.0; N];
        for ((o, x), mi) in out.iter_mut().zip(xs).zip(m) {
            let [s] = sum_lanes_n([x], [mi], term);
            *o = s;
        }
        return out;
    }
    let full = len / 8 * 8;
    let body = xs.map(|x| &x[..full]);
    let mut acc = [[0.0f32; 8]; N];
    let mut k = 0;
    while k + 8 <= full {
        for ((a, x), &mi) in acc.iter_mut().zip(&body).zip(&m) {
            for (al, &xl) in a.iter_mut().zip(&x[k..k + 8]) {
                *al += term(xl, mi);
            }
        }
        k += 8;
    }
    let mut out = [0.0; N];
    for (((o, a), x), mi) in out.iter_mut().zip(&acc).zip(xs).zip(m) {
        *o = finish_lanes(a, &x[full..], mi, term);
    }
    out
}

/// The end of [`sum_lanes_n`] for one slice: its eight lane sums, then the terms of the tail past
/// the last whole group of eight, in order.
#[inline(always)]
pub(crate) fn finish_lanes(
    lanes: &[f32; 8],
    tail: &[f32],
    m: f32,
    term: impl Fn(f32, f32) -> f32,
) -> f32 {
    lanes.iter().sum::<f32>() + tail.iter().map(|&v| term(v, m)).sum::<f32>()
}

/// The term of [`sum8`].
#[inline(always)]
pub(crate) fn identity(x: f32, _m: f32) -> f32 {
    x
}

/// The term of [`sum_sq_dev8`], never fused.
#[inline(always)]
pub(crate) fn sq_dev(x: f32, m: f32) -> f32 {
    let d = x - m;
    d * d
}
