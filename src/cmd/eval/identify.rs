//! `facegate eval identify`: LFW's 1:N protocol on a folder `DIR/<Name>/<Name>_<NNNN>.jpg`.
//!
//! Every person with at least two images is enrolled with their first image; every
//! person with one image is a distractor. Closed set: gallery = enrolled + all
//! distractors, probes = the other images of enrolled people; rank-1 and rank-5.
//! Open set: five splits (fixed seeds), each putting a random half of the distractors in
//! the gallery and using the other half as non-mated probes; the threshold is set at 1 %
//! false alarms on the non-mated probes and DIR (detected, score above the threshold and
//! rank-1 correct) is reported as mean and std.
//!
//! Searches go through [`facegate::index::Index`] (insert/search) and scores through the
//! pipeline's [`facegate::vision::Pipeline::identify_scores`] (with the open-set
//! normalisation of `recognition.identify_score_normalisation`), exactly as identify-face.
//! Rank-5 needs more than the best match, so it is counted from each probe's cosine to
//! every gallery template (and rank-1 from it is checked against the index's answer).
//! An image without a face counts: a probe without a face is a miss (and never a false
//! alarm); an enrolled person whose first image has no face is missing from the gallery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use facegate::config::Config;
use facegate::index::Index;
use facegate::vision::{Embedding, Pipeline};
use serde_json::json;

use super::metrics::mean_std;

#[derive(Args, Debug)]
pub struct IdentifyArgs {
    /// LFW-layout folder: `<Name>/<Name>_<NNNN>.jpg`.
    #[arg(long)]
    images: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Threads (default: runtime.workers).
    #[arg(long, value_parser = super::thread_count)]
    threads: Option<usize>,
    /// Keep the embeddings in this file and reuse them when the embedder fingerprint and
    /// the image list match (compares scoring options without embedding again).
    #[arg(long)]
    embeddings_cache: Option<PathBuf>,
}

/// Seeds of the five open-set splits (fixed so that runs compare).
pub const SPLIT_SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
/// False-alarm rate at which the open-set threshold is set.
pub const FALSE_ALARM_RATE: f64 = 0.01;

/// One image of the folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub person: String,
    pub file: PathBuf,
}

impl Sample {
    /// `<Name>/<file>`, as LFW names an image.
    pub fn name(&self) -> String {
        let file = self.file.file_name().unwrap_or_default().to_string_lossy();
        format!("{}/{file}", self.person)
    }
}

/// The protocol's roles, as indices into the sample list.
#[derive(Debug, PartialEq)]
pub struct Protocol {
    /// First image of each person with two or more.
    pub enrolled: Vec<usize>,
    /// Other images of the enrolled people.
    pub mated: Vec<usize>,
    /// The only image of each one-image person.
    pub distractors: Vec<usize>,
}

/// Lists an LFW-layout folder: persons sorted by name, images by file name.
pub fn list_folder(dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let mut people: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    let mut out = Vec::new();
    for person_dir in people {
        let person = person_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&person_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            // Cameras and Windows write `.JPG`.
            .filter(|p| {
                p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|file| Sample {
            person: person.clone(),
            file,
        }));
    }
    if out.is_empty() {
        bail!("{} holds no <Name>/<image> files", dir.display());
    }
    Ok(out)
}

/// The indices of each person's items, in their order, people by name.
pub fn indices_by_person<'a>(
    people: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<&'a str, Vec<usize>> {
    let mut by_person: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, person) in people.into_iter().enumerate() {
        by_person.entry(person).or_default().push(i);
    }
    by_person
}

/// Splits samples (grouped by person, first image first) into the protocol's roles.
pub fn protocol(samples: &[Sample]) -> Protocol {
    let by_person = indices_by_person(samples.iter().map(|s| s.person.as_str()));
    let mut p = Protocol {
        enrolled: Vec::new(),
        mated: Vec::new(),
        distractors: Vec::new(),
    };
    for images in by_person.values() {
        match images.as_slice() {
            [only] => p.distractors.push(*only),
            [first, rest @ ..] => {
                p.enrolled.push(*first);
                p.mated.extend_from_slice(rest);
            }
            [] => {}
        }
    }
    p
}

