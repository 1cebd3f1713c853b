//! Bounds-checked strided single-precision GEMM: a packed AVX2/FMA kernel for the network's
//! weights (chosen at run time), `matrixmultiply` (itself with runtime AVX2/FMA dispatch) otherwise.

/// A strided matrix view: element (i, j) is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A mutable strided matrix view with unit column stride.
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub off: usize,
    pub rs: usize,
}

fn last_index(off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    off + (rows - 1) * rs + (cols - 1) * cs
}

/// `C = A·B + beta·C` with A m×k, B k×n, C m×n.
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: MatMut<'_>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0, "sgemm with k = 0");
    assert!(
        last_index(a.off, m, k, a.rs, a.cs) < a.data.len(),
        "sgemm: A out of bounds"
    );
    assert!(
        last_index(b.off, k, n, b.rs, b.cs) < b.data.len(),
        "sgemm: B out of bounds"
    );
    assert!(
        last_index(c.off, m, n, c.rs, 1) < c.data.len(),
        "sgemm: C out of bounds"
    );
    let cast = |x: usize| x as isize;
    // SAFETY: every element the kernel touches lies inside the slices (checked above); A and B are
    // shared borrows and C an exclusive one, so they cannot alias.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr().add(a.off),
            cast(a.rs),
            cast(a.cs),
            b.data.as_ptr().add(b.off),
            cast(b.rs),
            cast(b.cs),
            beta,
            c.data.as_mut_ptr().add(c.off),
            cast(c.rs),
            1,
        );
    }
}

/// Row-block width of the packed weight layout and of the AVX2 micro-kernel.
const MR: usize = 4;
/// Column width of the AVX2 micro-kernel (two 8-lane vectors; 8 accumulators leave registers free).
const NR: usize = 16;
/// Depth of one pass over the packed weights (keeps the weight block in L2, the B panel in L1).
const KC: usize = 256;

/// A weight matrix (m × k, row-major in the checkpoint) prepared once at load time: packed in
/// 4-row blocks for the AVX2/FMA kernel when the CPU has it, else kept row-major for
/// `matrixmultiply`.
pub(crate) struct Weights {
    m: usize,
    k: usize,
    packed: bool,
    data: Vec<f32>,
}

/// Environment variable choosing the GEMM kernel at model load: `matrixmultiply` forces the
/// portable `matrixmultiply` crate; anything else (or unset) uses the AVX2/FMA kernel where the CPU
/// has AVX2 and FMA (faster on the development machine; see benches/README.md).
pub(crate) const GEMM_ENV: &str = "VOICEPRINT_GEMM";

