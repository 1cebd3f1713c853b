//! Front-end throughput: Kaldi fbank / MFCC and the whole front end (decode + fbank + CMN + VAD) on
//! 10 minutes of audio tiled from the golden inputs. `full_*` run a warm `quality::FrontEnd`
//! (buffers reused across calls); `full_*_alloc` the separate functions with fresh buffers. `VOICEPRINT_SIMD=scalar` measures the baseline
//! (SSE2) copies of the hot loops instead of the AVX2 + FMA ones. Figures as × real time go to benches/README.md.
//!
//! Times are the benchmark thread's **CPU time** (`/proc/thread-self/schedstat`, nanoseconds), not
//! wall time: the build machine is shared, and CPU time is what the single-thread real-time factor
//! means. On an idle machine the two agree. (Elsewhere than Linux it falls back to wall time.)

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use voiceprint::audio::{DecodeOptions, Limits, decode, resample};
use voiceprint::features::{Fbank, FbankOptions, Mfcc, MfccOptions, apply_cmn};
use voiceprint::quality::{FrontEnd, VadOptions, assess, assess_with_fbank};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden/inputs");
const SECONDS: usize = 600;

/// Samples of a canonical PCM16 mono WAV (data chunk found by walking the RIFF chunks).
fn wav_samples(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(format!("{GOLDEN}/{name}")).unwrap_or_default();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            let end = (pos + 8 + len).min(bytes.len());
            return bytes[pos + 8..end]
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    Vec::new()
}

/// Criterion measurement: CPU time of the calling thread.
struct ThreadCpuTime {
    wall: WallTime,
}

impl ThreadCpuTime {
    fn now_ns() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        s.split_whitespace().next()?.parse().ok()
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = (Option<u64>, std::time::Instant);
    type Value = Duration;
    fn start(&self) -> Self::Intermediate {
        (Self::now_ns(), std::time::Instant::now())
    }
    fn end(&self, (cpu, wall): Self::Intermediate) -> Duration {
        match (cpu, Self::now_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => wall.elapsed(),
        }
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn tile(x: &[f32], n: usize) -> Vec<f32> {
    x.iter().copied().cycle().take(n).collect()
}

/// A canonical 44-byte-header PCM16 mono WAV of `samples`.
fn wav_bytes(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&(*s as i16).to_le_bytes());
    }
    b
}

fn front_end(c: &mut Criterion<ThreadCpuTime>) {
    let x16 = tile(&wav_samples("c_flite_slt.wav"), SECONDS * 16_000);
    let x8 = tile(&wav_samples("d_8k_pcm16.wav"), SECONDS * 8_000);
    assert!(!x16.is_empty() && !x8.is_empty(), "golden inputs missing");

    let mut g = c.benchmark_group("frontend_10min");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));

    let fb80 = Fbank::new(&FbankOptions::kaldi(16_000, 80)).unwrap_or_else(|e| panic!("{e}"));
    g.throughput(Throughput::Elements(x16.len() as u64));
    g.bench_function("fbank80_16k", |b| {
        b.iter(|| black_box(fb80.compute(black_box(&x16))))
    });

    let fb23 = Fbank::new(&FbankOptions::kaldi(8_000, 23)).unwrap_or_else(|e| panic!("{e}"));
    g.throughput(Throughput::Elements(x8.len() as u64));
    g.bench_function("fbank23_8k", |b| {
        b.iter(|| black_box(fb23.compute(black_box(&x8))))
    });

    let mfcc8 = Mfcc::new(&MfccOptions::kaldi(8_000)).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("mfcc13_8k", |b| {
        b.iter(|| black_box(mfcc8.compute(black_box(&x8))))
    });

    let vad = VadOptions::default();
    let limits = Limits {
        max_bytes: usize::MAX,
        max_seconds: f64::INFINITY,
        max_channels: 8,
    };
    let opts = DecodeOptions {
        limits,
        ..DecodeOptions::default()
    };
    // The whole front end: WAV bytes -> decoded samples, quality report (VAD, net speech, SNR,
    // clipping) and CMN'd features. `full_*`: a warm `FrontEnd` (buffers reused across calls, the
    // steady state of a worker); `*_alloc`: the separate functions with fresh buffers every call.
    for (name, fb, x, rate) in [
        ("full_16k_fbank80", &fb80, &x16, 16_000),
        ("full_8k_fbank23", &fb23, &x8, 8_000),
    ] {
        let bytes = wav_bytes(x, rate);
        g.throughput(Throughput::Elements(x.len() as u64));
        let mut fe = FrontEnd::new(fb.clone(), vad);
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = fe
                    .process(black_box(&bytes), &opts)
                    .unwrap_or_else(|e| panic!("{e}"));
                black_box((
                    out.samples.len(),
                    out.features.as_slice().len(),
                    out.quality,
                ))
            })
        });
        g.bench_function(format!("{name}_alloc"), |b| {
            b.iter(|| {
                let d = decode(black_box(&bytes), &opts).unwrap_or_else(|e| panic!("{e}"));
                let w = &d.waveform;
                // One pass: the VAD reuses the filterbank's frame energies (same grid).
                let (q, mut m) = assess_with_fbank(&w.samples, w.sample_rate, &vad, fb);
                apply_cmn(&mut m);
                black_box((m, q))
            })
        });
    }
    // The production path for 8 kHz telephony (pipeline.rs): decode, quality/VAD at 8 kHz,
    // resample to 16 kHz, fbank80 + CMN.
    let bytes = wav_bytes(&x8, 8_000);
    g.throughput(Throughput::Elements(x8.len() as u64));
    g.bench_function("resample_8k_to_16k", |b| {
        b.iter(|| black_box(resample(black_box(&x8), 8_000, 16_000)))
    });
    g.bench_function("vad_8k", |b| {
        b.iter(|| black_box(assess(black_box(&x8), 8_000, &vad)))
    });
    g.throughput(Throughput::Elements(x16.len() as u64));
    g.bench_function("vad_16k", |b| {
        b.iter(|| black_box(assess(black_box(&x16), 16_000, &vad)))
    });
    g.throughput(Throughput::Elements(x8.len() as u64));
    g.bench_function("full_8k_to_16k_fbank80", |b| {
        b.iter(|| {
            let d = decode(black_box(&bytes), &opts).unwrap_or_else(|e| panic!("{e}"));
            let q = assess(&d.waveform.samples, d.waveform.sample_rate, &vad);
            let s = resample(&d.waveform.samples, d.waveform.sample_rate, 16_000)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut m = fb80.compute(&s);
            apply_cmn(&mut m);
            black_box((m, q))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = front_end
}
criterion_main!(benches);