/// A deterministic shuffle (SplitMix64 + Fisher-Yates), stable across crate versions.
pub fn shuffled(items: &[usize], seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// The answer identify-face would give for one probe: best template's user and score.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub person: String,
    pub score: f32,
}

/// Scores that the open-set threshold is chosen from and applied to.
pub struct OpenSet {
    /// Per mated probe: `Some(score)` when the best match is the right person.
    pub mated_correct: Vec<Option<f32>>,
    /// Per non-mated probe: best score (`None`: no face, never a false alarm).
    pub non_mated: Vec<Option<f32>>,
}

/// The lowest threshold with at most `rate` of the non-mated probes at or above it, and
/// the detection and identification rate there.
pub fn dir_at_far(open: &OpenSet, rate: f64) -> (f32, f64) {
    let scores: Vec<f32> = open.non_mated.iter().flatten().copied().collect();
    let threshold = super::metrics::threshold_at_rate(scores, open.non_mated.len(), rate);
    let hits = open
        .mated_correct
        .iter()
        .filter(|s| s.is_some_and(|s| s >= threshold))
        .count();
    (
        threshold,
        hits as f64 / open.mated_correct.len().max(1) as f64,
    )
}

/// Builds a gallery in a fresh index: the given samples that have an embedding.
fn gallery_index(
    samples: &[Sample],
    embeddings: &[Option<Embedding>],
    members: impl Iterator<Item = usize>,
) -> anyhow::Result<Index> {
    let index = Index::new();
    for i in members {
        if let Some(e) = &embeddings[i] {
            index
                .insert(
                    "eval",
                    "gallery",
                    &samples[i].person,
                    i as u64,
                    e.as_slice(),
                )
                .with_context(|| format!("indexing {}", samples[i].person))?;
        }
    }
    Ok(index)
}

/// The gallery's best match for `probe`, as identify-face finds and scores it: the
/// index's compact scan, then the exact re-rank on the f32 embeddings (template id `i`
/// is `embeddings[i]`).
fn answer(
    pipeline: &Pipeline,
    index: &Index,
    embeddings: &[Option<Embedding>],
    probe: &Option<Embedding>,
) -> Option<Answer> {
    let probe = probe.as_ref()?;
    let exact = |_: &str, id: u64, out: &mut Vec<f32>| {
        let stored = embeddings.get(id as usize).and_then(|e| e.as_ref());
        if let Some(e) = stored {
            out.extend_from_slice(&e.0);
        }
        Ok::<_, facegate::index::Error>(stored.is_some())
    };
    let found = index
        .search(
            "eval",
            "gallery",
            probe.as_slice(),
            pipeline.identify_candidates(1),
            exact,
        )
        .ok()?;
    let cosines: Vec<f32> = found.iter().map(|m| m.cosine).collect();
    let users = index.users("eval", "gallery");
    let score = *pipeline.identify_scores(&cosines, users).first()?;
    Some(Answer {
        person: found.into_iter().next()?.user_id.to_string(),
        score,
    })
}

/// 1-based rank of `person` among the gallery's people for `probe` (by best cosine of
/// each person's templates); `None` when the person is not in the gallery.
fn rank_of(probe: &Embedding, person: &str, gallery: &[(String, &Embedding)]) -> Option<usize> {
    let mut best: BTreeMap<&str, f32> = BTreeMap::new();
    for (name, e) in gallery {
        let c = probe.cosine(e);
        let b = best.entry(name.as_str()).or_insert(f32::MIN);
        *b = b.max(c);
    }
    let own = *best.get(person)?;
    Some(1 + best.values().filter(|&&c| c > own).count())
}

