#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::features::tests::read_wav_pcm16;
use crate::features::{Fbank, FbankOptions};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden/inputs");

/// Deterministic Gaussian-ish noise (sum of 4 uniforms from an LCG).
fn noise(n: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uni = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    (0..n)
        .map(|_| (uni() + uni() + uni() + uni()) * sigma * 1.732)
        .collect()
}

/// A voiced-speech stand-in: harmonics of 140 Hz with a slow amplitude modulation that never
/// drops below 30 %.
fn voiced(n: usize, rate: u32, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let env = 0.65 + 0.35 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
            let s: f32 = (1..=5)
                .map(|h| (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin() / h as f32)
                .sum();
            amp * env * s / 1.5
        })
        .collect()
}

#[test]
fn silence_and_low_noise_are_not_speech() {
    let (rate, x) = read_wav_pcm16(&format!("{GOLDEN}/e_silence_noise.wav"));
    let r = assess(&x, rate, &VadOptions::default());
    assert_eq!(r.speech.len(), 198);
    assert!(r.speech.iter().all(|s| !s));
    assert_eq!(r.quality.net_speech_seconds, 0.0);
    assert_eq!(r.quality.snr_db, 0.0);
    assert!((r.quality.duration_seconds - 2.0).abs() < 1e-9);
    assert_eq!(r.quality.clipping_ratio, 0.0);
}

#[test]
fn gap_boundaries_found_within_two_frames() {
    let rate = 16_000;
    let opts = VadOptions::default();
    let (len, hop) = opts.frame_samples(rate);
    // speech 1.2 s | zeros 0.8 s | speech 1.0 s | noise (sigma 8) 1.1 s | speech 0.9 s
    let segments: [(usize, Option<f32>); 5] = [
        (19_200, None),
        (12_800, Some(0.0)),
        (16_000, None),
        (17_600, Some(8.0)),
        (14_400, None),
    ];
    let mut x = Vec::new();
    let mut gaps = Vec::new();
    for (i, &(n, gap)) in segments.iter().enumerate() {
        match gap {
            None => x.extend(voiced(n, rate, 4000.0)),
            Some(sigma) => {
                gaps.push((x.len(), x.len() + n));
                x.extend(noise(n, sigma, i as u64));
            }
        }
    }
    let mask = speech_mask(&x, rate, &opts);
    assert_eq!(mask.len(), 1 + (x.len() - len) / hop);
    for (g0, g1) in gaps {
        // Raw speech ends with the last frame that starts before g0; the hangover follows.
        let expect_off = (g0 - 1) / hop + 1 + opts.hangover_frames;
        // Raw speech restarts with the first frame that reaches past g1; the onset precedes.
        let expect_on = (g1 - len) / hop + 1 - opts.onset_frames;
        let off = (expect_off.saturating_sub(10)..mask.len())
            .find(|&t| !mask[t])
            .unwrap();
        let on = (off..mask.len()).find(|&t| mask[t]).unwrap();
        assert!(
            off.abs_diff(expect_off) <= 2,
            "gap {g0}..{g1}: off at {off}, expected {expect_off}"
        );
        assert!(
            on.abs_diff(expect_on) <= 2,
            "gap {g0}..{g1}: on at {on}, expected {expect_on}"
        );
        assert!(mask[off..on].iter().all(|s| !s));
    }
    // Speech runs are whole: the first 1.2 s is all speech.
    assert!(mask[..100].iter().all(|&s| s));
}

