//! Element-wise loops of the forward pass (BatchNorm + ReLU, bias, masks, sums, the input
//! transpose). The crate is built for baseline x86-64 (SSE2), so each loop also exists compiled
//! with AVX2 and FMA enabled, chosen once at run time when the CPU has them. Both versions run the
//! same Rust code in the same order (Rust never fuses `a·b + c` on its own), so they agree exactly.

#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Defines `name` (dispatching to an AVX2/FMA build of the body when the CPU has it) and
/// `scalar`, the baseline build of the same body.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident / $scalar:ident ($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub(super) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $scalar($($arg),*)
                }
                if has_avx2() {
                    // SAFETY: AVX2 and FMA were detected on this CPU.
                    return unsafe { wide($($arg),*) };
                }
            }
            $scalar($($arg),*)
        }

        $(#[$doc])*
        #[inline(always)]
        pub(super) fn $scalar($($arg: $ty),*) $(-> $ret)? $body
    };
}
pub(super) use dispatch;

dispatch! {
    /// `dst = max(src·s + b, 0)`.
    fn affine_relu / affine_relu_scalar(dst: &mut [f32], src: &[f32], s: f32, b: f32) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v * s + b).max(0.0);
        }
    }
}

dispatch! {
    /// `x = max(x·s + b, 0)`.
    fn affine_relu_in_place / affine_relu_in_place_scalar(x: &mut [f32], s: f32, b: f32) {
        x.iter_mut().for_each(|v| *v = (*v * s + b).max(0.0));
    }
}

dispatch! {
    /// `x += b`, then ReLU if `relu`.
    fn add_bias / add_bias_scalar(x: &mut [f32], b: f32, relu: bool) {
        if relu {
            x.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        } else {
            x.iter_mut().for_each(|v| *v += b);
        }
    }
}

dispatch! {
    /// `x = max(x, 0)`.
    fn relu / relu_scalar(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

dispatch! {
    /// `x *= m`.
    fn scale / scale_scalar(x: &mut [f32], m: f32) {
        x.iter_mut().for_each(|v| *v *= m);
    }
}

dispatch! {
    /// Σ x in f64, over four interleaved partial sums (so that it vectorises).
    fn sum_f64 / sum_f64_scalar(x: &[f32]) -> f64 {
        let mut acc = [0f64; 4];
        let mut quads = x.chunks_exact(4);
        for q in &mut quads {
            for (a, &v) in acc.iter_mut().zip(q) {
                *a += f64::from(v);
            }
        }
        let tail: f64 = quads.remainder().iter().map(|&v| f64::from(v)).sum();
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }
}

dispatch! {
    /// `src` is rows × `cols` row-major; writes its transpose (cols × rows) to `dst`.
    fn transpose / transpose_scalar(src: &[f32], cols: usize, dst: &mut [f32]) {
        let rows = src.len() / cols;
        for (j, row) in src.chunks_exact(cols).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                dst[f * rows + j] = v;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 97.0)
            .collect()
    }

    #[test]
    fn dispatched_loops_match_scalar() {
        for n in [0, 1, 7, 8, 9, 31, 100, 257, 1000] {
            let src = data(n, 1);
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            affine_relu(&mut a, &src, 0.73, -0.2);
            affine_relu_scalar(&mut b, &src, 0.73, -0.2);
            assert_eq!(a, b);
            assert!(a.iter().all(|&v| v >= 0.0));

            let (mut a, mut b) = (src.clone(), src.clone());
            affine_relu_in_place(&mut a, -1.3, 0.5);
            affine_relu_in_place_scalar(&mut b, -1.3, 0.5);
            assert_eq!(a, b);

            for relu in [false, true] {
                let (mut a, mut b) = (src.clone(), src.clone());
                add_bias(&mut a, 0.25, relu);
                add_bias_scalar(&mut b, 0.25, relu);
                assert_eq!(a, b);
            }

            let (mut a, mut b) = (src.clone(), src.clone());
            relu(&mut a);
            relu_scalar(&mut b);
            assert_eq!(a, b);
            assert_eq!(
                a.iter().filter(|&&v| v > 0.0).count(),
                src.iter().filter(|&&v| v > 0.0).count()
            );

            let (mut a, mut b) = (src.clone(), src.clone());
            scale(&mut a, 0.37);
            scale_scalar(&mut b, 0.37);
            assert_eq!(a, b);

            let want: f64 = src.iter().map(|&v| f64::from(v)).sum();
            let (s, t) = (sum_f64(&src), sum_f64_scalar(&src));
            assert_eq!(s.to_bits(), t.to_bits());
            assert!(
                (s - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{s} vs {want}"
            );
        }
        let src = data(7 * 80, 3);
        let (mut a, mut b) = (vec![0f32; src.len()], vec![0f32; src.len()]);
        transpose(&src, 80, &mut a);
        transpose_scalar(&src, 80, &mut b);
        assert_eq!(a, b);
        assert_eq!(a[5 * 7 + 2], src[2 * 80 + 5]);
    }
}
