//! `facegate detect IMG` and `facegate compare A B`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facegate::config::Config;
use facegate::vision::{Face, FaceSelection, Pipeline};
use serde_json::json;

#[derive(Args, Debug)]
pub struct DetectArgs {
    image: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Similarity threshold for `verified` (default: recognition.verify_threshold).
    #[arg(long)]
    threshold: Option<f32>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn detect(config: &Config, args: &DetectArgs) -> anyhow::Result<ExitCode> {
    let pipeline = super::load_pipeline(config)?;
    let image = pipeline
        .decode(&read(&args.image)?)
        .with_context(|| args.image.display().to_string())?;
    let faces = pipeline.analyze(&image, FaceSelection::All)?;
    let report: Vec<_> = faces.iter().map(face_json).collect();
    if args.json {
        println!(
            "{}",
            json!({ "width": image.width(), "height": image.height(), "faces": report })
        );
    } else {
        println!(
            "{}: {}x{}, {} face(s)",
            args.image.display(),
            image.width(),
            image.height(),
            faces.len()
        );
        for (i, f) in faces.iter().enumerate() {
            let b = f.detection.bbox;
            println!(
                "  #{i}: box x={:.0} y={:.0} w={:.0} h={:.0} score={:.3} mask={:.3}{}",
                b.x,
                b.y,
                b.width,
                b.height,
                f.detection.score,
                f.mask_probability,
                if f.masked { " (masked)" } else { "" }
            );
            let k = f.detection.keypoints;
            println!(
                "      right eye ({:.0},{:.0}) left eye ({:.0},{:.0}) nose ({:.0},{:.0}) mouth ({:.0},{:.0}) right ear ({:.0},{:.0}) left ear ({:.0},{:.0})",
                k.right_eye.x, k.right_eye.y, k.left_eye.x, k.left_eye.y, k.nose_tip.x, k.nose_tip.y,
                k.mouth.x, k.mouth.y, k.right_ear.x, k.right_ear.y, k.left_ear.x, k.left_ear.y
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn face_json(f: &Face) -> serde_json::Value {
    json!({
        "box": f.detection.bbox,
        "score": f.detection.score,
        "keypoints": f.detection.keypoints,
        "mask_probability": f.mask_probability,
        "masked": f.masked,
        "quality": f.quality,
    })
}

fn largest_face(pipeline: &Pipeline, path: &Path) -> anyhow::Result<Face> {
    let faces = pipeline
        .analyze_bytes(&read(path)?, FaceSelection::Largest)
        .with_context(|| path.display().to_string())?;
    faces
        .into_iter()
        .next()
        .with_context(|| format!("no face found in {}", path.display()))
}

pub fn compare(config: &Config, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let pipeline = super::load_pipeline(config)?;
    // serve logs this at start; a one-shot command has no log to read.
    if pipeline.embedder_spec().similarity.is_none() {
        eprintln!(
            "warning: {} has no calibration in its description: similarity is the raw \
             cosine and `verified` compares it with 0.75 (run `facegate calibrate`, \
             docs/own-model.md)",
            config.models.embedder
        );
    }
    let a = largest_face(&pipeline, &args.a)?;
    let b = largest_face(&pipeline, &args.b)?;
    let cosine = a.embedding.cosine(&b.embedding);
    let similarity = pipeline.similarity(cosine);
    let threshold = args
        .threshold
        .unwrap_or(config.recognition.verify_threshold);
    let verified = similarity >= threshold;
    let masker = a.masked || b.masked;
    if args.json {
        println!(
            "{}",
            json!({
                "similarity": similarity,
                "verified": verified,
                "masker": masker,
                "threshold": threshold,
                "cosine": cosine,
                "a": face_json(&a),
                "b": face_json(&b),
            })
        );
    } else {
        println!(
            "similarity {similarity:.4} (cosine {cosine:.4}), threshold {threshold}: {}",
            if verified {
                "same person"
            } else {
                "different people"
            }
        );
        println!(
            "mask: a {:.3}, b {:.3}{}",
            a.mask_probability,
            b.mask_probability,
            if masker { " (masked)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
