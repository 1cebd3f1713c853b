#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::fastmath::ln_fast;
use super::*;
use crate::npy::read_f32_matrix;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden");
const INPUTS_16K: [&str; 5] = [
    "a_espeak_en_us",
    "b_espeak_en_f3",
    "c_flite_slt",
    "d_asterisk_allison_16k",
    "e_silence_noise",
];
const LOG_FLOOR: f32 = -15.942_385;

/// Test-only reader for PCM16 mono WAVs: walks the RIFF chunks, returns (rate, samples in 16-bit scale).
pub(crate) fn read_wav_pcm16(path: &str) -> (u32, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut pos = 12;
    let mut rate = 0;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM only");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono only");
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16);
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                .collect();
            return (rate, samples);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk in {path}");
}

fn golden(input: &str, name: &str) -> FeatureMatrix {
    read_f32_matrix(format!("{GOLDEN}/{input}/{name}.npy")).unwrap()
}

fn wav(name: &str) -> (u32, Vec<f32>) {
    read_wav_pcm16(&format!("{GOLDEN}/inputs/{name}.wav"))
}

/// README §7 comparison for log-mel values.
fn assert_fbank_close(mine: &FeatureMatrix, gold: &FeatureMatrix, what: &str) {
    assert_eq!(mine.num_frames(), gold.num_frames(), "{what}: frame count");
    assert_eq!(mine.dim(), gold.dim(), "{what}: dim");
    let mut sum = 0.0f64;
    for (t, (m, g)) in mine.rows().zip(gold.rows()).enumerate() {
        let frame_max = g.iter().copied().fold(f32::MIN, f32::max);
        for (b, (&x, &y)) in m.iter().zip(g).enumerate() {
            let d = (x - y).abs();
            sum += f64::from(d);
            assert!(d <= 1e-2, "{what}: frame {t} bin {b}: {x} vs {y}");
            if y >= frame_max - 8.0 {
                assert!(
                    d <= 1e-3,
                    "{what}: strong bin, frame {t} bin {b}: {x} vs {y}"
                );
            }
        }
    }
    let mean = sum / gold.as_slice().len() as f64;
    assert!(mean <= 1e-4, "{what}: mean |diff| {mean}");
}

fn assert_mfcc_close(mine: &FeatureMatrix, gold: &FeatureMatrix, what: &str) {
    assert_eq!(mine.num_frames(), gold.num_frames(), "{what}: frame count");
    assert_eq!(mine.dim(), gold.dim(), "{what}: dim");
    let mut sum = 0.0f64;
    for (t, (m, g)) in mine.rows().zip(gold.rows()).enumerate() {
        assert!(
            (m[0] - g[0]).abs() <= 1e-4,
            "{what}: c0 frame {t}: {} vs {}",
            m[0],
            g[0]
        );
        for (k, (&x, &y)) in m.iter().zip(g).enumerate() {
            let d = (x - y).abs();
            sum += f64::from(d);
            assert!(d <= 1e-2, "{what}: frame {t} c{k}: {x} vs {y}");
        }
    }
    let mean = sum / gold.as_slice().len() as f64;
    assert!(mean <= 5e-4, "{what}: mean |diff| {mean}");
}

#[test]
fn fbank80_matches_golden_16k() {
    let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    let expected_frames = [150, 386, 1033, 237, 198];
    for (name, frames) in INPUTS_16K.iter().zip(expected_frames) {
        let (rate, x) = wav(name);
        assert_eq!(rate, 16_000);
        let mine = fb.compute(&x);
        assert_eq!(mine.num_frames(), frames);
        assert_eq!(fb.num_frames(x.len()), frames);
        assert_fbank_close(&mine, &golden(name, "fbank80"), name);
    }
}

#[test]
fn silent_frames_hit_the_log_floor() {
    let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    let (_, x) = wav("e_silence_noise");
    let mine = fb.compute(&x);
    for t in (0..48).chain(150..198) {
        for &v in mine.row(t) {
            assert!((v - LOG_FLOOR).abs() <= 1e-5, "frame {t}: {v}");
        }
    }
    // The noise frames are well above the floor.
    assert!(mine.row(100).iter().all(|&v| v > 0.0));
}

#[test]
fn fbank80_cmn_matches_golden() {
    let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    for name in INPUTS_16K {
        // CMN alone, on the golden fbank: exact up to one rounding.
        let mut g = golden(name, "fbank80");
        apply_cmn(&mut g);
        let gold_cmn = golden(name, "fbank80_cmn");
        for (a, b) in g.as_slice().iter().zip(gold_cmn.as_slice()) {
            assert!((a - b).abs() <= 1e-6, "{name}: cmn {a} vs {b}");
        }
        // And the whole recipe from the waveform.
        let (_, x) = wav(name);
        let mut mine = fb.compute(&x);
        apply_cmn(&mut mine);
        assert_fbank_close(&mine, &gold_cmn, name);
    }
}

