//! Winograd F(2×2, 3×3) for the head's stride-1 3×3 convolutions (Lavin & Gray, 2016).
//!
//! A 2×2 tile of outputs (two frequency rows × two time steps) of a 3×3 convolution needs 36
//! multiplies per input channel done directly, 16 after the Winograd transforms: the input tile
//! (4×4) goes through `Bᵀ·d·B`, the 3×3 kernel through `G·g·Gᵀ` (once, at load), the 16 products
//! of each tile position ξ become one GEMM `U[ξ] (cout × cin) · V[ξ] (cin × tiles)`, and `Aᵀ·M·A`
//! turns the 4×4 result back into the 2×2 outputs. Six of the head's ten 3×3 convolutions have
//! stride 1 (a third of the network's multiply-adds); on them this does 2.25× fewer multiply-adds.
//! The transforms only add and subtract (and the weight transform halves), so in f32 the result
//! differs from the direct convolution by rounding only (`tests::matches_direct_convolution`).
//!
//! The transforms run one frequency-row pair at a time with the time axis innermost, so every
//! loop is a contiguous vector loop: each input row is split once into its odd and even columns.

use super::ew::dispatch;
#[cfg(target_arch = "x86_64")]
use super::ew::has_avx2;
use super::gemm::{Mat, MatMut, Weights};
use super::net::grow;

/// Environment variable that turns the Winograd path off at model load (`off`), for A/B
/// benchmarks against the direct im2col convolution.
pub(crate) const WINOGRAD_ENV: &str = "VOICEPRINT_WINOGRAD";

/// Whether models loaded now use the Winograd path (default yes).
pub(crate) fn enabled() -> bool {
    std::env::var_os(WINOGRAD_ENV).is_none_or(|v| v != "off")
}

/// `G` of F(2, 3): the kernel transform.
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// A stride-1, padding-1 3×3 convolution prepared for Winograd F(2×2, 3×3).
pub(crate) struct Winograd {
    cin: usize,
    cout: usize,
    /// `U[ξ] = (G·g·Gᵀ)[ξ]` for the 16 tile positions ξ = 4p + q, each cout × cin.
    u: Vec<Weights>,
}

/// Buffers of one [`Winograd::run`], kept between calls.
#[derive(Default)]
pub(crate) struct WinogradScratch {
    /// Odd / even columns of one input row (with the zero padding at both ends).
    odd: Vec<f32>,
    even: Vec<f32>,
    /// The four input rows of the tile row after the time transform: [4 rows][4 q][tiles].
    rows: Vec<f32>,
    /// Transformed input `V`: [16 ξ][cin][tiles].
    v: Vec<f32>,
    /// GEMM output `M`: [16 ξ][cout][tiles].
    m: Vec<f32>,
}

impl WinogradScratch {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        [&self.odd, &self.even, &self.rows, &self.v, &self.m]
            .iter()
            .map(|v| v.capacity() * 4)
            .sum()
    }
}

impl Winograd {
    /// Prepares `w` ([cout][cin][3][3], row-major, BatchNorm already folded in).
    pub(crate) fn new(w: &[f32], cout: usize, cin: usize) -> Self {
        assert_eq!(w.len(), cout * cin * 9, "3×3 weight size");
        let mut u = vec![vec![0f32; cout * cin]; 16];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &w[(co * cin + ci) * 9..][..9];
                for p in 0..4 {
                    for q in 0..4 {
                        let mut s = 0f64;
                        for i in 0..3 {
                            for j in 0..3 {
                                s += G[p][i] * f64::from(g[i * 3 + j]) * G[q][j];
                            }
                        }
                        u[p * 4 + q][co * cin + ci] = s as f32;
                    }
                }
            }
        }
        Self {
            cin,
            cout,
            u: u.iter().map(|m| Weights::new(m, cout, cin)).collect(),
        }
    }

    /// `y = conv(x)` (or `y += conv(x)` with `accumulate`), without bias, for x [cin][fin][tl] and
    /// y [cout][fin][tl].
    pub(crate) fn run(
        &self,
        x: &[f32],
        fin: usize,
        tl: usize,
        y: &mut [f32],
        accumulate: bool,
        s: &mut WinogradScratch,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        assert!(x.len() >= cin * fin * tl, "winograd: input too short");
        assert!(y.len() >= cout * fin * tl, "winograd: output too short");
        if fin == 0 || tl == 0 {
            return;
        }
        let nb = tl.div_ceil(2);
        grow(&mut s.odd, nb + 1);
        grow(&mut s.even, nb + 1);
        grow(&mut s.rows, 16 * nb);
        grow(&mut s.v, 16 * cin * nb);
        grow(&mut s.m, 16 * cout * nb);
        for a in 0..fin.div_ceil(2) {
            for ci in 0..cin {
                input_transform(x, ci, cin, fin, tl, a, nb, s);
            }
            for (xi, u) in self.u.iter().enumerate() {
                u.gemm(
                    nb,
                    Mat {
                        data: &s.v,
                        off: xi * cin * nb,
                        rs: nb,
                        cs: 1,
                    },
                    0.0,
                    MatMut {
                        data: &mut s.m,
                        off: xi * cout * nb,
                        rs: nb,
                    },
                );
            }
            for co in 0..cout {
                output_transform(&s.m, co, cout, nb, fin, tl, a, y, accumulate, &mut s.rows);
            }
        }
    }
}

