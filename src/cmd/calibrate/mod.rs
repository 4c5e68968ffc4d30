//! `facegate calibrate --images DIR --pairs FILE`: fits the configured embedder's map
//! from cosine to the API's similarity on a pairs file and writes it into the embedder's
//! description (its sidecar `<file>.toml`, or its `[model.embedder]` table in
//! MANIFEST.toml, edited in place with comments kept).
//!
//! The fit: `threshold_cosine` (similarity 0.75, the API's default operating point) is
//! the best-accuracy threshold on all pairs; `zero_cosine` (similarity 0) lies four times
//! the distance from the impostors' mean cosine to the threshold below that mean, so
//! an average impostor scores 0.6 for any embedder (the shipped dlib calibration: 0.5);
//! `size_shift_per_ln_user` (how identify's `gallery_size` scoring lowers a match in a
//! larger gallery) is fitted on the same images ([`size_shift`]).
//!
//! The calibration is part of the template fingerprint, so a new one leaves every
//! template stored under the old one out of search until `facegate reembed`, and makes a
//! door differ from the doors of its fleet. Calibrate therefore writes only when that
//! cannot surprise anyone: the description is an operator's sidecar, no template in the
//! data folder carries the fingerprint it would change and the daemon is not running on
//! it; otherwise it says what would happen and asks for `--force`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use facegate::config::Config;
use facegate::store::{DataLock, LockError};
use facegate::vision::{EmbedderSpec, Embedding, SimilarityCalibration, SpecSource};
use serde_json::json;

use super::eval::lfw::{parse_pairs, tell_failures, template};
use super::eval::metrics::{self, ScoredPair};

mod size_shift;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Folder with `<Name>/<Name>_<NNNN>.jpg`.
    #[arg(long)]
    images: PathBuf,
    /// LFW pairs file (e.g. pairsDevTrain.txt: tune on development pairs only).
    #[arg(long)]
    pairs: PathBuf,
    /// Compute and print, but do not write the description.
    #[arg(long)]
    dry_run: bool,
    /// Write even when the new calibration changes the fingerprint of stored templates
    /// or of the bundled models' MANIFEST.toml (then run `facegate reembed`).
    #[arg(long)]
    force: bool,
    /// Threads (default: runtime.workers).
    #[arg(long, value_parser = super::eval::thread_count)]
    threads: Option<usize>,
}

/// Below this accuracy at its own best threshold a fit is refused: chance is 0.5.
const MIN_FIT_ACCURACY: f64 = 0.75;

/// How far below the impostor mean the zero point lies, in units of (threshold - mean).
const ZERO_SPAN: f32 = 4.0;

/// Fits a calibration to scored pairs; `None` without both kinds of scored pairs.
pub fn fit(pairs: &[ScoredPair]) -> Option<(f32, f32, f64)> {
    let all: Vec<&ScoredPair> = pairs.iter().collect();
    let impostors: Vec<f32> = pairs
        .iter()
        .filter(|p| !p.same)
        .filter_map(|p| p.score)
        .collect();
    if impostors.is_empty() || !pairs.iter().any(|p| p.same && p.score.is_some()) {
        return None;
    }
    let threshold = metrics::best_threshold(&all).min(0.999);
    let mean = impostors.iter().sum::<f32>() / impostors.len() as f32;
    let gap = (threshold - mean).max(0.01);
    let zero = (mean - ZERO_SPAN * gap).clamp(-1.0, threshold - 0.01);
    Some((threshold, zero, metrics::accuracy(&all, threshold)))
}

