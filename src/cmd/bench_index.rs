//! `facegate bench index`: the 1:N index alone on N synthetic unit vectors. Queries are
//! noisy copies of known templates; every answer is checked against an exact f32 brute
//! force over the same vectors. `tests/bench/index_vs_numpy.sh` puts it next to a
//! one-thread numpy scan. With `--fill-store`, writes the same kind of templates into
//! the configured data folder instead (to measure a daemon with a large gallery).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use facegate::config::Config;
use facegate::gallery::{Error as GalleryError, Gallery, PrecomputedFace, Quota, Settings};
use facegate::index::{dot_f32, normalized, GalleryIndex};
use serde_json::json;

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Templates in the index.
    #[arg(long, default_value_t = 100_000)]
    templates: u64,
    /// Searches timed (each a noisy copy of a random template).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Templates per user (the answer is the best user; galleries keep a few per person).
    #[arg(long, default_value_t = 2)]
    per_user: u64,
    /// Length of the random vector added to a template to make a query (0.75: cosine
    /// ~0.8 with its template, as two photos of one person).
    #[arg(long, default_value_t = 0.75)]
    noise: f32,
    /// Results per search (identify-face's max_results).
    #[arg(long, default_value_t = 1)]
    k: usize,
    #[arg(long)]
    json: bool,
    /// Instead of benchmarking: write the templates into the configured store (client
    /// "bench", gallery "g", the configured model's fingerprint, `--crop-bytes` of crop
    /// each), for measuring `facegate serve` with a large gallery. Loads the models.
    #[arg(long)]
    fill_store: bool,
    /// With --fill-store: bytes of (synthetic) face crop per template.
    #[arg(long, default_value_t = 0)]
    crop_bytes: usize,
}

/// xorshift64: deterministic, fast, good enough for directions in space.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    fn unit(&mut self, dim: usize) -> Vec<f32> {
        loop {
            // Sum of two uniforms: closer to isotropic than one.
            let v: Vec<f32> = (0..dim).map(|_| self.next() + self.next()).collect();
            if let Some(u) = normalized(&v) {
                return u;
            }
        }
    }
}

fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pub fn run(config: &Config, args: &IndexArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.templates > 0, "--templates must be at least 1");
    anyhow::ensure!(args.per_user > 0, "--per-user must be at least 1");
    if args.fill_store {
        return fill_store(config, args);
    }
    let n = args.templates as usize;
    let dim = args.dim;
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    let bar = super::progress::bar(args.templates, "building index");
    let started = Instant::now();
    let mut index = GalleryIndex::with_dim(dim)?;
    index.reserve(n);
    // The f32 templates the re-rank reads (the daemon reads them from LMDB).
    let mut exact: Vec<f32> = Vec::with_capacity(n * dim);
    for i in 0..n {
        let v = random.unit(dim);
        index.insert(&user(i as u64, args.per_user), i as u64, &v)?;
        exact.extend_from_slice(&v);
        if i % 4096 == 0 {
            bar.set_position(i as u64);
        }
    }
    index.shrink_to_fit();
    bar.finish_and_clear();
    let build = started.elapsed();

    // The queries first; then the searches back to back (as identify-face calls would
    // run them, and as the numpy reference does); then the checks, which scan the f32
    // vectors and would otherwise evict the codes from the caches between searches.
    let queries: Vec<(usize, Vec<f32>)> = (0..args.queries)
        .map(|_| {
            let source = (random.0 % n as u64) as usize;
            let noise = random.unit(dim);
            let query = exact[source * dim..(source + 1) * dim]
                .iter()
                .zip(&noise)
                .map(|(t, e)| t + args.noise * e)
                .collect();
            (source, query)
        })
        .collect();
    let bar = super::progress::bar(args.queries as u64 * 2, "searching, then checking");
    let mut search_times = Vec::with_capacity(args.queries);
    let mut answers = Vec::with_capacity(args.queries);
    for (_, query) in &queries {
        let start = Instant::now();
        let found = index.search(query, args.k, |_, id, out| {
            let row = id as usize;
            out.extend_from_slice(&exact[row * dim..(row + 1) * dim]);
            Ok::<_, facegate::index::Error>(true)
        })?;
        search_times.push(start.elapsed());
        answers.push(found);
        bar.inc(1);
    }
    let mut brute_times = Vec::with_capacity(args.queries);
    let mut reranked = Vec::with_capacity(args.queries);
    let mut refined = Vec::with_capacity(args.queries);
    let mut scans = Vec::with_capacity(args.queries);
    let (mut agree, mut agree_coarse, mut source_first) = (0usize, 0usize, 0usize);
    for ((source, query), found) in queries.iter().zip(&answers) {
        let start = Instant::now();
        let truth = brute_force(&exact, dim, query);
        brute_times.push(start.elapsed());
        reranked.push(found.reranked);
        refined.push(found.refined);
        scans.push(found.scans);
        let best = found.matches.first().map(|m| m.template_id);
        agree += usize::from(best == Some(truth));
        let approx = index.search_approximate(query, 1).first().map(|m| m.0);
        agree_coarse += usize::from(approx == Some(truth));
        source_first += usize::from(truth == *source as u64);
        bar.inc(1);
    }
    bar.finish_and_clear();
    reranked.sort_unstable();
    refined.sort_unstable();
    scans.sort_unstable();
    let median = |v: &[usize]| v.get(v.len() / 2).copied().unwrap_or(0);
    let q = args.queries.max(1) as f64;
    let report = json!({
        "templates": n,
        "dim": dim,
        "templates_per_user": args.per_user,
        "queries": args.queries,
        "k": args.k,
        "build_s": build.as_secs_f64(),
        "search_ms_median": percentile_ms(&mut search_times, 0.5),
        "search_ms_p90": percentile_ms(&mut search_times, 0.9),
        "brute_force_f32_ms_median": percentile_ms(&mut brute_times, 0.5),
        "bytes_per_template": index.memory_bytes() as f64 / n as f64,
        "scanned_bytes_per_template": index.scanned_bytes_per_template(),
        "index_mb": index.memory_bytes() as f64 / (1024.0 * 1024.0),
        "recall_at_1": agree as f64 / q,
        "recall_at_1_coarse_only": agree_coarse as f64 / q,
        "brute_force_finds_the_source": source_first as f64 / q,
        "reranked_median": median(&reranked),
        "refined_median": median(&refined),
        "coarse_scans_max": scans.last().copied().unwrap_or(0),
    });
    crate::cmd::print_report(&report, args.json)
}

