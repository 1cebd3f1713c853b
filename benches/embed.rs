//! CAM++ forward pass, single thread: 10 s (998 frames) and 60 s (5998 frames) of 16 kHz speech.
//! Input: the golden utterance c (fixtures/golden/c_flite_slt/fbank80_cmn.npy) cut or tiled, the
//! same frames `benches/onnx/compare.py` feeds onnxruntime and PyTorch.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

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
    let model = CamPlusPlus::load(&ensure_model(&default_model_dir()).unwrap()).unwrap();
    let mut g = c.benchmark_group("camplusplus");
    g.sample_size(20);
    for (label, frames) in [("10s", 998), ("60s", 5998)] {
        let x = golden_frames(frames);
        let mut ws = Workspace::new();
        model.embed_frames_with(&mut ws, &x, 80).unwrap();
        eprintln!(
            "{label}: {frames} frames, scratch {:.1} MiB",
            ws.bytes() as f64 / (1 << 20) as f64
        );
        g.bench_function(label, |b| {
            b.iter(|| model.embed_frames_with(&mut ws, &x, 80).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