#[test]
fn gaps_between_real_recordings_are_non_speech() {
    let rate = 16_000;
    let opts = VadOptions::default();
    let (_, hop) = opts.frame_samples(rate);
    let (_, a) = read_wav_pcm16(&format!("{GOLDEN}/a_espeak_en_us.wav"));
    let (_, b) = read_wav_pcm16(&format!("{GOLDEN}/b_espeak_en_f3.wav"));
    let (_, d) = read_wav_pcm16(&format!("{GOLDEN}/d_asterisk_allison_16k.wav"));
    let mut x = a.clone();
    let g1 = (x.len(), x.len() + 16_000);
    x.extend(std::iter::repeat_n(0.0, 16_000));
    x.extend(&b);
    let g2 = (x.len(), x.len() + 16_000);
    x.extend(noise(16_000, 8.0, 7));
    x.extend(&d);
    let r = assess(&x, rate, &opts);
    let fb = Fbank::new(&FbankOptions::kaldi(rate, 80)).unwrap();
    assert_eq!(r.speech.len(), fb.num_frames(x.len()));
    for (g0, g1) in [g1, g2] {
        let first = g0 / hop + opts.hangover_frames + 3;
        let last = (g1 - 400) / hop - opts.onset_frames - 2;
        assert!(
            r.speech[first..=last].iter().all(|s| !s),
            "gap {g0}..{g1} not clear"
        );
    }
    // Each recording contributes speech.
    for (lo, hi) in [(0, a.len()), (g1.1, g2.0), (g2.1, x.len() - 400)] {
        assert!(r.speech[lo / hop..hi / hop].iter().filter(|&&s| s).count() > 50);
    }
    let q = r.quality;
    assert!(q.net_speech_seconds > 4.0 && q.net_speech_seconds < q.duration_seconds - 2.0);
    assert!(q.snr_db > 30.0, "snr {}", q.snr_db);
}

#[test]
fn snr_of_tone_in_known_noise() {
    let rate = 8_000;
    let mut x = noise(8_000, 30.0, 1);
    x.extend(voiced(16_000, rate, 3000.0));
    x.extend(noise(8_000, 30.0, 2));
    let n = noise(x.len(), 30.0, 3);
    let speech_power: f64 = x[8_000..24_000]
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        / 16_000.0;
    x.iter_mut().zip(&n).for_each(|(a, b)| *a += b);
    let noise_power = 2.0 * 900.0; // both noise layers in the gaps
    let expected = 10.0 * ((speech_power + 900.0) / noise_power).log10();
    let q = assess(&x, rate, &VadOptions::default()).quality;
    assert!(
        (q.snr_db - expected).abs() < 2.0,
        "snr {} expected {expected}",
        q.snr_db
    );
    assert!(
        (q.net_speech_seconds - 2.0).abs() < 0.2,
        "{}",
        q.net_speech_seconds
    );
}

#[test]
fn no_non_speech_still_gives_a_finite_snr() {
    let x = voiced(16_000, 16_000, 3000.0);
    // Threshold at the quietest frame: every frame is speech, so the SNR falls back to the
    // 5th-percentile frame power as the noise estimate.
    let opts = VadOptions {
        noise_percentile: 0.0,
        threshold_db: -1.0,
        ..VadOptions::default()
    };
    let r = assess(&x, 16_000, &opts);
    assert!(r.speech.iter().all(|&s| s));
    let q = r.quality;
    assert!(
        q.snr_db.is_finite() && q.snr_db > 0.0 && q.snr_db < 20.0,
        "{}",
        q.snr_db
    );
    assert!((q.net_speech_seconds - 0.98).abs() < 1e-9);
}

#[test]
fn clipping_ratio_counts_full_scale_and_flat_tops() {
    let opts = VadOptions::default();
    let quiet = voiced(8_000, 8_000, 1000.0);
    assert_eq!(clipping_ratio(&quiet, &opts), 0.0);
    let loud: Vec<f32> = voiced(8_000, 8_000, 60_000.0)
        .into_iter()
        .map(|v| v.clamp(-32768.0, 32767.0))
        .collect();
    let expected = loud.iter().filter(|v| v.abs() >= 0.99 * 32767.0).count() as f64 / 8_000.0;
    assert!(expected > 0.05);
    assert!((clipping_ratio(&loud, &opts) - expected).abs() < 1e-12);
    // Clipped at 20000 before a gain stage: flat runs at the peak.
    let flat: Vec<f32> = voiced(8_000, 8_000, 40_000.0)
        .into_iter()
        .map(|v| v.clamp(-20_000.0, 20_000.0))
        .collect();
    let expected = flat.iter().filter(|v| v.abs() == 20_000.0).count() as f64 / 8_000.0;
    let got = clipping_ratio(&flat, &opts);
    assert!(
        got > 0.0 && got <= expected && got > 0.9 * expected,
        "{got} vs {expected}"
    );
    assert_eq!(clipping_ratio(&[], &opts), 0.0);
}