pub fn run(config: &Config, args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.pairs).with_context(|| args.pairs.display().to_string())?;
    let pairs = parse_pairs(&text)?;
    let names: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    super::eval::lfw::require_folder(&args.images, "--images")?;
    let models_dir = config.pipeline_options().models_dir;
    let file = &config.models.embedder;
    let (spec, source) = EmbedderSpec::find(&models_dir, file)?;
    if !args.dry_run {
        // Before minutes of embedding: an operator who made the description read-only
        // meant it not to change.
        require_writable(&source)?;
    }
    let pipeline = super::load_pipeline(config)?;
    let threads = args.threads.unwrap_or(config.runtime.workers);
    let bar = super::progress::bar(names.len() as u64, "embedding");
    let results = super::eval::parallel_map(&names, threads, &bar, |n| {
        template(&pipeline, &args.images.join(n))
    });
    bar.finish_and_clear();
    tell_failures(names.iter().zip(&results).filter_map(|(n, r)| {
        r.as_ref()
            .err()
            .map(|why| (args.images.join(n), why.clone()))
    }));
    let embeddings: Vec<Option<_>> = results.into_iter().map(Result::ok).collect();
    let find = |name: &str| {
        names
            .binary_search_by(|n| n.as_str().cmp(name))
            .ok()
            .and_then(|i| embeddings[i].as_ref())
    };
    let scored: Vec<ScoredPair> = pairs
        .iter()
        .map(|p| ScoredPair {
            same: p.same,
            fold: p.fold,
            score: match (find(&p.a), find(&p.b)) {
                (Some(a), Some(b)) => Some(a.cosine(b)),
                _ => None,
            },
        })
        .collect();
    let Some((threshold, zero, accuracy)) = fit(&scored) else {
        bail!("no faces found in enough pairs to calibrate");
    };
    // A fit that cannot tell the kinds apart would still give numbers, and every
    // similarity the API reports would then mean nothing.
    if accuracy < MIN_FIT_ACCURACY && !args.dry_run {
        bail!(
            "not written: at its best threshold the fit classifies only {:.1} % of the {} \
             pairs right (pairs without a face count as wrong), so it cannot tell the same \
             person from two people; check the pairs file's labels and the images \
             (--dry-run prints the fit anyway)",
            accuracy * 100.0,
            scored.len()
        );
    }
    // The same 10-fold figure as `eval lfw` on this file (its thresholds are chosen on
    // the other folds, so it is not the calibration's own, optimistic accuracy).
    let folds = scored.iter().map(|p| p.fold).max().map_or(0, |m| m + 1);
    let fold_accs: Vec<f64> = metrics::k_fold(&scored, folds)
        .iter()
        .map(|f| f.1)
        .collect();
    let (accuracy_10fold, accuracy_10fold_std) = metrics::mean_std(&fold_accs);
    let size_shift = size_shift::fit(&by_person(&names, &embeddings), threshold);
    let described_shift = spec
        .similarity
        .as_ref()
        .and_then(|c| c.size_shift_per_ln_user);
    if let Err(why) = &size_shift {
        eprintln!(
            "size_shift_per_ln_user not fitted: {why}; {}",
            match described_shift {
                Some(kept) => format!("the description's {kept} is kept"),
                None => "identify's gallery_size scoring uses the default rule \
                         (docs/own-model.md)"
                    .to_string(),
            }
        );
    }
    let pairs_name = args
        .pairs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let calibration = SimilarityCalibration {
        threshold_cosine: round5(threshold),
        zero_cosine: round5(zero),
        fitted_on: format!(
            "{pairs_name}: best-accuracy threshold (accuracy {accuracy:.4} on its {} pairs), \
             flip_average {}",
            scored.len(),
            config.recognition.flip_average
        ),
        size_shift_per_ln_user: match &size_shift {
            Ok(fit) => Some(round5(fit.per_ln_user)),
            Err(_) => described_shift,
        },
    };
    let recalibrated = EmbedderSpec {
        similarity: Some(calibration.clone()),
        ..spec.clone()
    };
    let changes_fingerprint = recalibrated.fingerprint_text() != spec.fingerprint_text();
    let written = if args.dry_run {
        None
    } else {
        if changes_fingerprint && !args.force {
            let hazards = hazards(config, &source, pipeline.fingerprint())?;
            if !hazards.is_empty() {
                bail!(
                    "not written: the new calibration ({}) changes the template \
                     fingerprint of {file}, and {}. To move the operating point of a model \
                     in use, set recognition.verify_threshold and identify_threshold \
                     instead (docs/accuracy.md; `eval identify` shows identify's false \
                     alarms by gallery size at your threshold). To write it anyway, pass \
                     --force, then stop the daemon and run `facegate reembed` (and give \
                     every door of the fleet the same description).",
                    changes(spec.similarity.as_ref(), &calibration).join(", "),
                    hazards.join("; ")
                );
            }
        }
        Some(write(&source, file, &calibration)?)
    };
    if written.is_some() && changes_fingerprint {
        eprintln!(
            "{file}: new template fingerprint; templates stored under {} are not searched \
             until `facegate reembed`",
            pipeline.fingerprint()
        );
    }
    println!(
        "{}",
        json!({
            "embedder": file,
            "threshold_cosine": calibration.threshold_cosine,
            "zero_cosine": calibration.zero_cosine,
            "accuracy_at_threshold": accuracy,
            "accuracy": accuracy_10fold,
            "accuracy_std": accuracy_10fold_std,
            "pairs": scored.len(),
            "failed_pairs": scored.iter().filter(|p| p.score.is_none()).count(),
            "size_shift_per_ln_user": calibration.size_shift_per_ln_user,
            "size_shift_fit": size_shift.as_ref().ok(),
            "size_shift_not_fitted": size_shift.as_ref().err().map(ToString::to_string),
            "fitted_on": calibration.fitted_on,
            "written_to": written.map(|p| p.display().to_string()),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// The keys whose values a new calibration changes, as "key old -> new".
fn changes(old: Option<&SimilarityCalibration>, new: &SimilarityCalibration) -> Vec<String> {
    let show = |v: Option<f32>| v.map_or("absent".to_string(), |v| v.to_string());
    [
        (
            "threshold_cosine",
            old.map(|c| c.threshold_cosine),
            Some(new.threshold_cosine),
        ),
        (
            "zero_cosine",
            old.map(|c| c.zero_cosine),
            Some(new.zero_cosine),
        ),
        (
            "size_shift_per_ln_user",
            old.and_then(|c| c.size_shift_per_ln_user),
            new.size_shift_per_ln_user,
        ),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(key, a, b)| format!("{key} {} -> {}", show(a), show(b)))
    .collect()
}

/// Refuses a description calibrate could not replace: a read-only file, or a folder
/// where the replacement cannot be created.
fn require_writable(source: &SpecSource) -> anyhow::Result<()> {
    let (SpecSource::Sidecar(path) | SpecSource::Manifest(path)) = source;
    let target = super::files::replaced_file(path);
    let meta = std::fs::metadata(&target).with_context(|| target.display().to_string())?;
    if meta.permissions().readonly() {
        bail!(
            "{} is read-only: make it writable for calibrate to write the calibration, or \
             pass --dry-run to only print it",
            target.display()
        );
    }
    let folder = target.parent().unwrap_or(Path::new("."));
    if rustix::fs::access(folder, rustix::fs::Access::WRITE_OK).is_err() {
        bail!(
            "cannot write in {} (the calibration replaces {} there): pass --dry-run to only \
             print it",
            folder.display(),
            target.display()
        );
    }
    Ok(())
}

/// What a new fingerprint would break: the bundled models' manifest shared by a fleet,
/// templates stored under `fingerprint`, a daemon serving the data folder.
fn hazards(config: &Config, source: &SpecSource, fingerprint: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if let SpecSource::Manifest(path) = source {
        out.push(format!(
            "its description is in {}, which describes the bundled models every door \
             of a fleet shares",
            path.display()
        ));
    }
    let data = &config.store.data_dir;
    if !data.join("data.mdb").exists() {
        return Ok(out);
    }
    match DataLock::acquire(data) {
        Err(LockError::Busy { .. }) => out.push(format!(
            "`facegate serve` is running on {}: its templates would not be searched after \
             its next start",
            data.display()
        )),
        Err(e) => return Err(e.into()),
        Ok(_lock) => {
            let store = super::open_store(data, config.store.map_size_mb)?;
            let mut stored = 0usize;
            store.read(|r| {
                r.for_each_template_without_crop(|row| {
                    stored += usize::from(row.record.fingerprint == fingerprint);
                    Ok(())
                })
            })?;
            if stored > 0 {
                out.push(format!(
                    "{stored} template(s) in {} carry the current fingerprint: they would \
                     not be searched until `facegate reembed`",
                    data.display()
                ));
            }
        }
    }
    Ok(out)
}

/// The templates of `names` (`<Person>/<file>`, sorted) grouped by person, each
/// person's first image first; images without a template are left out.
fn by_person<'a>(names: &[String], embeddings: &'a [Option<Embedding>]) -> Vec<Vec<&'a Embedding>> {
    let person = |name: &String| name.split('/').next().unwrap_or_default().to_string();
    let people: Vec<String> = names.iter().map(person).collect();
    super::eval::identify::indices_by_person(people.iter().map(String::as_str))
        .into_values()
        .map(|images| {
            images
                .iter()
                .filter_map(|&i| embeddings[i].as_ref())
                .collect()
        })
        .collect()
}

fn round5(v: f32) -> f32 {
    (v * 1e5).round() / 1e5
}

/// Writes `calibration` as the `similarity` table of the description at `source`.
fn write(
    source: &SpecSource,
    file: &str,
    calibration: &SimilarityCalibration,
) -> anyhow::Result<PathBuf> {
    let (path, in_manifest) = match source {
        SpecSource::Sidecar(p) => (p.clone(), false),
        SpecSource::Manifest(p) => (p.clone(), true),
    };
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let updated = with_calibration(&text, in_manifest.then_some(file), calibration)?;
    // Re-read what was written as a description before replacing the file.
    let check = if in_manifest {
        EmbedderSpec::from_manifest(&updated, file).map_err(anyhow::Error::msg)?
    } else {
        Some(EmbedderSpec::parse(&updated).map_err(anyhow::Error::msg)?)
    };
    if check.and_then(|s| s.similarity).as_ref() != Some(calibration) {
        bail!("the edited description does not read back the calibration");
    }
    // Durable before it replaces the description: a power cut must leave the old file or
    // the new one, never an empty one the daemon cannot start with.
    super::files::replace_durably(&path, |out| Ok(out.write_all(updated.as_bytes())?))?;
    Ok(path)
}

/// `text` with its `similarity` set: at top level of a sidecar, or in the
/// `[model.embedder]` table of `manifest_file`'s entry.
pub fn with_calibration(
    text: &str,
    manifest_file: Option<&str>,
    calibration: &SimilarityCalibration,
) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("description TOML")?;
    let description: &mut toml_edit::Table = match manifest_file {
        None => doc.as_table_mut(),
        Some(file) => {
            let models = doc
                .get_mut("model")
                .and_then(|m| m.as_array_of_tables_mut())
                .context("MANIFEST.toml has no [[model]] entries")?;
            let entry = models
                .iter_mut()
                .find(|m| m.get("file").and_then(|f| f.as_str()) == Some(file))
                .with_context(|| format!("MANIFEST.toml has no entry for {file}"))?;
            entry
                .get_mut("embedder")
                .and_then(|e| e.as_table_mut())
                .with_context(|| format!("{file} has no [model.embedder] table"))?
        }
    };
    set_calibration(description, calibration);
    Ok(doc.to_string())
}