dispatch! {
    /// Transforms the 4×4 input tiles of tile row `a`, channel `ci`, for all time tiles:
    /// V[ξ][ci][·].
    #[allow(clippy::too_many_arguments)]
    fn input_transform / input_transform_scalar(
        x: &[f32],
        ci: usize,
        cin: usize,
        fin: usize,
        tl: usize,
        a: usize,
        nb: usize,
        s: &mut WinogradScratch
    ) {
        let (odd, even) = (&mut s.odd[..nb + 1], &mut s.even[..nb + 1]);
        let rows = &mut s.rows[..16 * nb];
        for r in 0..4 {
            let out = &mut rows[r * 4 * nb..(r + 1) * 4 * nb];
            // input row f = 2a − 1 + r; zero outside the input
            let f = (2 * a + r).wrapping_sub(1);
            if f >= fin {
                out.fill(0.0);
                continue;
            }
            let src = &x[(ci * fin + f) * tl..][..tl];
            // odd[b] = src[2b − 1], even[b] = src[2b], zero outside 0..tl
            let mut pairs = src.chunks_exact(2);
            for ((e, o), pair) in even.iter_mut().zip(&mut odd[1..]).zip(&mut pairs) {
                *e = pair[0];
                *o = pair[1];
            }
            let half = tl / 2;
            odd[0] = 0.0;
            even[half..].fill(0.0);
            odd[half + 1..].fill(0.0);
            if let [last] = pairs.remainder() {
                even[half] = *last;
            }
            // tile b reads d = (odd[b], even[b], odd[b + 1], even[b + 1]); out[q] = (Bᵀ·d)[q]
            let (t0, rest) = out.split_at_mut(nb);
            let (t1, rest) = rest.split_at_mut(nb);
            let (t2, t3) = rest.split_at_mut(nb);
            let (o0, o1, e0, e1) = (&odd[..nb], &odd[1..=nb], &even[..nb], &even[1..=nb]);
            for b in 0..nb {
                t0[b] = o0[b] - o1[b];
                t1[b] = e0[b] + o1[b];
                t2[b] = o1[b] - e0[b];
                t3[b] = e0[b] - e1[b];
            }
        }
        // frequency transform: V[4p + q] from the four rows' q-th vectors
        let rows: &[f32] = rows;
        for q in 0..4 {
            let row = |r: usize| &rows[(r * 4 + q) * nb..][..nb];
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            for (p, (x0, x1, sub)) in [
                (r0, r2, true),
                (r1, r2, false),
                (r2, r1, true),
                (r1, r3, true),
            ]
            .into_iter()
            .enumerate()
            {
                let off = ((p * 4 + q) * cin + ci) * nb;
                let v = s.v[off..off + nb].iter_mut().zip(x0.iter().zip(x1));
                if sub {
                    v.for_each(|(o, (a, b))| *o = a - b);
                } else {
                    v.for_each(|(o, (a, b))| *o = a + b);
                }
            }
        }
    }
}