#[test]
fn mfcc13_matches_golden_16k() {
    let mfcc = Mfcc::new(&MfccOptions::kaldi(16_000)).unwrap();
    for name in INPUTS_16K {
        let (_, x) = wav(name);
        assert_mfcc_close(&mfcc.compute(&x), &golden(name, "mfcc13"), name);
    }
}

#[test]
fn fbank23_and_mfcc13_match_golden_8k() {
    let (rate, x) = wav("d_8k_pcm16");
    assert_eq!(rate, 8_000);
    let fb = Fbank::new(&FbankOptions::kaldi(8_000, 23)).unwrap();
    let mine = fb.compute(&x);
    assert_eq!(mine.num_frames(), 237);
    assert_fbank_close(&mine, &golden("d_8k_pcm16", "fbank23"), "fbank23 8k");
    let mfcc = Mfcc::new(&MfccOptions::kaldi(8_000)).unwrap();
    assert_mfcc_close(
        &mfcc.compute(&x),
        &golden("d_8k_pcm16", "mfcc13"),
        "mfcc13 8k",
    );
}

/// Direct O(N²) float64 implementation of README §3, written independently of the fast path.
fn oracle_fbank(x: &[f32], rate: u32, bins: usize) -> Vec<Vec<f64>> {
    let len = (rate as usize) / 40;
    let shift = (rate as usize) / 100;
    let nfft = len.next_power_of_two();
    let mel = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let (lo, hi) = (mel(20.0), mel(f64::from(rate) / 2.0));
    let delta = (hi - lo) / (bins as f64 + 1.0);
    let mut out = Vec::new();
    let mut start = 0;
    while start + len <= x.len() {
        let mut f: Vec<f64> = x[start..start + len]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mean = f.iter().sum::<f64>() / len as f64;
        f.iter_mut().for_each(|v| *v -= mean);
        for n in (1..len).rev() {
            f[n] -= 0.97 * f[n - 1];
        }
        f[0] -= 0.97 * f[0];
        for (n, v) in f.iter_mut().enumerate() {
            let a = 2.0 * std::f64::consts::PI * n as f64 / (len as f64 - 1.0);
            *v *= (0.5 - 0.5 * a.cos()).powf(0.85);
        }
        let power: Vec<f64> = (0..nfft / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (n, v) in f.iter().enumerate() {
                    let ph = -2.0 * std::f64::consts::PI * (k * n) as f64 / nfft as f64;
                    re += v * ph.cos();
                    im += v * ph.sin();
                }
                re * re + im * im
            })
            .collect();
        let row = (0..bins)
            .map(|b| {
                let (l, c, r) = (
                    lo + b as f64 * delta,
                    lo + (b + 1) as f64 * delta,
                    lo + (b + 2) as f64 * delta,
                );
                let e: f64 = power
                    .iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let m = mel(k as f64 * f64::from(rate) / nfft as f64);
                        let w = if m > l && m < r {
                            if m <= c {
                                (m - l) / (c - l)
                            } else {
                                (r - m) / (r - c)
                            }
                        } else {
                            0.0
                        };
                        w * p
                    })
                    .sum();
                e.max(f64::from(f32::EPSILON)).ln()
            })
            .collect();
        out.push(row);
        start += shift;
    }
    out
}

#[test]
fn realfft_path_matches_naive_dft_oracle() {
    for (name, rate, bins) in [("a_espeak_en_us", 16_000, 80), ("d_8k_pcm16", 8_000, 23)] {
        let (_, x) = wav(name);
        let x = &x[..x.len().min(rate as usize / 2)];
        let mine = Fbank::new(&FbankOptions::kaldi(rate, bins))
            .unwrap()
            .compute(x);
        let oracle = oracle_fbank(x, rate, bins);
        assert_eq!(mine.num_frames(), oracle.len());
        for (t, (m, o)) in mine.rows().zip(&oracle).enumerate() {
            let frame_max = o.iter().copied().fold(f64::MIN, f64::max);
            for (b, (&a, &e)) in m.iter().zip(o).enumerate() {
                let tol = if e >= frame_max - 8.0 { 1e-3 } else { 1e-2 };
                assert!(
                    (f64::from(a) - e).abs() <= tol,
                    "{name}: frame {t} bin {b}: {a} vs oracle {e}"
                );
            }
        }
    }
}