fn has_avx2_fma() -> bool {
    if std::env::var_os(GEMM_ENV).is_some_and(|v| v == "matrixmultiply") {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Weights {
    /// Prepares the row-major `m × k` matrix `w`.
    pub(crate) fn new(w: &[f32], m: usize, k: usize) -> Self {
        Self::build(w, m, k, has_avx2_fma())
    }

    /// `kernel` must only be true when the CPU has AVX2 and FMA.
    fn build(w: &[f32], m: usize, k: usize, kernel: bool) -> Self {
        assert_eq!(w.len(), m * k, "weight size");
        if kernel && m.is_multiple_of(MR) {
            let mut data = Vec::with_capacity(m * k);
            for ib in 0..m / MR {
                for kk in 0..k {
                    for r in 0..MR {
                        data.push(w[(ib * MR + r) * k + kk]);
                    }
                }
            }
            Self {
                m,
                k,
                packed: true,
                data,
            }
        } else {
            Self {
                m,
                k,
                packed: false,
                data: w.to_vec(),
            }
        }
    }

    /// `C = W·B + beta·C` (beta 0 or 1) with B k × n (unit column stride), C m × n.
    pub(crate) fn gemm(&self, n: usize, b: Mat<'_>, beta: f32, c: MatMut<'_>) {
        if !self.packed || b.cs != 1 {
            let a = Mat {
                data: &self.data,
                off: 0,
                rs: self.k,
                cs: 1,
            };
            if self.packed {
                // B with a column stride: unpack (rare path, not used by the network)
                let mut plain = vec![0.0; self.m * self.k];
                for (i, v) in self.data.iter().enumerate() {
                    let (ib, rest) = (i / (self.k * MR), i % (self.k * MR));
                    plain[(ib * MR + rest % MR) * self.k + rest / MR] = *v;
                }
                let a = Mat { data: &plain, ..a };
                return sgemm(self.m, self.k, n, a, b, beta, c);
            }
            return sgemm(self.m, self.k, n, a, b, beta, c);
        }
        if n == 0 {
            return;
        }
        let (m, k) = (self.m, self.k);
        assert!(
            last_index(b.off, k, n, b.rs, 1) < b.data.len(),
            "gemm: B out of bounds"
        );
        assert!(
            last_index(c.off, m, n, c.rs, 1) < c.data.len(),
            "gemm: C out of bounds"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `packed` is only set when AVX2 and FMA were detected; all B and C accesses lie
        // inside the bounds asserted above (tails go through local buffers).
        unsafe {
            avx2::gemm(&self.data, m, k, n, b, beta != 0.0, c);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{KC, MR, Mat, MatMut, NR};
    use std::arch::x86_64::*;

    /// 4 × 16 micro-kernel over `kc` steps: `c[r][0..16] (+)= Σ_k a[k][r] · b[k][0..16]`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        rsb: usize,
        c: *mut f32,
        rsc: usize,
        acc: bool,
    ) {
        // SAFETY (whole body): the caller guarantees a[0..kc*4], b rows 0..kc (16 values each at
        // stride rsb) and c rows 0..4 (16 values each at stride rsc) are valid.
        unsafe {
            let z = _mm256_setzero_ps();
            let (mut c00, mut c01) = (z, z);
            let (mut c10, mut c11) = (z, z);
            let (mut c20, mut c21) = (z, z);
            let (mut c30, mut c31) = (z, z);
            for kk in 0..kc {
                let bp = b.add(kk * rsb);
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                let ap = a.add(kk * MR);
                let a0 = _mm256_broadcast_ss(&*ap);
                c00 = _mm256_fmadd_ps(a0, b0, c00);
                c01 = _mm256_fmadd_ps(a0, b1, c01);
                let a1 = _mm256_broadcast_ss(&*ap.add(1));
                c10 = _mm256_fmadd_ps(a1, b0, c10);
                c11 = _mm256_fmadd_ps(a1, b1, c11);
                let a2 = _mm256_broadcast_ss(&*ap.add(2));
                c20 = _mm256_fmadd_ps(a2, b0, c20);
                c21 = _mm256_fmadd_ps(a2, b1, c21);
                let a3 = _mm256_broadcast_ss(&*ap.add(3));
                c30 = _mm256_fmadd_ps(a3, b0, c30);
                c31 = _mm256_fmadd_ps(a3, b1, c31);
            }
            let rows = [[c00, c01], [c10, c11], [c20, c21], [c30, c31]];
            for (r, row) in rows.iter().enumerate() {
                let cp = c.add(r * rsc);
                for (v, &x) in row.iter().enumerate() {
                    let p = cp.add(v * 8);
                    let y = if acc {
                        _mm256_add_ps(_mm256_loadu_ps(p), x)
                    } else {
                        x
                    };
                    _mm256_storeu_ps(p, y);
                }
            }
        }
    }

    /// Blocked driver: K in passes of KC, N in panels of 16 (the last one through padded buffers),
    /// M in blocks of 4.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(
        a: &[f32],
        m: usize,
        k: usize,
        n: usize,
        b: Mat<'_>,
        beta: bool,
        c: MatMut<'_>,
    ) {
        let mut bt = [0f32; KC * NR];
        let mut ct = [0f32; MR * NR];
        let bp = b.data.as_ptr();
        let cp = c.data.as_mut_ptr();
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            let acc = beta || k0 > 0;
            let mut j0 = 0;
            while j0 < n {
                let nw = NR.min(n - j0);
                // SAFETY: indices stay within the bounds the caller asserted (B: rows k0..k0+kc,
                // columns j0..j0+nw; C: rows 0..m, same columns); packed A holds m/4 blocks of k×4.
                unsafe {
                    // pack the B panel contiguously (unit-stride loads, no cache-line splits)
                    for kk in 0..kc {
                        let src = bp.add(b.off + (k0 + kk) * b.rs + j0);
                        let dst = &mut bt[kk * NR..(kk + 1) * NR];
                        if nw == NR {
                            std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), NR);
                        } else {
                            for (j, d) in dst.iter_mut().enumerate() {
                                *d = if j < nw { *src.add(j) } else { 0.0 };
                            }
                        }
                    }
                    for ib in 0..m / MR {
                        let ap = a.as_ptr().add((ib * k + k0) * MR);
                        if nw == NR {
                            let cdst = cp.add(c.off + ib * MR * c.rs + j0);
                            kernel(kc, ap, bt.as_ptr(), NR, cdst, c.rs, acc);
                        } else {
                            for r in 0..MR {
                                let src = cp.add(c.off + (ib * MR + r) * c.rs + j0);
                                for j in 0..nw {
                                    ct[r * NR + j] = if acc { *src.add(j) } else { 0.0 };
                                }
                            }
                            kernel(kc, ap, bt.as_ptr(), NR, ct.as_mut_ptr(), NR, true);
                            for r in 0..MR {
                                let dst = cp.add(c.off + (ib * MR + r) * c.rs + j0);
                                for j in 0..nw {
                                    *dst.add(j) = ct[r * NR + j];
                                }
                            }
                        }
                    }
                }
                j0 += NR;
            }
            k0 += kc;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn packed_gemm_matches_reference() {
        for &(m, k, n, rsb_extra, beta) in &[
            (8, 3, 5, 0, 0.0),
            (32, 300, 61, 7, 1.0),
            (4, 513, 24, 0, 1.0),
            (12, 17, 49, 3, 0.0),
            // several K passes and N panels with a partial last one
            (136, 650, 530, 5, 1.0),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let rsb = n + rsb_extra;
            let b: Vec<f32> = (0..k * rsb)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            let c0: Vec<f32> = (0..m * (n + 2)).map(|i| (i % 13) as f32 - 6.0).collect();
            let mut c = c0.clone();
            #[cfg(target_arch = "x86_64")]
            let kernel = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            #[cfg(not(target_arch = "x86_64"))]
            let kernel = false;
            let w = Weights::build(&a, m, k, kernel);
            w.gemm(
                n,
                Mat {
                    data: &b,
                    off: 0,
                    rs: rsb,
                    cs: 1,
                },
                beta,
                MatMut {
                    data: &mut c,
                    off: 1,
                    rs: n + 2,
                },
            );
            for i in 0..m {
                for j in 0..n + 2 {
                    let got = c[i * (n + 2) + j];
                    if j == 0 || j == n + 1 {
                        assert_eq!(got, c0[i * (n + 2) + j], "outside the tile");
                        continue;
                    }
                    let jj = j - 1;
                    let mut want = f64::from(beta * c0[i * (n + 2) + j]);
                    for kk in 0..k {
                        want += f64::from(a[i * k + kk]) * f64::from(b[kk * rsb + jj]);
                    }
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{m}x{k}x{n} ({i},{jj}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
