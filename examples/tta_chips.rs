//! Writes the raw embedder output of every chip of every listed image (the aligned chip
//! first, then one per `recognition.test_time_chips` entry of the config, each with its
//! mirror's when flip averaging is on), for trying sets of test-time chips offline
//! without embedding the images again (docs/accuracy.md, "Test-time chips"):
//!
//!     cargo run --release --example tta_chips -- CONFIG IMAGES LIST OUT
//!
//! LIST has one image path (relative to IMAGES) per line; OUT gets little-endian f32
//! rows of `chips x 128` values per listed image, NaN where no face was found. The face
//! is the one nearest the image centre (LFW's convention, as `facegate eval lfw`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use facegate::vision::{Pipeline, EMBEDDING_DIM};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [config, images, list, out] = args.as_slice() else {
        eprintln!("usage: tta_chips CONFIG IMAGES LIST OUT");
        return ExitCode::from(64);
    };
    match run(config, images, list, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tta_chips: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    config: &Path,
    images: &Path,
    list: &Path,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = facegate::config::load(Some(config), &facegate::config::ProcessEnv)?;
    let runtime = facegate::runtime::Runtime::locate_and_load(config.runtime_library())?;
    let pipeline = Pipeline::load(&runtime, config.pipeline_options())?;
    let chips = 1 + config.recognition.test_time_chips.len();
    let names: Vec<String> = std::fs::read_to_string(list)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let next = AtomicUsize::new(0);
    let rows: Vec<(usize, Vec<f32>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..config.runtime.workers.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let row = chip_sums(&pipeline, &images.join(name))
                            .unwrap_or_else(|| vec![f32::NAN; chips * EMBEDDING_DIM]);
                        done.push((i, row));
                        if i.is_multiple_of(200) {
                            eprintln!("{i} / {}", names.len());
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .flatten()
            .collect()
    });
    let mut ordered = vec![Vec::new(); names.len()];
    for (i, row) in rows {
        ordered[i] = row;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for row in ordered {
        for v in row {
            file.write_all(&v.to_le_bytes())?;
        }
    }
    file.flush()?;
    Ok(())
}

fn chip_sums(pipeline: &Pipeline, path: &Path) -> Option<Vec<f32>> {
    let image = pipeline.decode(&std::fs::read(path).ok()?).ok()?;
    let (cx, cy) = (image.width() as f32 / 2.0, image.height() as f32 / 2.0);
    let detection = pipeline.detect(&image).ok()?.into_iter().min_by(|a, b| {
        let d = |p: facegate::vision::Point| (p.x - cx).powi(2) + (p.y - cy).powi(2);
        d(a.bbox.center()).total_cmp(&d(b.bbox.center()))
    })?;
    let sums = pipeline.chip_embedding_sums(&image, &detection).ok()??;
    Some(sums.concat())
}