#[test]
fn degenerate_inputs() {
    let opts = VadOptions::default();
    assert!(speech_mask(&[], 16_000, &opts).is_empty());
    assert!(speech_mask(&[1.0; 100], 16_000, &opts).is_empty());
    let r = assess(&[0.0; 1000], 0, &opts);
    assert_eq!(r.quality.duration_seconds, 0.0);
    let r = assess(&[f32::NAN; 4000], 8_000, &opts);
    assert!(!r.quality.duration_seconds.is_nan());
}

/// The straightforward per-sample scan `clipping_ratio` replaced: the vectorised version must
/// count exactly the same samples.
fn clipping_ratio_reference(samples: &[f32], opts: &VadOptions) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let full = opts.clip_level * 32767.0;
    let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let check_runs = peak >= 8192.0 && opts.clip_run >= 2;
    let mut clipped = 0usize;
    let mut i = 0;
    while i < samples.len() {
        let x = samples[i];
        if check_runs && x.abs() == peak {
            let start = i;
            while i < samples.len() && samples[i] == x {
                i += 1;
            }
            let run = i - start;
            if run >= opts.clip_run || x.abs() >= full {
                clipped += run;
            }
            continue;
        }
        if x.abs() >= full {
            clipped += 1;
        }
        i += 1;
    }
    clipped as f64 / samples.len() as f64
}

#[test]
fn clipping_ratio_matches_per_sample_reference() {
    let opts = VadOptions::default();
    for (seed, level, n) in [
        (1u64, 12_000.0f32, 10_007usize),
        (2, 20_000.0, 4_099),
        (3, 32_767.0, 9_001),
        (4, 9_000.0, 63),
        (5, 40_000.0, 1_000),
    ] {
        // Noise clipped at ±level: flat runs of every length at the peak, straddling the
        // 64-sample scan blocks, with both signs and isolated peak samples.
        let x: Vec<f32> = noise(n, level, seed)
            .into_iter()
            .map(|v| v.round().clamp(-level, level))
            .collect();
        for clip_run in [1usize, 2, 3, 5] {
            let o = VadOptions { clip_run, ..opts };
            assert_eq!(
                clipping_ratio(&x, &o),
                clipping_ratio_reference(&x, &o),
                "seed {seed} level {level} run {clip_run}"
            );
        }
    }
}

/// Golden recordings at both rates plus synthetic audio with gaps and a clipped burst.
fn mixed_inputs() -> Vec<(u32, Vec<f32>)> {
    let mut v: Vec<(u32, Vec<f32>)> = [
        "a_espeak_en_us",
        "c_flite_slt",
        "e_silence_noise",
        "d_8k_pcm16",
    ]
    .iter()
    .map(|n| read_wav_pcm16(&format!("{GOLDEN}/{n}.wav")))
    .collect();
    for rate in [8_000, 16_000] {
        let n = rate as usize;
        let mut x = noise(n, 30.0, 7);
        x.extend(voiced(n, rate, 9_000.0));
        x.extend(noise(n / 2, 30.0, 9));
        x.extend(
            voiced(n, rate, 9_000.0)
                .iter()
                .map(|v| (v * 4.0).clamp(-20_000.0, 20_000.0)),
        );
        v.push((rate, x));
    }
    v
}

