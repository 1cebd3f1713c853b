//! CAM++ forward pass: 10 s (998 frames) and 60 s (5998 frames) of 16 kHz speech, on one thread
//! (`10s`, `60s`) and on two threads of the rayon pool (`*-2threads`), with the default GEMM kernel
//! (AVX2/FMA where the CPU has it) and the head's stride-1 convolutions done by Winograd
//! F(2×2, 3×3); `*-direct` runs one thread with those convolutions done directly through im2col
//! (`VOICEPRINT_WINOGRAD=off`), `*-matrixmultiply` one thread on the portable `matrixmultiply`
//! kernel (`VOICEPRINT_GEMM=matrixmultiply`, also direct). Input: the golden utterance c
//! (fixtures/golden/c_flite_slt/fbank80_cmn.npy) cut or tiled, the same frames
//! `benches/onnx/compare.py` feeds onnxruntime and PyTorch. Before criterion runs, the minimum of 7
//! interleaved runs of each variant is printed: on a shared machine the minimum is the steadiest
//! figure.
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
    unsafe { std::env::set_var("VOICEPRINT_WINOGRAD", "off") };
    let direct = CamPlusPlus::load(&path).unwrap();
    // SAFETY: as above.
    unsafe { std::env::set_var("VOICEPRINT_GEMM", "matrixmultiply") };
    let portable = CamPlusPlus::load(&path).unwrap();
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("VOICEPRINT_GEMM");
        std::env::remove_var("VOICEPRINT_WINOGRAD");
    }
    let mut g = c.benchmark_group("camplusplus");
    g.sample_size(10);
    for (label, frames) in [("10s", 998), ("60s", 5998)] {
        let x = golden_frames(frames);
        let mut ws = Workspace::new();
        let a = model.embed_frames_with(&mut ws, &x, 80).unwrap();
        let b = portable.embed_frames_with(&mut ws, &x, 80).unwrap();
        let d = direct.embed_frames_with(&mut ws, &x, 80).unwrap();
        let p = model.embed_frames_par(&mut ws, &x, 80, 2).unwrap();
        let cos = |b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(p, q)| p * q).sum();
            let na: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|v| v * v).sum::<f32>().sqrt();
            dot / (na * nb)
        };
        assert!(cos(&b) > 0.99999, "kernels disagree");
        assert!(cos(&d) > 0.99999, "winograd and direct disagree");
        assert!(cos(&p) > 0.99999, "threads disagree");
        eprintln!(
            "{label}: {frames} frames, scratch {:.1} MiB (2 threads)",
            ws.bytes() as f64 / (1 << 20) as f64
        );
        let mut best = [f64::MAX; 4];
        for _ in 0..7 {
            let t = Instant::now();
            portable.embed_frames_with(&mut ws, &x, 80).unwrap();
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            direct.embed_frames_with(&mut ws, &x, 80).unwrap();
            best[3] = best[3].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            model.embed_frames_with(&mut ws, &x, 80).unwrap();
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            model.embed_frames_par(&mut ws, &x, 80, 2).unwrap();
            best[2] = best[2].min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{label}: min of 7 interleaved runs: matrixmultiply {:.1} ms, direct 1 thread {:.1} ms, default 1 thread {:.1} ms, default 2 threads {:.1} ms",
            best[0] * 1e3,
            best[3] * 1e3,
            best[1] * 1e3,
            best[2] * 1e3
        );
        g.bench_function(label, |b| {
            b.iter(|| model.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
        g.bench_function(format!("{label}-2threads"), |b| {
            b.iter(|| model.embed_frames_par(&mut ws, &x, 80, 2).unwrap())
        });
        g.bench_function(format!("{label}-direct"), |b| {
            b.iter(|| direct.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
        g.bench_function(format!("{label}-matrixmultiply"), |b| {
            b.iter(|| portable.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
