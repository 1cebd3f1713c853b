//! CAM++ forward pass, single thread: 10 s (998 frames) and 60 s (5998 frames) of 16 kHz speech.
//! Input: the golden utterance c (fixtures/golden/c_flite_slt/fbank80_cmn.npy) cut or tiled, the
//! same frames `benches/onnx/compare.py` feeds onnxruntime and PyTorch. `*-avx2-kernel` runs the
//! same network on the opt-in AVX2/FMA kernel (`VOICEPRINT_GEMM=avx2`) instead of `matrixmultiply`.
//! Before criterion runs, the minimum of 7 interleaved runs of each variant is printed: on a
//! shared machine the minimum is the steadiest figure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use voiceprint::embed::{CamPlusPlus, Workspace};
use voiceprint::model::{default_model_dir, ensure_model};

fn golden_frames(n: usize) -> Vec<f32> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/c_flite_slt/fbank80_cmn.npy");
    let b = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let x: Vec<f32> = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    x.iter().cycle().take(n * 80).copied().collect()
}

fn bench(c: &mut Criterion) {
    let path = ensure_model(&default_model_dir()).unwrap();
    let model = CamPlusPlus::load(&path).unwrap();
    // SAFETY: no other thread exists yet; the variable only affects this process.
    unsafe { std::env::set_var("VOICEPRINT_GEMM", "avx2") };
    let avx2 = CamPlusPlus::load(&path).unwrap();
    // SAFETY: as above.
    unsafe { std::env::remove_var("VOICEPRINT_GEMM") };
    let mut g = c.benchmark_group("camplusplus");
    g.sample_size(10);
    for (label, frames) in [("10s", 998), ("60s", 5998)] {
        let x = golden_frames(frames);
        let mut ws = Workspace::new();
        let a = model.embed_frames_with(&mut ws, &x, 80).unwrap();
        let b = avx2.embed_frames_with(&mut ws, &x, 80).unwrap();
        let dot: f32 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
        let na: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(dot / (na * nb) > 0.99999, "kernels disagree");
        eprintln!(
            "{label}: {frames} frames, scratch {:.1} MiB",
            ws.bytes() as f64 / (1 << 20) as f64
        );
        let (mut best_a, mut best_p) = (f64::MAX, f64::MAX);
        for _ in 0..7 {
            let t = Instant::now();
            model.embed_frames_with(&mut ws, &x, 80).unwrap();
            best_a = best_a.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            avx2.embed_frames_with(&mut ws, &x, 80).unwrap();
            best_p = best_p.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{label}: min of 7 interleaved runs: matrixmultiply {:.1} ms, avx2 kernel {:.1} ms",
            best_a * 1e3,
            best_p * 1e3
        );
        g.bench_function(label, |b| {
            b.iter(|| model.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
        g.bench_function(format!("{label}-avx2-kernel"), |b| {
            b.iter(|| avx2.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