pub fn run(config: &Config, args: &IdentifyArgs) -> anyhow::Result<ExitCode> {
    let samples = list_folder(&args.images)?;
    if let Some(file) = &args.embeddings_cache {
        let folder = file.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(folder) = folder.filter(|f| !f.is_dir()) {
            anyhow::bail!(
                "--embeddings-cache {}: folder {} does not exist",
                file.display(),
                folder.display()
            );
        }
    }
    let roles = protocol(&samples);
    let pipeline = crate::cmd::load_pipeline(config)?;
    let threads = args.threads.unwrap_or(config.runtime.workers);
    let start = Instant::now();
    let cached = args
        .embeddings_cache
        .as_deref()
        .and_then(|f| read_cache(f, pipeline.fingerprint(), &samples));
    let embeddings: Vec<Option<Embedding>> =
        match cached {
            Some(e) => e,
            None => {
                let bar = crate::cmd::progress::bar(samples.len() as u64, "embedding");
                let results = super::parallel_map(&samples, threads, &bar, |s| {
                    super::lfw::template(&pipeline, &s.file)
                });
                bar.finish_and_clear();
                // Why an image gave no template, so an operator's own folder can be mended; the
                // protocol goes on without it (an enrolled person's probes then count as misses).
                super::lfw::tell_failures(samples.iter().zip(&results).filter_map(|(s, r)| {
                    r.as_ref().err().map(|why| (s.file.clone(), why.clone()))
                }));
                let e: Vec<Option<Embedding>> = results.into_iter().map(Result::ok).collect();
                if let Some(file) = &args.embeddings_cache {
                    // Minutes of embedding are worth more than the cache: say why it was
                    // not written and still give the report.
                    if let Err(why) = write_cache(file, pipeline.fingerprint(), &samples, &e) {
                        eprintln!("--embeddings-cache not written: {why:#}");
                    }
                }
                e
            }
        };
    let embed_secs = start.elapsed().as_secs_f64();
    let failed_images: Vec<String> = samples
        .iter()
        .zip(&embeddings)
        .filter(|(_, e)| e.is_none())
        .map(|(s, _)| s.name())
        .collect();

    // Closed set: enrolled + all distractors.
    let closed = gallery_index(
        &samples,
        &embeddings,
        roles.enrolled.iter().chain(&roles.distractors).copied(),
    )?;
    let closed_list: Vec<(String, &Embedding)> = roles
        .enrolled
        .iter()
        .chain(&roles.distractors)
        .filter_map(|&i| Some((samples[i].person.clone(), embeddings[i].as_ref()?)))
        .collect();
    let search_start = Instant::now();
    let (mut rank1, mut rank5, mut index_disagrees) = (0usize, 0usize, 0usize);
    for &p in &roles.mated {
        let person = &samples[p].person;
        let by_index = answer(&pipeline, &closed, &embeddings, &embeddings[p]);
        let index_right = by_index.as_ref().is_some_and(|a| &a.person == person);
        rank1 += usize::from(index_right);
        let rank = embeddings[p]
            .as_ref()
            .and_then(|e| rank_of(e, person, &closed_list));
        rank5 += usize::from(rank.is_some_and(|r| r <= 5));
        index_disagrees += usize::from(rank.is_some_and(|r| r == 1) != index_right);
    }
    let search_ms = search_start.elapsed().as_secs_f64() * 1e3 / roles.mated.len().max(1) as f64;
    let probes = roles.mated.len();

    // Open set: five splits of the distractors.
    let mut dirs = Vec::new();
    let mut thresholds = Vec::new();
    let mut dir_at_configured = Vec::new();
    let mut far_at_configured = Vec::new();
    let mut open_gallery = 0;
    for seed in SPLIT_SEEDS {
        let order = shuffled(&roles.distractors, seed);
        let (in_gallery, non_mated) = order.split_at(order.len() / 2);
        open_gallery = roles.enrolled.len() + in_gallery.len();
        let index = gallery_index(
            &samples,
            &embeddings,
            roles.enrolled.iter().chain(in_gallery).copied(),
        )?;
        let open = OpenSet {
            mated_correct: roles
                .mated
                .iter()
                .map(|&p| {
                    answer(&pipeline, &index, &embeddings, &embeddings[p])
                        .filter(|a| a.person == samples[p].person)
                        .map(|a| a.score)
                })
                .collect(),
            non_mated: non_mated
                .iter()
                .map(|&p| answer(&pipeline, &index, &embeddings, &embeddings[p]).map(|a| a.score))
                .collect(),
        };
        let (threshold, dir) = dir_at_far(&open, FALSE_ALARM_RATE);
        dirs.push(dir);
        thresholds.push(f64::from(threshold));
        let at = config.recognition.identify_threshold;
        let hits = open.mated_correct.iter().flatten().filter(|&&s| s >= at);
        dir_at_configured.push(hits.count() as f64 / probes.max(1) as f64);
        let alarms = open.non_mated.iter().flatten().filter(|&&s| s >= at);
        far_at_configured.push(alarms.count() as f64 / open.non_mated.len().max(1) as f64);
    }
    let by_size = by_gallery_size(
        &pipeline,
        &samples,
        &embeddings,
        &roles,
        config.recognition.identify_threshold,
    )?;
    let (dir, dir_std) = mean_std(&dirs);
    let (threshold, threshold_std) = mean_std(&thresholds);
    let report = json!({
        "rank1": rank1 as f64 / probes.max(1) as f64,
        "rank5": rank5 as f64 / probes.max(1) as f64,
        "dir_at_far_1pct": dir,
        "dir_std": dir_std,
        "dir_per_split": dirs,
        "threshold_at_far_1pct": threshold,
        "threshold_std": threshold_std,
        "at_identify_threshold": {
            "similarity": config.recognition.identify_threshold,
            "dir": mean_std(&dir_at_configured).0,
            "false_alarm_rate": mean_std(&far_at_configured).0,
        },
        "at_identify_threshold_by_gallery_size": by_size,
        "probes": probes,
        "gallery": roles.enrolled.len() + roles.distractors.len(),
        "open_set_gallery": open_gallery,
        "open_set_non_mated_probes": roles.distractors.len() - roles.distractors.len() / 2,
        "enrolled_people": roles.enrolled.len(),
        "distractors": roles.distractors.len(),
        "images": samples.len(),
        "images_without_face": failed_images.len(),
        "failed_images": failed_images,
        "rank1_index_vs_exhaustive_disagreements": index_disagrees,
        "split_seeds": SPLIT_SEEDS,
        "embed_images_per_second": samples.len() as f64 / embed_secs,
        "search_ms_per_probe": search_ms,
        "threads": threads,
        "embedder": config.models.embedder,
        "flip_average": config.recognition.flip_average,
        "alignment": config.recognition.alignment.name(),
        "score_normalisation": pipeline.score_normalisation_name(),
        "identify_cohort_size": config.recognition.identify_cohort_size,
        "fingerprint": pipeline.fingerprint(),
    });
    crate::cmd::print_report(&report, args.json)
}