#[test]
fn assess_with_fbank_equals_the_two_separate_passes() {
    let opts = VadOptions::default();
    for (rate, x) in mixed_inputs() {
        let bins = if rate == 8_000 { 23 } else { 80 };
        let fb = Fbank::new(&FbankOptions::kaldi(rate, bins)).unwrap();
        let (report, feats) = assess_with_fbank(&x, rate, &opts, &fb);
        assert_eq!(report, assess(&x, rate, &opts), "{rate} Hz");
        assert_eq!(feats, fb.compute(&x), "{rate} Hz");
        assert!(report.speech.iter().any(|&s| s) || x.len() < 40_000);
        // A filterbank on another grid falls back to two passes, with the same answer.
        let mut other = FbankOptions::kaldi(rate, bins);
        other.frame.frame_shift_ms = 12.0;
        let fb = Fbank::new(&other).unwrap();
        let (report, feats) = assess_with_fbank(&x, rate, &opts, &fb);
        assert_eq!(report, assess(&x, rate, &opts));
        assert_eq!(feats, fb.compute(&x));
    }
}

#[test]
fn every_dispatch_level_gives_the_same_decisions() {
    if !simd::avx2_fma_available() {
        eprintln!("AVX2 + FMA not available: nothing to compare");
        return;
    }
    let opts = VadOptions {
        clip_level: 0.5,
        ..VadOptions::default()
    };
    for (rate, x) in mixed_inputs() {
        let (len, hop) = opts.frame_samples(rate);
        let a = frame_powers(Level::Scalar, &x, len, hop);
        let b = frame_powers(Level::Avx2Fma, &x, len, hop);
        assert_eq!(a, b, "{rate} Hz powers");
        for o in [opts, VadOptions::default()] {
            assert_eq!(
                assess_at(Level::Scalar, &x, rate, &o),
                assess_at(Level::Avx2Fma, &x, rate, &o)
            );
            assert_eq!(
                clipping_ratio_at(Level::Scalar, &x, &o),
                clipping_ratio_reference(&x, &o)
            );
        }
    }
}

#[test]
fn clip_scan_gives_the_same_count_for_any_block_length() {
    for (seed, level, n) in [(11u64, 12_000.0f32, 10_007usize), (12, 20_000.0, 4_099)] {
        let x: Vec<f32> = noise(n, level, seed)
            .into_iter()
            .map(|v| v.round().clamp(-level, level))
            .collect();
        for clip_run in [2usize, 3, 5] {
            let o = VadOptions {
                clip_run,
                ..VadOptions::default()
            };
            let want = clipping_ratio_reference(&x, &o);
            for block in [1usize, 7, 64, 80, 160, 4_099, 20_000] {
                for level in [Level::Scalar, simd::level()] {
                    // One block at a time, or runs of three blocks.
                    for run in [block, 3 * block] {
                        let mut scan = ClipScan::new(&o, block, x.len());
                        for piece in x.chunks(run) {
                            scan.push(level, piece);
                        }
                        assert_eq!(scan.finish(&x, &o), want, "block {block} run {clip_run}");
                    }
                }
            }
        }
    }
}

/// A canonical PCM16 mono WAV of `samples` (already integers in range).
fn pcm16_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 1 | (1 << 16), rate, rate * 2, 2 | (16 << 16)] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        b.extend_from_slice(&(s as i16).to_le_bytes());
    }
    b
}

/// `mixed_inputs` as int16 samples, plus odd lengths (shorter than a frame, one sample past a
/// frame boundary, …) and a loud clipped recording at full scale.
fn front_end_inputs() -> Vec<(u32, Vec<f32>)> {
    let mut v: Vec<(u32, Vec<f32>)> = mixed_inputs()
        .into_iter()
        .map(|(rate, x)| {
            (
                rate,
                x.iter()
                    .map(|s| s.round().clamp(-32768.0, 32767.0))
                    .collect(),
            )
        })
        .collect();
    let mut odd = Vec::new();
    for (rate, x) in &v {
        let (len, hop) = VadOptions::default().frame_samples(*rate);
        for n in [1, len - 1, len, len + 1, len + hop - 1, x.len() - 37] {
            odd.push((*rate, x[..n.min(x.len())].to_vec()));
        }
    }
    v.extend(odd);
    for rate in [8_000, 16_000] {
        let loud: Vec<f32> = voiced(rate as usize * 2, rate, 60_000.0)
            .into_iter()
            .map(|s| s.round().clamp(-32768.0, 32767.0))
            .collect();
        v.push((rate, loud));
    }
    v
}

