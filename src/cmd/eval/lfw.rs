//! The LFW verification protocol on a pairs file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use facegate::config::Config;
use facegate::vision::{self, Embedding, FaceSelection};
use serde_json::json;

use super::metrics::{self, ScoredPair};

#[derive(Args, Debug)]
pub struct LfwArgs {
    /// Folder with `<Name>/<Name>_<NNNN>.jpg`.
    #[arg(long)]
    images: PathBuf,
    /// Pairs file; its first line is `FOLDS N` or a single `N` (see --help of eval).
    #[arg(long)]
    pairs: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Threads (default: runtime.workers).
    #[arg(long, value_parser = super::thread_count)]
    threads: Option<usize>,
    /// Read the second image of every pair from this folder instead (same layout as
    /// --images), e.g. masked copies: verifies masked probes against unmasked enrollments.
    #[arg(long)]
    probe_images: Option<PathBuf>,
    /// Also report FAR/FRR at this cosine (e.g. a threshold chosen on another pairs file).
    #[arg(long, value_parser = super::finite_number)]
    at_cosine: Option<f32>,
    /// Score each pair as verify does (issue 13): the first image's flip-averaged
    /// template against the second's single embedding, or its flip-averaged one when
    /// that cosine is within this margin of the verify threshold's. Default:
    /// `recognition.flip_margin_cosine`; 2 or more: always flip-averaged on both sides.
    #[arg(long, value_parser = super::finite_number)]
    flip_margin_cosine: Option<f32>,
    /// Enroll the first image of every pair as `facegate reembed` brings a template over
    /// from the embedder of this config file: its aligned crop, stored as JPEG with its
    /// face points, re-embedded by this config's embedder. The second image is a live
    /// probe. What switching models costs against enrolling again from photos.
    #[arg(long, value_name = "OLD_CONFIG")]
    enrolled_by: Option<PathBuf>,
}

/// Where each side of a pair is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Enrolled,
    Probe,
}

#[derive(Debug, PartialEq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub same: bool,
    pub fold: usize,
}

/// Parses a pairs file. `FOLDS N`: FOLDS blocks of N same then N different lines.
/// `N`: N same then N different lines, split into ten folds of N/10 of each kind (N
/// folds of one pair of each kind when N is below ten: a fold without pairs would score
/// as 0 % and pull the mean down).
pub fn parse_pairs(text: &str) -> anyhow::Result<Vec<Pair>> {
    // A byte-order mark, as Windows editors write it, is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Numbered as an editor shows them (from 1, blank lines counted), then skipped.
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().context("empty pairs file")?;
    let header: Vec<usize> = first
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "pairs file: its first line must be the count of pairs of each kind, `N` \
                 (N same-person lines, then N different-people lines) or `FOLDS N` (LFW's \
                 pairs.txt), found {first:?}"
            )
        })?;
    let body: Vec<(usize, Vec<&str>)> = lines
        .map(|(n, l)| (n, l.split_whitespace().collect()))
        .collect();
    let (folds, per_kind, blocked) = match header.as_slice() {
        [folds, n] => (*folds, *n, true),
        [n] => (10.min(*n), *n, false),
        _ => bail!("pairs header must be `FOLDS N` or `N`"),
    };
    if folds < 2 || per_kind == 0 {
        bail!(
            "pairs header {header:?}: k-fold accuracy needs at least two folds and a pair of \
             each kind in every fold (each fold's threshold is chosen on the others)"
        );
    }
    let expected = if blocked {
        folds * per_kind * 2
    } else {
        per_kind * 2
    };
    if body.len() != expected || folds == 0 {
        bail!(
            "pairs file has {} pair lines, its header promises {expected}",
            body.len()
        );
    }
    let mut out = Vec::with_capacity(body.len());
    for (i, (line, f)) in body.iter().enumerate() {
        let file = |name: &str, n: &str| -> anyhow::Result<String> {
            let n: u32 = n
                .parse()
                .with_context(|| format!("pairs line {line}: image number {n:?}"))?;
            Ok(format!("{name}/{name}_{n:04}.jpg"))
        };
        let (same, fold) = if blocked {
            let block = i / (2 * per_kind);
            (i % (2 * per_kind) < per_kind, block)
        } else {
            let same = i < per_kind;
            let index = if same { i } else { i - per_kind };
            (same, (index * folds / per_kind).min(folds - 1))
        };
        let pair = match (f.as_slice(), same) {
            ([name, i, j], true) => Pair {
                a: file(name, i)?,
                b: file(name, j)?,
                same,
                fold,
            },
            ([n1, i, n2, j], false) => Pair {
                a: file(n1, i)?,
                b: file(n2, j)?,
                same,
                fold,
            },
            _ => bail!(
                "pairs line {line} does not fit its position: {f:?} (expected {})",
                if same {
                    "a same-person pair `name i j`"
                } else {
                    "a different-people pair `name1 i name2 j`"
                }
            ),
        };
        out.push(pair);
    }
    Ok(out)
}