/// Gallery sizes (users) of the sweep: a door's few people to a building's thousand.
pub const GALLERY_SIZES: [usize; 7] = [1, 10, 11, 30, 100, 300, 1000];

/// What the configured identify threshold does as a gallery grows: per size (up to the
/// number of enrolled people), mean over the split seeds of galleries of that many
/// enrolled people (their first images), probed by their other images and by every
/// distractor as a stranger. A fixed threshold's false alarms grow with the gallery;
/// this is what `identify_score_normalisation` must hold down.
fn by_gallery_size(
    pipeline: &Pipeline,
    samples: &[Sample],
    embeddings: &[Option<Embedding>],
    roles: &Protocol,
    at: f32,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for users in GALLERY_SIZES
        .into_iter()
        .filter(|&n| n <= roles.enrolled.len())
    {
        let (mut dirs, mut alarms) = (Vec::new(), Vec::new());
        for seed in SPLIT_SEEDS {
            let chosen: Vec<usize> = shuffled(&roles.enrolled, seed)[..users].to_vec();
            let people: std::collections::HashSet<&str> =
                chosen.iter().map(|&i| samples[i].person.as_str()).collect();
            let index = gallery_index(samples, embeddings, chosen.iter().copied())?;
            let mated: Vec<usize> = roles
                .mated
                .iter()
                .copied()
                .filter(|&p| people.contains(samples[p].person.as_str()))
                .collect();
            let found = mated
                .iter()
                .filter(|&&p| {
                    answer(pipeline, &index, embeddings, &embeddings[p])
                        .is_some_and(|a| a.person == samples[p].person && a.score >= at)
                })
                .count();
            let let_in = roles
                .distractors
                .iter()
                .filter(|&&p| {
                    answer(pipeline, &index, embeddings, &embeddings[p])
                        .is_some_and(|a| a.score >= at)
                })
                .count();
            dirs.push(found as f64 / mated.len().max(1) as f64);
            alarms.push(let_in as f64 / roles.distractors.len().max(1) as f64);
        }
        out.push(json!({
            "users": users,
            "dir": mean_std(&dirs).0,
            "false_alarm_rate": mean_std(&alarms).0,
        }));
    }
    Ok(out)
}

