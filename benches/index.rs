//! 1:N search (`voiceprint::service::Index::search`, what `Identify` runs under the lock) of one
//! probe over galleries of 1k, 10k and 100k prepared prints, scored with the built-in scorer the
//! service uses by default (calibrated cosine), top 10. Prints are random 192-d unit vectors, so
//! nearly every row is a non-target, as in a real gallery.
//! `open` keeps the 1 %-FAR LLR threshold (the usual Identify call); `all` passes every row
//! through the top-k (threshold −∞), the worst case.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};
use voiceprint::score::{Prepared, Scorer, Thresholds, l2_normalize};
use voiceprint::service::Index;

const DIM: usize = 192;

fn print(rng: &mut StdRng) -> Prepared {
    let mut e: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    l2_normalize(&mut e);
    Prepared {
        embedding: e,
        cohort_mean: rng.random_range(0.0..0.2),
        cohort_std: rng.random_range(0.05..0.1),
        channel: None,
    }
}

fn bench(c: &mut Criterion) {
    let scorer = Scorer::builtin().unwrap();
    let far1 = scorer.thresholds(0.01).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let probe = print(&mut rng);
    let mut g = c.benchmark_group("identify");
    g.sample_size(20);
    let mut index = Index::default();
    for size in [1_000usize, 10_000, 100_000] {
        while index.len() < size {
            let key = format!("speaker-{:06}", index.len());
            assert!(index.upsert(&key, &print(&mut rng)));
        }
        for (label, threshold) in [
            ("open", far1),
            ("all", Thresholds::fixed(f64::NEG_INFINITY)),
        ] {
            g.bench_with_input(BenchmarkId::new(label, size), &size, |b, _| {
                b.iter(|| index.search(&scorer, &probe, &threshold, 10))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
