//! An operator switches a door from the shipped embedder to one that cuts another chip
//! (here the shipped network described with ArcFace's template, so both sides are real
//! models on real photos): the templates enrolled before must come over by
//! `facegate reembed` and by sync from devices still on the shipped model, each chip
//! cut from the stored crop by the face points recorded with it, not enrolled again.
//! Real LMDB store in a temp folder, the real LiteRT runtime.

use std::path::Path;

use base64::Engine;
use std::sync::Arc;

use facegate::gallery::{
    central_ops, wire_template, Applied, CentralUser, EnrollRequest, Gallery, OpKind, Settings,
};
use facegate::store::Store;
use facegate::vision::{Embedding, FaceSelection, Pipeline};

#[path = "common/real_models.rs"]
mod real_models;
use real_models::{
    arcface_template_models, fixture, load_models_in, models_dir, SHIPPED_EMBEDDER as SHIPPED,
};

const CLIENT: &str = "kiosk";
const GALLERY: &str = "door";

/// Enrolled, then probed.
const PEOPLE: [(&str, &str, &str); 2] = [
    ("amy", "amy1.png", "amy2.png"),
    ("sheldon", "sheldon1.png", "sheldon3.png"),
];

/// The shipped network with ArcFace's template (its models folder, kept alive).
fn arcface_template_pipeline() -> (tempfile::TempDir, Pipeline) {
    let dir = arcface_template_models();
    let pipeline = load_models_in(dir.path(), SHIPPED, None).unwrap();
    (dir, pipeline)
}

fn shipped() -> Pipeline {
    load_models_in(&models_dir(), SHIPPED, None).unwrap()
}

fn settings() -> Settings {
    let env = std::collections::HashMap::<String, String>::new();
    let config = facegate::config::merge(None, "-", &env).unwrap();
    Settings {
        keep_crops: true,
        outbox: None,
        ..Settings::from_config(&config)
    }
}

fn open(dir: &Path, pipeline: Arc<Pipeline>) -> Gallery {
    let store = Arc::new(Store::open(dir, 4).unwrap());
    Gallery::open(store, pipeline, settings()).unwrap()
}

fn embedding(pipeline: &Pipeline, photo: &str) -> Embedding {
    pipeline
        .analyze_bytes(&fixture(photo), FaceSelection::Largest)
        .unwrap()
        .remove(0)
        .embedding
}

/// Who the nearest template belongs to, and its cosine.
fn nearest(g: &Gallery, pipeline: &Pipeline, photo: &str) -> (String, f32) {
    let m = g
        .search_index(CLIENT, GALLERY, &embedding(pipeline, photo).0, 1)
        .unwrap()
        .remove(0);
    (m.user_id.to_string(), m.cosine)
}

/// Every stored template of `user`: its embedding and recorded crop points.
fn stored(g: &Gallery, user: &str) -> Vec<(Embedding, Option<[[f32; 2]; 3]>)> {
    g.read_store(|r| r.templates_of(CLIENT, GALLERY, user))
        .unwrap()
        .into_iter()
        .map(|(_, t)| (Embedding::from_raw(&t.embedding).unwrap(), t.crop_points))
        .collect()
}

#[test]
fn reembed_after_a_switch_to_another_crop_cuts_the_new_chip_from_the_stored_crop() {
    let dir = tempfile::tempdir().unwrap();
    let old = Arc::new(shipped());
    let g = open(dir.path(), old.clone());
    g.accounts().add_client(CLIENT, None).unwrap();
    g.create_gallery(CLIENT, GALLERY).unwrap();
    let mut enrolled_points = Vec::new();
    for (user, photo, _) in PEOPLE {
        g.enroll(
            CLIENT,
            &EnrollRequest {
                gallery: GALLERY,
                user_id: user,
                user_name: user,
                image: &fixture(photo),
                force: true,
            },
        )
        .unwrap();
        let (enrolled, points) = stored(&g, user).remove(0);
        let points = points.expect("enrollment records where its crop shows the face");
        // The chip with a margin on each side: the face sits further in by whole
        // pixels, and the shipped model re-embeds it as it enrolled it.
        let chip = old.crop_points().pixels();
        let margin = [points[0][0] - chip[0][0], points[0][1] - chip[0][1]];
        assert!(
            margin.iter().all(|m| *m >= 30.0 && m.fract() == 0.0),
            "{margin:?}"
        );
        let crop = g
            .read_store(|r| r.templates_of(CLIENT, GALLERY, user))
            .unwrap()
            .remove(0)
            .1
            .crop_jpeg
            .unwrap();
        let crop = facegate::gallery::decode_crop(&crop).unwrap();
        assert!(crop.width() >= 150 + 60 && crop.height() >= 150 + 60);
        let points = facegate::vision::CropPoints::checked(points).unwrap();
        let (again, _) = old.embed_stored_crop(&crop, Some(&points)).unwrap();
        assert!(
            again.cosine(&enrolled) > 0.995,
            "{user}: {}",
            again.cosine(&enrolled)
        );
        enrolled_points.push(points.pixels());
    }
    drop(g);

    let (_models, new) = arcface_template_pipeline();
    let new = Arc::new(new);
    assert_ne!(new.fingerprint(), old.fingerprint());
    let g = open(dir.path(), new.clone());
    assert_eq!(g.indexed_templates(), 0, "the old space is not searched");
    let report = g.reembed(false).unwrap();
    assert_eq!(report.updated, PEOPLE.len());

    for ((user, enrolled, probe), points) in PEOPLE.into_iter().zip(enrolled_points) {
        let (found, cosine) = nearest(&g, &new, probe);
        assert_eq!(found, user, "{probe}: {cosine}");
        let template = &stored(&g, user)[0];
        // Read with the points it was stored with, which stay recorded.
        assert_eq!(template.1, Some(points));
        // As the new model enrolling the photo would have it, up to the crop's JPEG
        // and what ArcFace's chip shows above dlib's (black: the crop ends there).
        let direct = embedding(&new, enrolled);
        let recut = template.0.cosine(&direct);
        // What re-embedding gave before points were recorded: the crop fed as the new
        // model's chip, the same size, so nothing noticed.
        let crop = old
            .analyze_bytes(&fixture(enrolled), FaceSelection::Largest)
            .unwrap()
            .remove(0)
            .aligned;
        let (as_is, _) = new
            .embed_stored_crop(&crop, Some(&new.crop_points()))
            .unwrap();
        let as_is = as_is.cosine(&direct);
        eprintln!("{user}: recut {recut}, crop as it is {as_is}");
        assert!(recut > 0.99, "{user}: {recut}");
        assert!(recut > as_is + 0.02, "{user}: {recut} against {as_is}");
    }

    // Forced again under the new model: the same embeddings (the recorded points, not
    // the new model's layout, tell how the crop was cut).
    let before: Vec<_> = PEOPLE
        .iter()
        .map(|(u, ..)| stored(&g, u)[0].0.clone())
        .collect();
    assert_eq!(g.reembed(true).unwrap().updated, PEOPLE.len());
    for ((user, ..), was) in PEOPLE.iter().zip(before) {
        assert!(stored(&g, user)[0].0.cosine(&was) > 0.9999, "{user}");
    }
}

