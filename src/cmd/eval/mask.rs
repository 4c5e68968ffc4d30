//! Mask classification accuracy on two folders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facegate::config::Config;
use facegate::vision::{FaceSelection, Pipeline};
use serde_json::json;

#[derive(Args, Debug)]
pub struct MaskArgs {
    /// Folder of photos of masked faces.
    #[arg(long)]
    masked: PathBuf,
    /// Folder of photos of unmasked faces.
    #[arg(long)]
    unmasked: PathBuf,
    #[arg(long)]
    json: bool,
    #[arg(long, value_parser = super::thread_count)]
    threads: Option<usize>,
}

struct Verdict {
    masked_truth: bool,
    probability: Option<f32>,
    whole_photo: bool,
}

fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Every image counts: where no face is found, the whole photo is classified (many test
/// photos are tight crops that fill the frame); where it cannot even be decoded, it
/// counts as an error.
fn classify(pipeline: &Pipeline, path: &Path, masked_truth: bool) -> Verdict {
    let image = std::fs::read(path)
        .ok()
        .and_then(|b| pipeline.decode(&b).ok());
    let Some(image) = image else {
        return Verdict {
            masked_truth,
            probability: None,
            whole_photo: false,
        };
    };
    match pipeline.analyze(&image, FaceSelection::Largest) {
        Ok(faces) if !faces.is_empty() => Verdict {
            masked_truth,
            probability: Some(faces[0].mask_probability),
            whole_photo: false,
        },
        _ => Verdict {
            masked_truth,
            probability: pipeline.mask_probability_whole(&image).ok(),
            whole_photo: true,
        },
    }
}

pub fn run(config: &Config, args: &MaskArgs) -> anyhow::Result<ExitCode> {
    let mut items: Vec<(PathBuf, bool)> =
        list(&args.masked)?.into_iter().map(|p| (p, true)).collect();
    items.extend(list(&args.unmasked)?.into_iter().map(|p| (p, false)));
    let pipeline = crate::cmd::load_pipeline(config)?;
    let threshold = config.recognition.mask_threshold;
    let bar = crate::cmd::progress::bar(items.len() as u64, "classifying");
    let verdicts = super::parallel_map(
        &items,
        args.threads.unwrap_or(config.runtime.workers),
        &bar,
        |(p, m)| classify(&pipeline, p, *m),
    );
    bar.finish_and_clear();
    let (mut tp, mut fp, mut tn, mut fneg, mut undecodable, mut whole) = (0, 0, 0, 0, 0, 0);
    for v in &verdicts {
        whole += usize::from(v.whole_photo);
        let predicted = match v.probability {
            Some(p) => p >= threshold,
            None => {
                undecodable += 1;
                !v.masked_truth
            }
        };
        match (v.masked_truth, predicted) {
            (true, true) => tp += 1,
            (true, false) => fneg += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
        }
    }
    let total = verdicts.len().max(1) as f64;
    let report = json!({
        "images": verdicts.len(),
        "accuracy": (tp + tn) as f64 / total,
        "precision": tp as f64 / (tp + fp).max(1) as f64,
        "recall": tp as f64 / (tp + fneg).max(1) as f64,
        "unmasked_correct": tn as f64 / (tn + fp).max(1) as f64,
        "true_positive": tp, "false_positive": fp, "true_negative": tn, "false_negative": fneg,
        "no_face_whole_photo": whole,
        "undecodable": undecodable,
        "threshold": threshold,
        "model": config.models.mask,
    });
    crate::cmd::print_report(&report, args.json)
}
