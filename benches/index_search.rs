//! 1:N search in one gallery of 1k / 10k / 100k / 1M synthetic templates (random unit
//! vectors, 128-d): the index part of identify-face (4-bit scan, fine re-score, exact f32
//! re-rank reading the candidates' embeddings from memory here, from LMDB in the
//! daemon). Also prints the index's memory. `facegate bench index` measures the same
//! with recall against brute force.
//!
//!   cargo bench --bench index_search

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use facegate::index::{Error, GalleryIndex};

/// Deterministic pseudo-random vector.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..128)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_search");
    group.sample_size(20);
    // `cargo bench` passes --bench; `cargo test --all-targets` runs each size once: keep
    // that quick.
    let sizes: &[u64] = if std::env::args().any(|a| a == "--bench") {
        &[1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000]
    };
    for &n in sizes {
        let mut index = GalleryIndex::new();
        let mut exact = Vec::with_capacity(n as usize * 128);
        for i in 0..n {
            let v = vector(i);
            index
                .insert(&format!("user{}", i / 2), i, &v)
                .expect("insert");
            exact.extend_from_slice(&v);
        }
        eprintln!(
            "templates={n} index_memory_mb={:.1}",
            index.memory_bytes() as f64 / (1024.0 * 1024.0)
        );
        let query = vector(u64::MAX / 3);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                black_box(index.search(black_box(&query), 1, |_, id, out| {
                    let row = id as usize * 128;
                    out.extend_from_slice(&exact[row..row + 128]);
                    Ok::<_, Error>(true)
                }))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