dispatch! {
    /// `Aᵀ·M·A` for output channel `co` of tile row `a`: writes (or adds to) y rows 2a and 2a + 1.
    /// `tmp` holds at least 4 · nb values.
    #[allow(clippy::too_many_arguments)]
    fn output_transform / output_transform_scalar(
        m: &[f32],
        co: usize,
        cout: usize,
        nb: usize,
        fin: usize,
        tl: usize,
        a: usize,
        y: &mut [f32],
        accumulate: bool,
        tmp: &mut [f32]
    ) {
        let mrow = |xi: usize| &m[(xi * cout + co) * nb..][..nb];
        for i in 0..2 {
            let f = 2 * a + i;
            if f >= fin {
                break;
            }
            // S[q] = (Aᵀ·M)[i][q] over p: row 0 is M0 + M1 + M2, row 1 is M1 − M2 − M3
            let (s0, rest) = tmp[..4 * nb].split_at_mut(nb);
            let (s1, rest) = rest.split_at_mut(nb);
            let (s2, s3) = rest.split_at_mut(nb);
            for (q, sq) in [s0, s1, s2, s3].into_iter().enumerate() {
                let (m0, m1, m2, m3) = (mrow(q), mrow(4 + q), mrow(8 + q), mrow(12 + q));
                if i == 0 {
                    for b in 0..nb {
                        sq[b] = m0[b] + m1[b] + m2[b];
                    }
                } else {
                    for b in 0..nb {
                        sq[b] = m1[b] - m2[b] - m3[b];
                    }
                }
            }
            let (s0, rest) = tmp[..4 * nb].split_at(nb);
            let (s1, rest) = rest.split_at(nb);
            let (s2, s3) = rest.split_at(nb);
            // y[2b] = S0 + S1 + S2, y[2b + 1] = S1 − S2 − S3 (over q)
            let out = &mut y[(co * fin + f) * tl..][..tl];
            let mut pairs = out.chunks_exact_mut(2);
            for (b, pair) in (&mut pairs).enumerate() {
                let (y0, y1) = (s0[b] + s1[b] + s2[b], s1[b] - s2[b] - s3[b]);
                if accumulate {
                    pair[0] += y0;
                    pair[1] += y1;
                } else {
                    pair[0] = y0;
                    pair[1] = y1;
                }
            }
            if let [last] = pairs.into_remainder() {
                let b = tl / 2;
                let y0 = s0[b] + s1[b] + s2[b];
                if accumulate {
                    *last += y0;
                } else {
                    *last = y0;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The naive oracle: y[co][f][t] = Σ w[co][ci][kh][kw] · x[ci][f + kh − 1][t + kw − 1].
    fn direct(w: &[f32], x: &[f32], cout: usize, cin: usize, fin: usize, tl: usize) -> Vec<f64> {
        let mut y = vec![0f64; cout * fin * tl];
        for co in 0..cout {
            for f in 0..fin {
                for t in 0..tl {
                    let mut acc = 0f64;
                    for ci in 0..cin {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let (ff, tt) = ((f + kh).wrapping_sub(1), (t + kw).wrapping_sub(1));
                                if ff < fin && tt < tl {
                                    acc += f64::from(w[((co * cin + ci) * 3 + kh) * 3 + kw])
                                        * f64::from(x[(ci * fin + ff) * tl + tt]);
                                }
                            }
                        }
                    }
                    y[(co * fin + f) * tl + t] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn matches_direct_convolution() {
        let mut scratch = WinogradScratch::default();
        for (i, &(cout, cin, fin, tl)) in [
            (4, 1, 2, 1),
            (4, 3, 3, 2),
            (8, 5, 5, 7),
            (32, 32, 40, 37),
            (32, 32, 20, 276),
            (4, 2, 1, 9),
        ]
        .iter()
        .enumerate()
        {
            let w = data(cout * cin * 9, 1 + i as u64);
            let x = data(cin * fin * tl, 100 + i as u64);
            let want = direct(&w, &x, cout, cin, fin, tl);
            let wg = Winograd::new(&w, cout, cin);
            for accumulate in [false, true] {
                let y0 = data(cout * fin * tl, 200 + i as u64);
                let mut y = y0.clone();
                wg.run(&x, fin, tl, &mut y, accumulate, &mut scratch);
                for (j, (&got, &w)) in y.iter().zip(&want).enumerate() {
                    let w = if accumulate { w + f64::from(y0[j]) } else { w };
                    assert!(
                        (f64::from(got) - w).abs() <= 1e-5 * (cin as f64 * 9.0).sqrt() * 4.0,
                        "{cout}x{cin} {fin}x{tl} acc={accumulate} [{j}]: {got} vs {w}"
                    );
                }
            }
        }
    }
}