fn user(template: u64, per_user: u64) -> String {
    format!("user{}", template / per_user)
}

/// Exact f32 answer: the template id of the best user's best template (ties: lowest id).
fn brute_force(exact: &[f32], dim: usize, query: &[f32]) -> u64 {
    let Some(q) = normalized(query) else { return 0 };
    let mut best = (f32::NEG_INFINITY, 0u64);
    for (row, v) in exact.chunks_exact(dim).enumerate() {
        let s = dot_f32(&q, v);
        if s > best.0 {
            best = (s, row as u64);
        }
    }
    best.1
}

/// `--fill-store`: N synthetic templates of the configured model in the data folder,
/// written through the gallery (its one write path) without quotas or sync.
fn fill_store(config: &Config, args: &IndexArgs) -> anyhow::Result<ExitCode> {
    let pipeline = Arc::new(super::load_pipeline(config)?);
    let fingerprint = pipeline.fingerprint().to_string();
    let dir = &config.store.data_dir;
    let store = super::open_store(dir, config.store.map_size_mb)?;
    let settings = Settings {
        quota: Quota::default(),
        outbox: None,
        ..Settings::from_config(config)
    };
    let gallery = Gallery::open(Arc::new(store), pipeline, settings)?;
    match gallery.create_gallery("bench", "g") {
        Ok(()) | Err(GalleryError::GalleryExists) => {}
        Err(e) => return Err(e.into()),
    }
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    let crop: Vec<u8> = (0..args.crop_bytes)
        .map(|i| (i * 131 % 251) as u8)
        .collect();
    let bar = super::progress::bar(args.templates, "writing templates");
    let mut done = 0u64;
    while done < args.templates {
        let batch = (args.templates - done).min(20_000);
        let faces: Vec<PrecomputedFace> = (0..batch)
            .map(|i| {
                let user = user(done + i, args.per_user);
                PrecomputedFace {
                    user_name: user.clone(),
                    user_id: user,
                    embedding: random.unit(args.dim),
                    crop_jpeg: (!crop.is_empty()).then(|| crop.clone()),
                }
            })
            .collect();
        gallery.enroll_embeddings("bench", "g", &faces)?;
        done += batch;
        bar.set_position(done);
    }
    gallery.flush()?;
    bar.finish_and_clear();
    eprintln!(
        "{} templates of model {fingerprint} in {} (client \"bench\", gallery \"g\")",
        args.templates,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
