//! Branch-free natural logarithm that the compiler vectorises (libm's `logf` does not).

/// Natural log of every element, in place. Accurate to about 1e-7 relative for positive normal
/// inputs (Cephes `logf` polynomial); callers floor their inputs at `f32::EPSILON` first.
pub(crate) fn ln_in_place(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = ln_fast(*x);
    }
}

#[inline(always)]
pub(crate) fn ln_fast(x: f32) -> f32 {
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
    y = y * m - 1.151_461e-1;
    y = y * m + 1.167_699_9e-1;
    y = y * m - 1.242_014_1e-1;
    y = y * m + 1.424_932_3e-1;
    y = y * m - 1.666_805_8e-1;
    y = y * m + 2.000_071_5e-1;
    y = y * m - 2.499_999_4e-1;
    y = y * m + 3.333_333e-1;
    y = y * m * z;
    y += -2.121_944_4e-4 * ef;
    y += -0.5 * z;
    m + y + 0.693_359_4 * ef
}

/// Sum of a slice with eight independent accumulators (vectorises, and is more accurate than a
/// serial `f32` sum).
#[inline]
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

/// `Σ (x − m)²` with eight accumulators.
#[inline]
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
