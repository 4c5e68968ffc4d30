//! `facegate bench`: median latency of each pipeline stage on one image, single
//! thread, next to the bare model runs (`Model::run` alone) of the same model files:
//! in the stages' places of the sequence, hot, and in turn.
//! `tests/bench/stages_vs_litert.py` puts these next to LiteRT's own Python interpreter.
//! `facegate bench index`: the 1:N index alone (src/cmd/bench_index.rs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use facegate::config::Config;
use facegate::runtime::{Model, Runtime};
use facegate::vision::Pipeline;
use serde_json::json;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Image to analyse (default: tests/fixtures/vision/group_640x480.jpg).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Iterations per stage.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    #[arg(long)]
    json: bool,
    /// XNNPACK threads per model run (the figures of record use 1).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// 1:N index search on N synthetic templates: median search time, bytes per
    /// template, recall@1 against an exact f32 brute force.
    Index(super::bench_index::IndexArgs),
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pub fn run(config: &Config, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(BenchCommand::Index(index_args)) = &args.command {
        return super::bench_index::run(config, index_args);
    }
    let mut config = config.clone();
    // One session; one XNNPACK thread unless asked otherwise.
    config.runtime.workers = 1;
    config.runtime.threads_per_model = args.threads.max(1);
    // The stages run with exactly --threads: no idle-machine session.
    config.runtime.idle_request_threads = config.runtime.threads_per_model;
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| PathBuf::from("tests/fixtures/vision/group_640x480.jpg"));
    let bytes = std::fs::read(&image).with_context(|| image.display().to_string())?;
    let runtime = Runtime::locate_and_load(config.runtime_library())?;
    let options = config.pipeline_options();
    let models_dir = options.models_dir.clone();
    let pipeline = Pipeline::load(&runtime, options)?;
    let decoded = pipeline.decode(&bytes)?;
    // The face the stages analyse (the largest); the Python reference crops the same.
    let detection = pipeline
        .detect(&decoded)?
        .into_iter()
        .next()
        .context("the benchmark image has no face")?;
    let face = detection.bbox;

    let n = args.iterations.max(1);
    let bar = super::progress::bar(n as u64, "pipeline stages");
    let samples = pipeline.measure_stages(&bytes, &detection, n, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let stage = |f: fn(&facegate::vision::StageTimings) -> Duration| {
        median_ms(samples.iter().map(f).collect())
    };
    // Per iteration: stage time over its bare model run(s) in the same place of the
    // sequence (see `StageTimings::detect_model_run`).
    let ratio = |f: &dyn Fn(&facegate::vision::StageTimings) -> f64| {
        let mut r: Vec<f64> = samples.iter().map(f).collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    };

    let mut files = vec![
        config.models.detector.file_name().to_string(),
        config.models.embedder.clone(),
        config.models.mask.clone(),
    ];
    if config.recognition.alignment == facegate::vision::Alignment::FaceMesh {
        files.push(config.models.landmarks.clone());
    }
    let mut model_runs = serde_json::Map::new();
    for file in &files {
        let ms = time_model_runs(&runtime, &models_dir.join(file), n, args.threads.max(1))?;
        model_runs.insert(file.clone(), json!(ms));
    }
    let interleaved = time_interleaved_runs(&runtime, &models_dir, &files, n)?;
    let report = json!({
        "image": image.display().to_string(),
        "width": decoded.width(),
        "height": decoded.height(),
        "iterations": n,
        "face_box": [face.x, face.y, face.width, face.height],
        "threads_per_model": config.runtime.threads_per_model,
        "flip_average": config.recognition.flip_average,
        "alignment": config.recognition.alignment.name(),
        "stages_median_ms": {
            "decode": stage(|t| t.decode),
            "detect": stage(|t| t.detect),
            "landmarks": stage(|t| t.landmarks),
            "align": stage(|t| t.align),
            "mask": stage(|t| t.mask),
            "embed": stage(|t| t.embed),
        },
        "stage_over_model_run_median": {
            "detect": ratio(&|t| t.detect.as_secs_f64() / t.detect_model_run.as_secs_f64()),
            "mask": ratio(&|t| t.mask.as_secs_f64() / t.mask_model_run.as_secs_f64()),
            "embed": ratio(&|t| t.embed.as_secs_f64() / t.embed_model_run.as_secs_f64()),
        },
        // Bare runs in the stages' places; embed: all its runs (two with flip averaging).
        "model_run_in_position_median_ms": {
            "detect": stage(|t| t.detect_model_run),
            "mask": stage(|t| t.mask_model_run),
            "landmarks": stage(|t| t.landmarks_model_run),
            "embed": stage(|t| t.embed_model_run),
        },
        "model_run_median_ms": model_runs,
        "model_run_interleaved_median_ms": interleaved,
    });
    crate::cmd::print_report(&report, args.json)
}

/// Median of `Model::run` alone on zeroed inputs: the runtime's own cost, comparable
/// with LiteRT's Python `Interpreter.invoke()` on the same file.
fn time_model_runs(
    runtime: &Runtime,
    path: &Path,
    n: usize,
    threads: usize,
) -> anyhow::Result<f64> {
    let mut model: Model = runtime.load_model(path, threads)?;
    for _ in 0..10 {
        model.run()?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        model.run()?;
        samples.push(start.elapsed());
    }
    Ok(median_ms(samples))
}

/// Medians of `Model::run` when the models run in turn, as in the pipeline: each model's
/// weights are no longer hot in the CPU caches when its turn comes again.
fn time_interleaved_runs(
    runtime: &Runtime,
    dir: &Path,
    files: &[String],
    n: usize,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut models = files
        .iter()
        .map(|f| runtime.load_model(&dir.join(f), 1))
        .collect::<Result<Vec<Model>, _>>()?;
    let mut samples = vec![Vec::with_capacity(n); models.len()];
    for i in 0..n + 10 {
        for (k, model) in models.iter_mut().enumerate() {
            let start = Instant::now();
            model.run()?;
            if i >= 10 {
                samples[k].push(start.elapsed());
            }
        }
    }
    Ok(files
        .iter()
        .zip(samples)
        .map(|(f, s)| (f.clone(), json!(median_ms(s))))
        .collect())
}