/// The cache file: a JSON object {fingerprint, files, embeddings}.
fn read_cache(
    file: &Path,
    fingerprint: &str,
    samples: &[Sample],
) -> Option<Vec<Option<Embedding>>> {
    let text = std::fs::read_to_string(file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let files: Vec<String> = samples
        .iter()
        .map(|s| s.file.display().to_string())
        .collect();
    if v["fingerprint"].as_str() != Some(fingerprint) || v["files"] != json!(files) {
        return None;
    }
    let rows: Vec<Option<Vec<f32>>> = serde_json::from_value(v["embeddings"].clone()).ok()?;
    (rows.len() == samples.len()).then(|| rows.into_iter().map(|r| r.map(Embedding)).collect())
}

fn write_cache(
    file: &Path,
    fingerprint: &str,
    samples: &[Sample],
    embeddings: &[Option<Embedding>],
) -> anyhow::Result<()> {
    let files: Vec<String> = samples
        .iter()
        .map(|s| s.file.display().to_string())
        .collect();
    let rows: Vec<Option<&[f32]>> = embeddings
        .iter()
        .map(|e| e.as_ref().map(|e| e.as_slice()))
        .collect();
    let body = json!({"fingerprint": fingerprint, "files": files, "embeddings": rows});
    std::fs::write(file, body.to_string()).with_context(|| file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(person: &str, n: u32) -> Sample {
        Sample {
            person: person.into(),
            file: PathBuf::from(format!("{person}/{person}_{n:04}.jpg")),
        }
    }

    #[test]
    fn a_folder_lists_pictures_whatever_the_case_of_their_extension() {
        let dir = tempfile::tempdir().unwrap();
        let amy = dir.path().join("Amy");
        std::fs::create_dir(&amy).unwrap();
        for f in ["Amy_0001.JPG", "Amy_0002.jpeg", "Amy_0003.Png", "notes.txt"] {
            std::fs::write(amy.join(f), b"").unwrap();
        }
        let names: Vec<String> = list_folder(dir.path())
            .unwrap()
            .iter()
            .map(Sample::name)
            .collect();
        assert_eq!(
            names,
            ["Amy/Amy_0001.JPG", "Amy/Amy_0002.jpeg", "Amy/Amy_0003.Png"]
        );
    }

    #[test]
    fn people_with_one_image_are_distractors_and_the_first_image_enrolls() {
        let samples = vec![
            sample("Ann", 1),
            sample("Ann", 2),
            sample("Ann", 3),
            sample("Bob", 1),
            sample("Cid", 1),
            sample("Cid", 2),
        ];
        let p = protocol(&samples);
        assert_eq!(p.enrolled, vec![0, 4]);
        assert_eq!(p.mated, vec![1, 2, 5]);
        assert_eq!(p.distractors, vec![3]);
    }

    #[test]
    fn splits_are_fixed_by_their_seed_and_differ_between_seeds() {
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(shuffled(&items, 3), shuffled(&items, 3));
        assert_ne!(shuffled(&items, 3), shuffled(&items, 4));
        let mut s = shuffled(&items, 3);
        s.sort();
        assert_eq!(s, items);
    }

    #[test]
    fn the_threshold_lets_through_at_most_one_percent_of_non_mated_probes() {
        // 200 non-mated probes scoring 0..1; the top 2 may pass, the third may not.
        let non_mated: Vec<Option<f32>> = (0..200).map(|i| Some(i as f32 / 200.0)).collect();
        let open = OpenSet {
            mated_correct: vec![Some(0.994), Some(0.999), None, Some(0.5)],
            non_mated,
        };
        let (t, dir) = dir_at_far(&open, 0.01);
        let alarms = open.non_mated.iter().flatten().filter(|&&s| s >= t).count();
        assert_eq!(alarms, 2);
        assert!(t > 0.985 && t <= 0.99, "threshold {t}");
        // 0.994 and 0.999 pass; the missed probe and the low one do not.
        assert_eq!(dir, 0.5);
    }

    #[test]
    fn a_tie_at_the_threshold_is_not_let_through() {
        let open = OpenSet {
            mated_correct: vec![Some(0.9)],
            non_mated: vec![Some(0.9); 100],
        };
        let (_, dir) = dir_at_far(&open, 0.01);
        assert_eq!(dir, 0.0);
    }
}