#[test]
fn streaming_equals_batch_bit_for_bit() {
    let (_, x) = wav("b_espeak_en_f3");
    let opts = FbankOptions::kaldi(16_000, 80);
    let batch = Fbank::new(&opts).unwrap().compute(&x);
    let mut stream = StreamingFbank::new(&opts).unwrap();
    let mut out = Vec::new();
    // Irregular chunk sizes, including empty and sub-frame pushes.
    let sizes = [0usize, 1, 7, 159, 160, 161, 399, 400, 401, 1000, 3333];
    let mut pos = 0;
    let mut i = 0;
    while pos < x.len() {
        let n = sizes[i % sizes.len()].min(x.len() - pos);
        let emitted = stream.push(&x[pos..pos + n], &mut out);
        assert_eq!(out.len() % 80, 0);
        assert!(emitted <= n / 160 + 2);
        pos += n;
        i += 1;
    }
    assert_eq!(stream.frames_emitted() as usize, batch.num_frames());
    assert_eq!(out.as_slice(), batch.as_slice());
    let mut centred = opts;
    centred.frame.snip_edges = false;
    assert!(StreamingFbank::new(&centred).is_err());
}

#[test]
fn centred_frames_follow_kaldi_count_and_reflection() {
    let mut opts = FbankOptions::kaldi(16_000, 80);
    opts.frame.snip_edges = false;
    let fb = Fbank::new(&opts).unwrap();
    let (_, x) = wav("a_espeak_en_us");
    let m = fb.compute(&x);
    assert_eq!(m.num_frames(), (x.len() + 80) / 160);
    // Interior frame j (centred) equals snip-edges frame starting at j*160 + 80 - 200.
    let snip = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    let j = 10;
    let start = j * 160 + 80 - 200;
    let reference = snip.compute(&x[start..start + 400]);
    assert_eq!(m.row(j), reference.row(0));
    // A short signal still yields frames (reflected), all finite.
    let short = fb.compute(&x[..100]);
    assert_eq!(short.num_frames(), 1);
    assert!(short.as_slice().iter().all(|v| v.is_finite()));
}

#[test]
fn rejects_bad_options() {
    let mut o = FbankOptions::kaldi(16_000, 80);
    o.frame.dither = 1.0;
    assert_eq!(
        Fbank::new(&o).unwrap_err(),
        FeatureError::DitherUnsupported(1.0)
    );
    let mut o = FbankOptions::kaldi(16_000, 80);
    o.high_freq = 9000.0;
    assert!(Fbank::new(&o).is_err());
    let mut o = FbankOptions::kaldi(16_000, 80);
    o.frame.frame_shift_ms = 0.0;
    assert!(Fbank::new(&o).is_err());
    // Too many bins for a 256-point FFT: some filter is empty.
    assert!(Fbank::new(&FbankOptions::kaldi(8_000, 200)).is_err());
    let mut m = MfccOptions::kaldi(8_000);
    m.num_ceps = 24;
    assert!(Mfcc::new(&m).is_err());
    assert!(Fbank::new(&FbankOptions::kaldi(0, 80)).is_err());
}

#[test]
fn short_and_empty_inputs() {
    let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    assert_eq!(fb.compute(&[]).num_frames(), 0);
    assert_eq!(fb.compute(&[1.0; 399]).num_frames(), 0);
    assert_eq!(fb.compute(&[1.0; 400]).num_frames(), 1);
    // Constant input: DC removal leaves silence, so the floor.
    assert!(
        fb.compute(&[1000.0; 400])
            .as_slice()
            .iter()
            .all(|&v| (v - LOG_FLOOR).abs() < 1e-5)
    );
}

#[test]
fn fast_log_is_accurate() {
    let mut x = f32::EPSILON;
    while x < 1e30 {
        let exact = f64::from(x).ln();
        let got = f64::from(ln_fast(x));
        assert!(
            (got - exact).abs() <= 2e-7 * exact.abs().max(1.0),
            "ln({x}) = {got}, want {exact}"
        );
        x *= 1.001_3;
    }
    assert!((ln_fast(f32::EPSILON) - LOG_FLOOR).abs() < 1e-6);
}