pub fn run(config: &Config, args: &LfwArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.pairs).with_context(|| args.pairs.display().to_string())?;
    let pairs = parse_pairs(&text)?;
    // With --probe-images the second image of a pair is a different file from the first
    // image of the same name, so images are keyed by (side, name).
    let probe_side = if args.probe_images.is_some() || args.enrolled_by.is_some() {
        Side::Probe
    } else {
        Side::Enrolled
    };
    let images: Vec<(Side, String)> = pairs
        .iter()
        .flat_map(|p| [(Side::Enrolled, p.a.clone()), (probe_side, p.b.clone())])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    require_folder(&args.images, "--images")?;
    if let Some(dir) = &args.probe_images {
        require_folder(dir, "--probe-images")?;
    }
    let pipeline = crate::cmd::load_pipeline(config)?;
    let old_pipeline = match &args.enrolled_by {
        Some(file) => Some(crate::cmd::load_pipeline(&crate::cmd::load_config(Some(
            file,
        ))?)?),
        None => None,
    };
    let margin = args
        .flip_margin_cosine
        .unwrap_or(config.recognition.flip_margin_cosine);
    let threshold_cosine = pipeline
        .calibration()
        .cosine_for(config.recognition.verify_threshold);
    let near_verify_threshold = |c: f32| vision::near_threshold(c, threshold_cosine, margin);
    let threads = args.threads.unwrap_or(config.runtime.workers);
    let bar = crate::cmd::progress::bar(images.len() as u64, "embedding");
    let start = Instant::now();
    let dir_of = |side: &Side| match (side, &args.probe_images) {
        (Side::Probe, Some(dir)) => dir.as_path(),
        _ => args.images.as_path(),
    };
    let embeddings = super::parallel_map(&images, threads, &bar, |(side, name)| {
        let dir = dir_of(side);
        match (side, &old_pipeline) {
            (Side::Enrolled, Some(old)) => reembedded(old, &pipeline, dir, name),
            _ => probe(&pipeline, dir, name),
        }
    });
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let by_name: BTreeMap<(Side, &str), &Option<Probe>> = images
        .iter()
        .map(|(side, name)| (*side, name.as_str()))
        .zip(embeddings.iter())
        .collect();
    let failed_images: Vec<String> = by_name
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|((side, n), _)| match side {
            Side::Enrolled => n.to_string(),
            Side::Probe => format!("probe:{n}"),
        })
        .collect();
    // Probes keep no reason, so the few that failed are read once more for it.
    let missing_images = tell_failures(by_name.iter().filter(|(_, e)| e.is_none()).map(
        |((side, n), _)| {
            let file = dir_of(side).join(n);
            let why = template(&pipeline, &file)
                .err()
                .unwrap_or_else(|| "no embedding".into());
            (file, why)
        },
    ));
    let stored: Vec<(usize, usize)> = embeddings
        .iter()
        .filter_map(|p| p.as_ref()?.stored_bytes)
        .collect();
    let mean_bytes = |f: fn(&(usize, usize)) -> usize| {
        (!stored.is_empty())
            .then(|| stored.iter().map(f).sum::<usize>() as f64 / stored.len() as f64)
    };
    let mirrored_pairs = std::cell::Cell::new(0usize);
    let scored: Vec<ScoredPair> = pairs
        .iter()
        .map(|p| ScoredPair {
            same: p.same,
            fold: p.fold,
            score: match (
                by_name[&(Side::Enrolled, p.a.as_str())],
                by_name[&(probe_side, p.b.as_str())],
            ) {
                (Some(a), Some(b)) => {
                    let single = a.template.cosine(&b.single);
                    if margin >= 2.0 {
                        Some(a.template.cosine(&b.template))
                    } else if near_verify_threshold(single) {
                        mirrored_pairs.set(mirrored_pairs.get() + 1);
                        Some(a.template.cosine(&b.near))
                    } else {
                        Some(single)
                    }
                }
                _ => None,
            },
        })
        .collect();
    let folds = scored.iter().map(|p| p.fold).max().map_or(0, |m| m + 1);
    let per_fold = metrics::k_fold(&scored, folds);
    let accs: Vec<f64> = per_fold.iter().map(|f| f.1).collect();
    let (accuracy, accuracy_std) = metrics::mean_std(&accs);
    let (far_t, tar) = metrics::tar_at_far(&scored, 1e-3);
    let all: Vec<&ScoredPair> = scored.iter().collect();
    let best_cosine = metrics::best_threshold(&all);
    let default_cosine = pipeline
        .calibration()
        .cosine_for(config.recognition.verify_threshold);
    let (far, frr) = metrics::far_frr(&scored, default_cosine);
    let failed_pairs = scored.iter().filter(|p| p.score.is_none()).count();
    let at_cosine = args.at_cosine.map(|c| {
        let (far, frr) = metrics::far_frr(&scored, c);
        json!({"cosine": c, "similarity": pipeline.similarity(c), "far": far, "frr": frr,
               "tar": 1.0 - frr, "accuracy": metrics::accuracy(&all, c)})
    });
    let report = json!({
        "pairs": scored.len(),
        "folds": folds,
        "accuracy": accuracy,
        "accuracy_std": accuracy_std,
        "fold_accuracies": accs,
        "tar_at_far_1e-3": tar,
        "threshold_cosine_at_far_1e-3": far_t,
        "detection_failures": failed_images.len(),
        "missing_images": missing_images,
        "failed_images": failed_images,
        "failed_pairs": failed_pairs,
        "best_threshold_cosine_all_pairs": best_cosine,
        "best_threshold_similarity_all_pairs": pipeline.similarity(best_cosine),
        "default_threshold": {
            "similarity": config.recognition.verify_threshold,
            "cosine": default_cosine,
            "far": far,
            "frr": frr,
            "tar": 1.0 - frr,
            "accuracy": metrics::accuracy(&all, default_cosine),
        },
        "at_cosine": at_cosine,
        "probe_images": args.probe_images.as_ref().map(|p| p.display().to_string()),
        "images": images.len(),
        "images_per_second": images.len() as f64 / elapsed.as_secs_f64(),
        "threads": threads,
        "embedder": config.models.embedder,
        "flip_average": config.recognition.flip_average,
        "flip_margin_cosine": margin,
        "pairs_with_mirror_run": mirrored_pairs.get(),
        "chip_padding": config.recognition.chip_padding,
        "alignment": config.recognition.alignment.name(),
        "fingerprint": pipeline.fingerprint(),
        "enrolled_by": old_pipeline.as_ref().map(|p| p.fingerprint()),
        "stored_crop_jpeg_bytes_mean": mean_bytes(|b| b.0),
        "bare_chip_jpeg_bytes_mean": mean_bytes(|b| b.1),
    });
    crate::cmd::print_report(&report, args.json)
}