fn fbank_for(rate: u32) -> Fbank {
    let bins = if rate == 8_000 { 23 } else { 80 };
    Fbank::new(&FbankOptions::kaldi(rate, bins)).unwrap()
}

#[test]
fn front_end_equals_decode_assess_fbank_and_cmn() {
    let decode_opts = crate::audio::DecodeOptions::default();
    for vad in [
        VadOptions::default(),
        VadOptions {
            clip_level: 0.5,
            ..VadOptions::default()
        },
    ] {
        let mut front_ends: Vec<FrontEnd> = [8_000, 16_000]
            .map(|r| FrontEnd::new(fbank_for(r), vad))
            .into();
        for (rate, x) in front_end_inputs() {
            let fb = fbank_for(rate);
            let fe = &mut front_ends[usize::from(rate == 16_000)];
            let wav = pcm16_wav(&x, rate);
            let decoded = crate::audio::decode(&wav, &decode_opts).unwrap();
            assert_eq!(decoded.waveform.samples, x);
            let out = fe.process(&wav, &decode_opts).unwrap();
            let what = format!("{rate} Hz, {} samples", x.len());
            assert_eq!(out.samples, &x[..], "{what}");
            assert_eq!(out.info, decoded.info, "{what}");
            assert_eq!(out.channel, decoded.channel, "{what}");
            assert_eq!(out.quality, assess(&x, rate, &vad), "{what}");
            let mut want = fb.compute(&x);
            crate::features::apply_cmn(&mut want);
            assert_eq!(out.features, &want, "{what}");
            // Without CMN: the plain filterbank.
            let mut plain = FrontEnd::new(fb.clone(), vad).with_cmn(false);
            let (report, feats) = plain.process_samples(&x, rate).unwrap();
            assert_eq!(report, assess(&x, rate, &vad), "{what}");
            assert_eq!(feats, &fb.compute(&x), "{what}");
        }
    }
}

#[test]
fn front_end_decodes_g711_and_falls_back_off_grid() {
    let vad = VadOptions::default();
    let ulaw = std::fs::read(format!("{GOLDEN}/d_8k.ulaw")).unwrap();
    let opts = crate::audio::DecodeOptions {
        encoding: crate::audio::Encoding::Mulaw,
        sample_rate: Some(8_000),
        ..crate::audio::DecodeOptions::default()
    };
    let x = crate::audio::decode(&ulaw, &opts).unwrap().waveform.samples;
    // Same rate: the fused pass.
    let fb8 = fbank_for(8_000);
    let mut fe = FrontEnd::new(fb8.clone(), vad);
    let out = fe.process(&ulaw, &opts).unwrap();
    assert_eq!(out.samples, &x[..]);
    assert_eq!(out.quality, assess(&x, 8_000, &vad));
    let mut want = fb8.compute(&x);
    crate::features::apply_cmn(&mut want);
    assert_eq!(out.features, &want);
    // 8 kHz audio into a 16 kHz filterbank: quality at 8 kHz, features of the resampled signal.
    let fb16 = fbank_for(16_000);
    let mut fe = FrontEnd::new(fb16.clone(), vad);
    let out = fe.process(&ulaw, &opts).unwrap();
    assert_eq!(out.quality, assess(&x, 8_000, &vad));
    let mut want = fb16.compute(&crate::audio::resample(&x, 8_000, 16_000).unwrap());
    crate::features::apply_cmn(&mut want);
    assert_eq!(out.features, &want);
    // A filterbank off the VAD's grid: two passes, same answers.
    let mut other = FbankOptions::kaldi(8_000, 23);
    other.frame.frame_shift_ms = 12.0;
    let fb = Fbank::new(&other).unwrap();
    let mut fe = FrontEnd::new(fb.clone(), vad);
    let out = fe.process(&ulaw, &opts).unwrap();
    assert_eq!(out.quality, assess(&x, 8_000, &vad));
    let mut want = fb.compute(&x);
    crate::features::apply_cmn(&mut want);
    assert_eq!(out.features, &want);
    // Errors are typed and leave the front end usable.
    assert!(fe.process(&[], &opts).is_err());
    assert!(fe.process(&ulaw, &opts).is_ok());
}