#[test]
fn matrix_api() {
    assert!(FeatureMatrix::new(vec![0.0; 5], 2).is_err());
    let m = FeatureMatrix::new((0..6).map(|v| v as f32).collect(), 2).unwrap();
    assert_eq!(m.num_frames(), 3);
    assert_eq!(m.row(1), &[2.0, 3.0]);
    let s = m.select_rows(&[true, false, true]);
    assert_eq!(s.as_slice(), &[0.0, 1.0, 4.0, 5.0]);
    assert_eq!(m.select_rows(&[false]).num_frames(), 0);
    let mut c = m.clone();
    apply_cmvn(&mut c);
    for d in 0..2 {
        let col: Vec<f32> = c.rows().map(|r| r[d]).collect();
        let mean: f32 = col.iter().sum::<f32>() / 3.0;
        let var: f32 = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 3.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
    let mut empty = FeatureMatrix::zeros(0, 80);
    apply_cmn(&mut empty);
    assert!(empty.is_empty());
}

/// The dispatch levels this CPU can run: always the baseline, plus AVX2 + FMA where available.
fn levels() -> Vec<simd::Level> {
    let mut v = vec![simd::Level::Scalar];
    if simd::avx2_fma_available() {
        v.push(simd::Level::Avx2Fma);
    } else {
        eprintln!("AVX2 + FMA not available: only the baseline path is tested");
    }
    v
}

#[test]
fn every_dispatch_level_matches_golden() {
    for level in levels() {
        let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80))
            .unwrap()
            .with_level(level);
        let mfcc = Mfcc::new(&MfccOptions::kaldi(16_000))
            .unwrap()
            .with_level(level);
        for name in INPUTS_16K {
            let (_, x) = wav(name);
            let what = format!("{name} {level:?}");
            assert_fbank_close(&fb.compute(&x), &golden(name, "fbank80"), &what);
            let mut cmn = fb.compute(&x);
            norm::apply_cmn_at(level, &mut cmn);
            assert_fbank_close(&cmn, &golden(name, "fbank80_cmn"), &what);
            assert_mfcc_close(&mfcc.compute(&x), &golden(name, "mfcc13"), &what);
        }
        let (_, x) = wav("d_8k_pcm16");
        let fb23 = Fbank::new(&FbankOptions::kaldi(8_000, 23))
            .unwrap()
            .with_level(level);
        let mfcc8 = Mfcc::new(&MfccOptions::kaldi(8_000))
            .unwrap()
            .with_level(level);
        let what = format!("8k {level:?}");
        assert_fbank_close(&fb23.compute(&x), &golden("d_8k_pcm16", "fbank23"), &what);
        assert_mfcc_close(&mfcc8.compute(&x), &golden("d_8k_pcm16", "mfcc13"), &what);
    }
}

#[test]
fn avx2_and_baseline_paths_agree() {
    let Some(&fast) = levels().get(1) else {
        return;
    };
    // Golden speech plus a loud synthetic chirp with an offset (exercises DC removal and a wide
    // dynamic range).
    let (_, speech) = wav("c_flite_slt");
    let chirp: Vec<f32> = (0..48_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            900.0 + 12_000.0 * (2.0 * std::f32::consts::PI * (100.0 + 2_000.0 * t) * t).sin()
        })
        .collect();
    for (x, rate, bins) in [
        (&speech, 16_000, 80),
        (&chirp, 16_000, 80),
        (&chirp, 8_000, 23),
    ] {
        let opts = FbankOptions::kaldi(rate, bins);
        let base = Fbank::new(&opts).unwrap().with_level(simd::Level::Scalar);
        let avx = Fbank::new(&opts).unwrap().with_level(fast);
        let (a, b) = (base.compute(x), avx.compute(x));
        assert_eq!(a.num_frames(), b.num_frames());
        // Only the mel dot products and the log are fused (a positive sum, a polynomial): a few
        // ulps of the mel energy, ~1e-6 in the log domain, in every bin.
        let mut worst = 0.0f32;
        for (&u, &v) in a.as_slice().iter().zip(b.as_slice()) {
            worst = worst.max((u - v).abs());
            assert!((u - v).abs() <= 1e-5, "{rate} Hz: {u} vs {v}");
        }
        eprintln!("{rate} Hz fbank{bins}: max |AVX2 − baseline| = {worst:e}");
    }
    // The MFCC's energy coefficient and the CMN are computed without fused operations.
    let mfcc = MfccOptions::kaldi(16_000);
    let a = Mfcc::new(&mfcc).unwrap().with_level(simd::Level::Scalar);
    let b = Mfcc::new(&mfcc).unwrap().with_level(fast);
    let (ma, mb) = (a.compute(&speech), b.compute(&speech));
    for (ra, rb) in ma.rows().zip(mb.rows()) {
        assert_eq!(ra[0], rb[0]);
    }
    let fb = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap();
    let m = fb.compute(&speech);
    let (mut ca, mut cb) = (m.clone(), m);
    norm::apply_cmn_at(simd::Level::Scalar, &mut ca);
    norm::apply_cmn_at(fast, &mut cb);
    assert_eq!(ca, cb);
}