#[test]
fn a_replica_on_another_crop_takes_a_shipped_devices_template_by_its_face_points() {
    // What a device still on the shipped model publishes (`facegate push --photos`
    // builds the same templates), applied by a door that switched.
    let old = shipped();
    let users: Vec<CentralUser> = PEOPLE
        .iter()
        .map(|(user, photo, _)| {
            let face = old
                .analyze_bytes_to_store(&fixture(photo), FaceSelection::Largest)
                .unwrap()
                .remove(0);
            CentralUser {
                user_id: user.to_string(),
                user_name: user.to_string(),
                templates: vec![wire_template(&face, old.crop_points()).unwrap()],
            }
        })
        .collect();
    let ops = central_ops(CLIENT, GALLERY, "central", old.fingerprint(), users);

    let dir = tempfile::tempdir().unwrap();
    let (_models, new) = arcface_template_pipeline();
    let new = Arc::new(new);
    let g = open(dir.path(), new.clone());
    g.accounts().add_client(CLIENT, None).unwrap();
    for op in &ops {
        assert_eq!(g.apply_op(op).unwrap(), Applied::Applied, "{op:?}");
    }
    for (user, enrolled, probe) in PEOPLE {
        assert_eq!(nearest(&g, &new, probe).0, user);
        let template = &stored(&g, user)[0];
        // Stored with the points it came with.
        let sent = ops.iter().find_map(|op| match &op.kind {
            OpKind::UpsertUser {
                user_id, templates, ..
            } if user_id == user => templates[0].crop_points,
            _ => None,
        });
        assert!(sent.is_some());
        assert_eq!(template.1, sent);
        let cosine = template.0.cosine(&embedding(&new, enrolled));
        assert!(cosine > 0.99, "{user}: {cosine}");
    }
}

#[test]
fn a_replica_refuses_a_template_whose_crop_or_points_cannot_be_used() {
    // A broken or hostile sender: face points with the eyes a pixel apart, and a crop
    // whose JPEG header declares 4000 px (a few KB that would decode to 48 MB). Each
    // is refused for good (reported back), nothing is stored, the daemon goes on.
    let old = shipped();
    let face = old
        .analyze_bytes_to_store(&fixture("amy1.png"), FaceSelection::Largest)
        .unwrap()
        .remove(0);
    let template = wire_template(&face, old.crop_points()).unwrap();
    let mut close_eyes = template.clone();
    close_eyes.crop_points = Some([[80.0, 80.0], [81.0, 80.0], [80.5, 140.0]]);
    let mut huge = template.clone();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&image::RgbImage::new(4000, 8))
        .unwrap();
    huge.crop = Some(base64::engine::general_purpose::STANDARD.encode(&jpeg));
    huge.crop_points = None;

    let dir = tempfile::tempdir().unwrap();
    let (_models, new) = arcface_template_pipeline();
    let g = open(dir.path(), Arc::new(new));
    g.accounts().add_client(CLIENT, None).unwrap();
    for (user, t) in [("eyes", close_eyes), ("huge", huge), ("amy", template)] {
        let users = vec![CentralUser {
            user_id: user.into(),
            user_name: user.into(),
            templates: vec![t],
        }];
        let ops = central_ops(CLIENT, GALLERY, "central", old.fingerprint(), users);
        let applied: Vec<Applied> = ops.iter().map(|op| g.apply_op(op).unwrap()).collect();
        let refused = applied.iter().any(|a| matches!(a, Applied::Refused(_)));
        assert_eq!(refused, user != "amy", "{user}: {applied:?}");
        assert_eq!(stored(&g, user).is_empty(), user != "amy", "{user}");
    }
}
