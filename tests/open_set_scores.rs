//! Open-set score normalisation (`recognition.identify_score_normalisation`) on real
//! photos with the real models: strangers against a gallery vs known people.

use std::path::Path;

use facegate::runtime::Runtime;
use facegate::vision::{Embedding, FaceSelection, Pipeline, PipelineOptions, ScoreNormalisation};

const PEOPLE: [&str; 8] = [
    "amy",
    "bernadette",
    "howard",
    "leonard",
    "penny",
    "raj",
    "sheldon",
    "stuart",
];

fn pipeline(score_normalisation: ScoreNormalisation) -> Pipeline {
    let runtime =
        Runtime::locate_and_load(None).expect("LiteRT library (run cross/fetch-litert.sh)");
    let options = PipelineOptions {
        models_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("models-tflite"),
        score_normalisation,
        ..PipelineOptions::default()
    };
    Pipeline::load(&runtime, options).expect("models load")
}

fn embedding(p: &Pipeline, file: &str) -> Embedding {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    p.analyze_bytes(&bytes, FaceSelection::Largest)
        .expect("analyse")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no face in {file}"))
        .embedding
}

/// The identify score of `probe`'s best match in `gallery` (one template per person),
/// ranked as the index ranks: best cosine first.
fn best_score(p: &Pipeline, probe: &Embedding, gallery: &[&Embedding]) -> f32 {
    let mut ranked: Vec<f32> = gallery.iter().map(|g| probe.cosine(g)).collect();
    ranked.sort_by(|a, b| b.total_cmp(a));
    ranked.truncate(p.identify_candidates(1));
    p.identify_scores(&ranked, gallery.len())[0]
}

/// Leave-one-out over eight people: each person in turn is a stranger (first photo)
/// against a gallery of the seven others (first photos), whose second photos are the
/// known probes. Counts the (known, stranger) pairs in which the known person scores
/// higher, with and without normalisation.
#[test]
fn strangers_fall_below_known_people_at_least_as_often_with_the_gallery_cohort() {
    let plain = pipeline(ScoreNormalisation::None);
    let cohort = pipeline(ScoreNormalisation::GalleryCohort { cohort: 4 });
    let first: Vec<Embedding> = PEOPLE
        .iter()
        .map(|n| embedding(&plain, &format!("{n}1.png")))
        .collect();
    let second: Vec<Embedding> = PEOPLE
        .iter()
        .map(|n| embedding(&plain, &format!("{n}2.png")))
        .collect();
    let mut ordered = [0usize; 2];
    let mut pairs = 0;
    for stranger in 0..PEOPLE.len() {
        let gallery: Vec<&Embedding> = (0..PEOPLE.len())
            .filter(|&i| i != stranger)
            .map(|i| &first[i])
            .collect();
        for (k, p) in [&plain, &cohort].into_iter().enumerate() {
            let s = best_score(p, &first[stranger], &gallery);
            for known in (0..PEOPLE.len()).filter(|&i| i != stranger) {
                ordered[k] += usize::from(best_score(p, &second[known], &gallery) > s);
            }
        }
        pairs += PEOPLE.len() - 1;
    }
    eprintln!(
        "known above stranger: plain {} / {pairs}, cohort {} / {pairs}",
        ordered[0], ordered[1]
    );
    assert!(
        ordered[1] >= ordered[0],
        "cohort {} < plain {} of {pairs}",
        ordered[1],
        ordered[0]
    );
}

#[test]
fn a_gallery_smaller_than_the_cohort_scores_like_gallery_size() {
    let plain = pipeline(ScoreNormalisation::None);
    let cohort = pipeline(ScoreNormalisation::GalleryCohort { cohort: 20 });
    let sized = pipeline(ScoreNormalisation::GallerySize);
    let probe = embedding(&plain, "amy2.png");
    let gallery = [embedding(&plain, "amy1.png"), embedding(&plain, "raj1.png")];
    let gallery: Vec<&Embedding> = gallery.iter().collect();
    let s = best_score(&cohort, &probe, &gallery);
    assert_eq!(s, best_score(&sized, &probe, &gallery));
    assert!(s < best_score(&plain, &probe, &gallery));
    assert!(s >= 0.75, "amy is recognised: {s}");
}

/// The door of a few people (leave-one-out over eight, a cohort of four so that the
/// seven-user gallery has one): its runners-up are random people far below any best
/// match, which is where the lead alone let strangers in. No normalisation may accept a
/// stranger that plain similarity refuses, and every known person is still found.
#[test]
fn at_a_small_door_no_normalisation_lets_in_a_stranger_that_plain_similarity_refuses() {
    let plain = pipeline(ScoreNormalisation::None);
    let normalised = [
        pipeline(ScoreNormalisation::GalleryCohort { cohort: 4 }),
        pipeline(ScoreNormalisation::GallerySize),
    ];
    let first: Vec<Embedding> = PEOPLE
        .iter()
        .map(|n| embedding(&plain, &format!("{n}1.png")))
        .collect();
    for stranger in 0..PEOPLE.len() {
        let gallery: Vec<&Embedding> = (0..PEOPLE.len())
            .filter(|&i| i != stranger)
            .map(|i| &first[i])
            .collect();
        let plain_score = best_score(&plain, &first[stranger], &gallery);
        for p in &normalised {
            let s = best_score(p, &first[stranger], &gallery);
            assert!(
                s <= plain_score,
                "{}: {} scores {s} against plain {plain_score}",
                p.score_normalisation_name(),
                PEOPLE[stranger]
            );
            for known in (0..PEOPLE.len()).filter(|&i| i != stranger) {
                let probe = embedding(&plain, &format!("{}2.png", PEOPLE[known]));
                let ranked_first = gallery
                    .iter()
                    .map(|g| probe.cosine(g))
                    .fold(f32::MIN, f32::max);
                assert_eq!(
                    ranked_first,
                    probe.cosine(&first[known]),
                    "{}",
                    PEOPLE[known]
                );
                assert!(
                    best_score(p, &probe, &gallery) >= 0.75,
                    "{}: {} is not found",
                    p.score_normalisation_name(),
                    PEOPLE[known]
                );
            }
        }
    }
}