#[test]
fn front_end_is_the_same_at_every_dispatch_level() {
    if !simd::avx2_fma_available() {
        eprintln!("AVX2 + FMA not available: nothing to compare");
        return;
    }
    let vad = VadOptions::default();
    for (rate, x) in front_end_inputs() {
        let run = |level: Level| {
            let mut fe = FrontEnd::new(fbank_for(rate).with_level(level), vad).with_level(level);
            let (report, feats) = fe.process_samples(&x, rate).unwrap();
            (report, feats.clone())
        };
        let (ra, fa) = run(Level::Scalar);
        let (rb, fb) = run(Level::Avx2Fma);
        // Speech mask and quality figures bit-identical; features within the fused-mel tolerance.
        assert_eq!(ra, rb, "{rate} Hz, {} samples", x.len());
        assert_eq!(fa.num_frames(), fb.num_frames());
        for (&u, &v) in fa.as_slice().iter().zip(fb.as_slice()) {
            assert!((u - v).abs() <= 1e-5, "{u} vs {v}");
        }
    }
}

/// A 32-bit float mono WAV (decoded by symphonia, packet by packet).
fn float_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 3 | (1 << 16), rate, rate * 4, 4 | (32 << 16)] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        b.extend_from_slice(&(s / 32768.0).to_le_bytes());
    }
    b
}

#[test]
fn front_end_runs_the_filterbank_on_every_decoder_s_blocks() {
    // Float WAV through symphonia (small packets), long PCM16 (many 16,384-frame blocks), and
    // stereo µ-law picking the right leg.
    let vad = VadOptions::default();
    let (_, speech) = read_wav_pcm16(&format!("{GOLDEN}/c_flite_slt.wav"));
    let long: Vec<f32> = speech
        .iter()
        .copied()
        .cycle()
        .take(16_000 * 9 + 123)
        .collect();
    let ulaw = std::fs::read(format!("{GOLDEN}/d_8k.ulaw")).unwrap();
    let stereo: Vec<u8> = ulaw.iter().flat_map(|&b| [!b, b]).collect();
    let stereo_opts = crate::audio::DecodeOptions {
        encoding: crate::audio::Encoding::Mulaw,
        sample_rate: Some(8_000),
        channels: 2,
        channel: crate::audio::ChannelSelect::Right,
        ..crate::audio::DecodeOptions::default()
    };
    let auto = crate::audio::DecodeOptions::default();
    for (bytes, opts, rate) in [
        (float_wav(&speech, 16_000), &auto, 16_000),
        (pcm16_wav(&long, 16_000), &auto, 16_000),
        (stereo, &stereo_opts, 8_000),
    ] {
        let x = crate::audio::decode(&bytes, opts).unwrap().waveform.samples;
        let fb = fbank_for(rate);
        let mut fe = FrontEnd::new(fb.clone(), vad);
        for _ in 0..2 {
            let out = fe.process(&bytes, opts).unwrap();
            assert_eq!(out.samples, &x[..]);
            assert_eq!(out.quality, assess(&x, rate, &vad), "{rate} Hz");
            let mut want = fb.compute(&x);
            crate::features::apply_cmn(&mut want);
            assert_eq!(out.features, &want, "{rate} Hz");
        }
    }
}