/// Refuses a picture folder that is not there (every pair would count as a detection
/// failure, and the report would look like a model that finds no face).
pub(crate) fn require_folder(dir: &Path, flag: &str) -> anyhow::Result<()> {
    if dir.is_dir() {
        Ok(())
    } else if dir.exists() {
        bail!("{flag} {}: a file, not a folder of images", dir.display())
    } else {
        bail!("{flag} {}: no such folder", dir.display())
    }
}

/// The template (flip-averaged as configured) of the face nearest the picture's centre,
/// what `eval identify` and `calibrate` compare; or why there is none: missing,
/// unreadable, not an image, no face.
pub(crate) fn template(pipeline: &vision::Pipeline, file: &Path) -> Result<Embedding, String> {
    let bytes = std::fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MISSING.to_string(),
        _ => format!("unreadable: {e}"),
    })?;
    pipeline
        .analyze_bytes(&bytes, FaceSelection::NearestCenter)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .map(|f| f.embedding)
        .ok_or_else(|| "no face found".to_string())
}

const MISSING: &str = "missing";

/// Names on stderr the pictures that gave no embedding, with the reason (the first 20
/// of them); returns how many are missing from their folder.
pub(crate) fn tell_failures(failed: impl Iterator<Item = (PathBuf, String)>) -> usize {
    let mut missing = 0;
    for (n, (file, why)) in failed.enumerate() {
        missing += usize::from(why == MISSING);
        if n < 20 {
            eprintln!("no embedding for {}: {why}", file.display());
        } else if n == 20 {
            eprintln!("(more images without an embedding: see the report)");
        }
    }
    missing
}

/// One picture's embeddings: as a template (flip-averaged as configured), and as a
/// probe of verify (the single embedding, and the one averaged on demand).
struct Probe {
    template: Embedding,
    single: Embedding,
    near: Embedding,
    /// With --enrolled-by: the JPEG bytes of the stored crop, and of the bare chip
    /// (what was stored before crops had a margin).
    stored_bytes: Option<(usize, usize)>,
}