/// Sets or removes (`None`) each key of `table`, keeping the comments around a value
/// it replaces.
fn set_keys(table: &mut dyn toml_edit::TableLike, values: [(&str, Option<toml_edit::Value>); 4]) {
    for (key, value) in values {
        match value {
            Some(v) => match table.get_mut(key).and_then(|item| item.as_value_mut()) {
                Some(old) => {
                    let decor = old.decor().clone();
                    *old = v;
                    *old.decor_mut() = decor;
                }
                None => {
                    table.insert(key, toml_edit::value(v));
                }
            },
            None => {
                table.remove(key);
            }
        }
    }
}

/// Sets the `similarity` keys of `description`. An operator's `[similarity]` table,
/// dotted keys or inline table are edited key by key, so that its comments and layout stay; a
/// `size_shift_per_ln_user` left from an earlier fit goes when this fit has none.
fn set_calibration(description: &mut toml_edit::Table, calibration: &SimilarityCalibration) {
    // As the f32 prints (0.42451), not as its f64 widening does (0.42451000213623047).
    let number = |v: f32| toml_edit::Value::from(v.to_string().parse::<f64>().unwrap_or(v.into()));
    let values: [(&str, Option<toml_edit::Value>); 4] = [
        (
            "threshold_cosine",
            Some(number(calibration.threshold_cosine)),
        ),
        ("zero_cosine", Some(number(calibration.zero_cosine))),
        ("fitted_on", Some(calibration.fitted_on.as_str().into())),
        (
            "size_shift_per_ln_user",
            calibration.size_shift_per_ln_user.map(number),
        ),
    ];
    if let Some(item) = description
        .get_mut("similarity")
        .filter(|item| item.is_table_like())
    {
        if let Some(table) = item.as_table_like_mut() {
            set_keys(table, values);
        }
        // Keys added to an inline table take its last value's spacing; reformat its
        // inside (it holds no comments: the one after it belongs to the line).
        if let Some(inline) = item.as_inline_table_mut() {
            inline.fmt();
        }
        return;
    }
    // A `similarity` that is not a table (a mistake calibrate mends): keep the
    // comment after it.
    let decor = description
        .get("similarity")
        .and_then(|item| item.as_value())
        .map(|v| v.decor().clone());
    let mut inline = toml_edit::InlineTable::new();
    for (key, value) in values {
        if let Some(v) = value {
            inline.insert(key, v);
        }
    }
    let mut value = toml_edit::Value::from(inline);
    if let Some(decor) = decor {
        *value.decor_mut() = decor;
    }
    description.insert("similarity", toml_edit::Item::Value(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(same: bool, score: f32) -> ScoredPair {
        ScoredPair {
            same,
            score: Some(score),
            fold: 0,
        }
    }

    #[test]
    fn the_threshold_separates_the_pairs_and_an_average_impostor_scores_0_6() {
        let mut pairs: Vec<ScoredPair> = (0..50)
            .map(|i| pair(true, 0.7 + i as f32 * 0.002))
            .collect();
        pairs.extend((0..50).map(|i| pair(false, 0.3 + i as f32 * 0.004)));
        let (t, zero, acc) = fit(&pairs).unwrap();
        assert_eq!(acc, 1.0);
        assert!(t > 0.496 && t < 0.7, "{t}");
        let mean = pairs[50..].iter().filter_map(|p| p.score).sum::<f32>() / 50.0;
        let c = facegate::vision::Calibration::with_default_size_shift(t, zero);
        assert!((c.similarity(mean) - 0.6).abs() < 1e-3);
        assert!((c.similarity(t) - 0.75).abs() < 1e-6);
    }

    #[test]
    fn a_manifest_entry_gets_its_calibration_and_keeps_its_comments() {
        let text = "# head\n[[model]]\nfile = \"a.tflite\"\n[[model]]\nfile = \"b.tflite\" # b\n[model.embedder]\ninput_size = [160, 160]\n";
        let c = SimilarityCalibration {
            threshold_cosine: 0.5,
            zero_cosine: 0.1,
            fitted_on: "x".into(),
            size_shift_per_ln_user: Some(0.03),
        };
        let out = with_calibration(text, Some("b.tflite"), &c).unwrap();
        assert!(out.starts_with("# head\n"));
        assert!(out.contains("file = \"b.tflite\" # b"));
        let doc: toml::Value = toml::from_str(&out).unwrap();
        let b = &doc["model"][1]["embedder"]["similarity"];
        assert_eq!(b["threshold_cosine"].as_float(), Some(0.5));
        assert_eq!(b["size_shift_per_ln_user"].as_float(), Some(0.03));
        assert!(doc["model"][0].get("embedder").is_none());
        assert!(with_calibration(text, Some("a.tflite"), &c).is_err());
    }

    #[test]
    fn people_are_grouped_with_their_first_image_first_and_failed_images_left_out() {
        let names: Vec<String> = [
            "A/A_0001.jpg",
            "A/A_0002.jpg",
            "B/B_0001.jpg",
            "B/B_0002.jpg",
        ]
        .map(String::from)
        .to_vec();
        let e = |v: f32| Some(Embedding::from_raw(&[v, 1.0]).unwrap());
        // B's first image gave no template: its second becomes B's gallery template.
        let embeddings = vec![e(1.0), e(2.0), None, e(4.0)];
        let people = by_person(&names, &embeddings);
        assert_eq!(people.len(), 2);
        assert_eq!(
            people[0],
            vec![
                embeddings[0].as_ref().unwrap(),
                embeddings[1].as_ref().unwrap()
            ]
        );
        assert_eq!(people[1], vec![embeddings[3].as_ref().unwrap()]);
    }

    #[test]
    fn a_refusal_names_the_keys_the_new_calibration_changes() {
        let old = SimilarityCalibration {
            threshold_cosine: 0.5,
            zero_cosine: 0.1,
            fitted_on: "a".into(),
            size_shift_per_ln_user: None,
        };
        let new = SimilarityCalibration {
            fitted_on: "b".into(),
            size_shift_per_ln_user: Some(0.04),
            ..old.clone()
        };
        assert_eq!(
            changes(Some(&old), &new),
            ["size_shift_per_ln_user absent -> 0.04"]
        );
        assert_eq!(changes(Some(&old), &old), Vec::<String>::new());
        assert_eq!(changes(None, &old).len(), 2);
    }

    #[test]
    fn an_operators_similarity_table_keeps_its_comments_and_loses_a_stale_shift() {
        let text = "output_dim = 512\n\n# Fitted at the gate, 2026-11.\n[similarity]\n\
                    # our site's pairs\nthreshold_cosine = 0.6 # first try\nzero_cosine = 0.1\n\
                    size_shift_per_ln_user = 0.02\n";
        let c = SimilarityCalibration {
            threshold_cosine: 0.55,
            zero_cosine: -0.2,
            fitted_on: "pairs.txt".into(),
            size_shift_per_ln_user: None,
        };
        let out = with_calibration(text, None, &c).unwrap();
        for kept in [
            "# Fitted at the gate, 2026-11.",
            "# our site's pairs",
            "# first try",
        ] {
            assert!(out.contains(kept), "{kept:?} lost: {out}");
        }
        let doc: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(doc["similarity"]["threshold_cosine"].as_float(), Some(0.55));
        assert_eq!(doc["similarity"]["fitted_on"].as_str(), Some("pairs.txt"));
        assert!(
            doc["similarity"].get("size_shift_per_ln_user").is_none(),
            "{out}"
        );
        let inline = "similarity = { threshold_cosine = 0.6, zero_cosine = 0.1 } # mine\n";
        let shifted = SimilarityCalibration {
            size_shift_per_ln_user: Some(0.04),
            ..c.clone()
        };
        let out = with_calibration(inline, None, &shifted).unwrap();
        assert!(out.contains("# mine"), "{out}");
        assert!(
            !out.contains(" ,"),
            "an added key is spaced as the others: {out}"
        );
        let doc: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(
            doc["similarity"]["size_shift_per_ln_user"].as_float(),
            Some(0.04)
        );
        let dotted = "similarity.threshold_cosine = 0.6 # tried\nsimilarity.zero_cosine = 0.1\n";
        let out = with_calibration(dotted, None, &shifted).unwrap();
        assert!(out.contains("# tried"), "{out}");
        let doc: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(doc["similarity"]["zero_cosine"].as_float(), Some(-0.2));
    }
}