#[test]
fn energies_come_with_identical_features() {
    let (_, x) = wav("c_flite_slt");
    for level in levels() {
        for remove_dc in [true, false] {
            let mut opts = FbankOptions::kaldi(16_000, 80);
            opts.frame.remove_dc = remove_dc;
            let fb = Fbank::new(&opts).unwrap().with_level(level);
            let (m, e) = fb.compute_with_energies(&x);
            assert_eq!(m, fb.compute(&x));
            assert_eq!(e.len(), m.num_frames());
            // Σ (x − mean)² of the raw frame, whatever remove_dc says.
            for (t, &got) in e.iter().enumerate() {
                let f = &x[t * 160..t * 160 + 400];
                let mean = f.iter().map(|&v| f64::from(v)).sum::<f64>() / 400.0;
                let want: f64 = f.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
                let err = (f64::from(got) - want).abs();
                assert!(err <= 1e-4 * want + 1e-3, "frame {t}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn fused_pass_gives_the_rows_energies_sums_and_pieces_of_the_separate_ones() {
    let (_, speech) = wav("c_flite_slt");
    let (_, speech8) = wav("d_8k_pcm16");
    for level in levels() {
        for (x, rate, bins, remove_dc) in [
            (&speech, 16_000, 80, true),
            (&speech8, 8_000, 23, true),
            (&speech, 16_000, 80, false),
        ] {
            let mut opts = FbankOptions::kaldi(rate, bins);
            opts.frame.remove_dc = remove_dc;
            let fb = Fbank::new(&opts).unwrap().with_level(level);
            let mut ws = fb.workspace();
            for n in [0, 1, 399, 400, 401, 559, 560, x.len() - 1, x.len()] {
                let x = &x[..n.min(x.len())];
                let (mut data, mut energies, mut sums) = (vec![7.0], vec![7.0], vec![7.0]);
                let mut pieces: Vec<f32> = Vec::new();
                let mut lens = Vec::new();
                fb.compute_fused(x, &mut ws, &mut data, &mut energies, &mut sums, |p| {
                    pieces.extend_from_slice(p);
                    lens.push(p.len());
                });
                let (want, want_e) = fb.compute_with_energies(x);
                assert_eq!(data, want.as_slice(), "{rate} Hz, {n} samples");
                assert_eq!(energies, want_e);
                // The runs of pieces tile the signal in whole frame-shift steps.
                assert_eq!(pieces, x);
                let shift = fb.options().frame.frame_shift_samples();
                assert!(lens.iter().rev().skip(1).all(|&l| l % shift == 0 && l > 0));
                // Column sums as CMN computes them, and CMN from them bit-identical.
                let m = FeatureMatrix::new(data, bins).unwrap();
                let mut a = m.clone();
                norm::apply_cmn_at(level, &mut a);
                let mut b = m;
                apply_cmn_with_sums(level, &mut b, &sums);
                assert_eq!(a, b);
            }
        }
    }
}

#[test]
fn grouped_avx2_mel_sums_equal_the_per_filter_fused_sums() {
    if !simd::avx2_fma_available() {
        eprintln!("AVX2 + FMA not available: nothing to compare");
        return;
    }
    // Against the per-filter loop of `MelBanks::apply` with fused lanes, written out with
    // `mul_add` (correctly rounded, like the hardware FMA): bit-identical.
    let (_, speech) = wav("c_flite_slt");
    for (rate, bins) in [(16_000, 80), (8_000, 23), (16_000, 23), (8_000, 15)] {
        let fb = Fbank::new(&FbankOptions::kaldi(rate, bins)).unwrap();
        let len = fb.mel_power_len();
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for trial in 0..200 {
            // Power spectra over a wide dynamic range (1e-3 .. 1e12), zero past the last bin.
            let mut power: Vec<f32> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    10f32.powf((s >> 40) as f32 / (1u64 << 24) as f32 * 15.0 - 3.0)
                })
                .collect();
            if trial == 0 {
                power.iter_mut().for_each(|p| *p = 0.0);
            }
            if trial == 1 {
                // Real frames' spectra.
                power = fb.power_of_frame(&speech[16_000..16_000 + fb.frame_len_samples()]);
            }
            let got = fb.mel_avx2(&power);
            let want = fb.mel_reference(&power);
            assert_eq!(got.len(), bins);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rate} Hz fbank{bins} trial {trial}"
            );
        }
    }
}