fn probe(pipeline: &vision::Pipeline, dir: &Path, name: &str) -> Option<Probe> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    let first = |faces: Vec<vision::Face>| faces.into_iter().next().map(|f| f.embedding);
    let template = first(
        pipeline
            .analyze_bytes(&bytes, FaceSelection::NearestCenter)
            .ok()?,
    )?;
    let single = std::cell::RefCell::new(None);
    let near = first(
        pipeline
            .analyze_bytes_deciding(&bytes, FaceSelection::NearestCenter, &|e| {
                single.replace(Some(e.clone()));
                true
            })
            .ok()?,
    )?;
    Some(Probe {
        template,
        single: single.into_inner()?,
        near,
        stored_bytes: None,
    })
}

/// The template `facegate reembed` makes with `pipeline` of the picture `old` enrolled:
/// the crop `old` stores, through the store's JPEG, cut to `pipeline`'s chip by the face
/// points stored with it. Only `template` is read for an enrolled picture.
fn reembedded(
    old: &vision::Pipeline,
    pipeline: &vision::Pipeline,
    dir: &Path,
    name: &str,
) -> Option<Probe> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    let face = old
        .analyze_bytes_to_store(&bytes, FaceSelection::NearestCenter)
        .ok()?
        .into_iter()
        .next()?;
    let (jpeg, points) = facegate::gallery::crop_of_face(&face, old.crop_points()).ok()?;
    let stored = facegate::gallery::decode_crop(&jpeg).ok()?;
    let (template, _) = pipeline.embed_stored_crop(&stored, Some(&points)).ok()?;
    let chip_jpeg = facegate::gallery::encode_crop(&face.aligned).ok()?;
    Some(Probe {
        single: template.clone(),
        near: template.clone(),
        template,
        stored_bytes: Some((jpeg.len(), chip_jpeg.len())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_count_header_splits_into_ten_folds() {
        let mut text = String::from("20\n");
        for i in 0..20 {
            text.push_str(&format!("A\t{}\t{}\n", i + 1, i + 2));
        }
        for i in 0..20 {
            text.push_str(&format!("A\t{}\tB\t{}\n", i + 1, i + 1));
        }
        let pairs = parse_pairs(&text).unwrap();
        assert_eq!(pairs.len(), 40);
        assert_eq!(pairs[0].a, "A/A_0001.jpg");
        assert!(pairs[..20].iter().all(|p| p.same));
        for fold in 0..10 {
            assert_eq!(pairs.iter().filter(|p| p.fold == fold && p.same).count(), 2);
            assert_eq!(
                pairs.iter().filter(|p| p.fold == fold && !p.same).count(),
                2
            );
        }
    }

    #[test]
    fn fewer_than_ten_pairs_of_a_kind_make_one_fold_per_pair_of_each_kind() {
        let text = "\u{feff}3\nA 1 2\nC 1 2\nE 1 2\nA 1 B 1\nC 1 D 1\nE 1 F 1\n";
        let pairs = parse_pairs(text).unwrap();
        for fold in 0..3 {
            assert_eq!(pairs.iter().filter(|p| p.fold == fold && p.same).count(), 1);
            assert_eq!(
                pairs.iter().filter(|p| p.fold == fold && !p.same).count(),
                1
            );
        }
    }

    #[test]
    fn a_header_without_two_folds_of_pairs_is_refused() {
        for text in ["0\n", "1 2\nA 1 2\nA 2 3\nA 1 B 1\nA 2 B 2\n", "0 5\n"] {
            let err = parse_pairs(text).unwrap_err().to_string();
            assert!(err.contains("at least two folds"), "{text:?}: {err}");
        }
    }

    #[test]
    fn blocked_header_assigns_blocks_to_folds() {
        let mut text = String::from("2 1\n");
        text.push_str("A 1 2\nA 1 B 1\nC 1 2\nC 1 D 3\n");
        let pairs = parse_pairs(&text).unwrap();
        assert_eq!(
            pairs.iter().map(|p| (p.same, p.fold)).collect::<Vec<_>>(),
            vec![(true, 0), (false, 0), (true, 1), (false, 1)]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_in_the_file_blank_lines_counted() {
        let text = "2\n\nA 1 2\nC 1 2\n\nA 1 B x\nC 1 D 1\n";
        let err = parse_pairs(text).unwrap_err();
        assert!(
            format!("{err:#}").contains("pairs line 6: image number \"x\""),
            "{err:#}"
        );
        let err = parse_pairs("2\n\nA 1 2\nC 1 2\n\nA 1 B 2\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("3 pair lines, its header promises 4"),
            "{err}"
        );
        let err = parse_pairs("2\n\nA 1 2\nA 1 B 2\nC 1 2\nC 1 D 1\n").unwrap_err();
        assert!(
            err.to_string().contains("pairs line 4 does not fit"),
            "{err}"
        );
    }

    #[test]
    fn a_count_that_does_not_match_is_an_error() {
        assert!(parse_pairs("3\nA 1 2\n").is_err());
        assert!(parse_pairs("").is_err());
    }
}
