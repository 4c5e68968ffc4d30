//! `facegate reembed`: recompute every template's embedding from its stored aligned
//! crop with the current model, so a model change needs no re-enrollment.
//!
//! It writes through the one write path (commit.rs): each batch's new embeddings and
//! the index edits they imply commit together, so the running gallery's index finds
//! the new templates as soon as the batch commits. A template deleted or changed after
//! it was read is left alone (counted in [`ReembedReport::changed_meanwhile`]).
//!
//! It publishes nothing to the sync outbox and bumps no version: the user's data (name,
//! faces) did not change, only this device's representation of it, and operations
//! carry their model's fingerprint, so a receiver re-embeds them from their crops
//! (replica.rs). A published upsert would claim a newer version than a central edit
//! still in flight and so overwrite it fleet-wide.

use super::{crop, Error, Gallery};
use crate::store::{TemplateRecord, TemplateRow};
use crate::vision;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReembedReport {
    /// Templates re-embedded.
    pub updated: usize,
    /// Already in the current embedding space (skipped unless `force`).
    pub current: usize,
    /// Without a stored crop: cannot be re-embedded.
    pub without_crop: usize,
    /// With a stored crop this model cannot read (an undecodable JPEG, unusable face
    /// points, or a crop of another size stored before points were recorded): left as
    /// they are, each logged; enroll those faces again from photos.
    pub unusable_crop: usize,
    /// Of `updated`, cut from a crop of another layout (`vision::Pipeline::
    /// embed_stored_crop`): what the crop did not show is black in the new chip.
    pub from_other_layout: usize,
    /// Deleted or replaced between reading and writing them: left as they are.
    pub changed_meanwhile: usize,
}

const BATCH: usize = 500;

impl Gallery {
    /// Re-embeds stored templates (`facegate reembed` runs it with the daemon stopped,
    /// refused while `facegate serve` holds the data folder). `force` also re-embeds
    /// templates already in the current space.
    pub fn reembed(&self, force: bool) -> Result<ReembedReport, Error> {
        self.reembed_with_progress(force, &|_, _| {})
    }

    /// [`Gallery::reembed`], calling `progress(done, total)` after each template read
    /// (`facegate reembed`'s progress bar).
    pub fn reembed_with_progress(
        &self,
        force: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<ReembedReport, Error> {
        let fingerprint = self.pipeline.fingerprint().to_string();
        let mut rows: Vec<TemplateRow> = Vec::new();
        let mut report = ReembedReport::default();
        self.store.read(|r| {
            r.for_each_template(|row| {
                if row.record.fingerprint == fingerprint && !force {
                    report.current += 1;
                } else if row.record.crop_jpeg.is_none() {
                    report.without_crop += 1;
                } else {
                    rows.push(row);
                }
                Ok(())
            })
        })?;
        let mut done = 0;
        for batch in rows.chunks(BATCH) {
            let mut updated = Vec::with_capacity(batch.len());
            for row in batch {
                done += 1;
                progress(done, rows.len());
                let Some(jpeg) = &row.record.crop_jpeg else {
                    continue;
                };
                let (embedding, points) = match self.embed_stored(&row.record, jpeg) {
                    Ok(done) => done,
                    Err(
                        why @ (Error::Crop(_)
                        | Error::Vision(
                            vision::Error::StoredChipLayout { .. } | vision::Error::StoredCrop(_),
                        )),
                    ) => {
                        tracing::warn!(
                            client = %row.client,
                            gallery = %row.gallery,
                            user_id = %row.user_id,
                            template = row.id,
                            "template left as it is: {why}"
                        );
                        report.unusable_crop += 1;
                        continue;
                    }
                    Err(other) => return Err(other),
                };
                if !points.same_layout(&self.pipeline.crop_points()) {
                    report.from_other_layout += 1;
                }
                updated.push((
                    row,
                    TemplateRecord {
                        fingerprint: fingerprint.clone(),
                        embedding: embedding.0.to_vec(),
                        // Recorded now: under the new fingerprint, a crop without
                        // points would read as this model's chip.
                        crop_points: Some(points.pixels()),
                        ..row.record.clone()
                    },
                ));
            }
            let written = self.writes.commit(|tx| {
                let mut written = 0;
                for (row, record) in &updated {
                    let (c, g, u) = (&row.client, &row.gallery, &row.user_id);
                    let stored = tx.reader().template_embedding(c, g, u, row.id)?;
                    let unchanged = stored.is_some_and(|t| {
                        t.fingerprint == row.record.fingerprint
                            && t.embedding == row.record.embedding
                    });
                    if !unchanged {
                        continue;
                    }
                    tx.put_template(c, g, u, row.id, record)?;
                    tx.index_remove_template(c, g, row.id);
                    tx.index_insert(c, g, u, row.id, &record.embedding);
                    written += 1;
                }
                Ok(written)
            })?;
            report.updated += written;
            report.changed_meanwhile += updated.len() - written;
        }
        Ok(report)
    }

    /// A stored template's crop embedded with this model, and the face points it was
    /// read with.
    fn embed_stored(
        &self,
        record: &TemplateRecord,
        jpeg: &[u8],
    ) -> Result<(crate::vision::Embedding, vision::CropPoints), Error> {
        let stored = crop::decode(jpeg)?;
        let recorded =
            crop::points_to_read(&self.pipeline, &record.fingerprint, record.crop_points)
                .map_err(Error::Vision)?;
        self.pipeline
            .embed_stored_crop(&stored, recorded.as_ref())
            .map_err(Error::Vision)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};

    use super::*;
    use crate::gallery::{EnrollRequest, OutboxSettings, Settings};
    use crate::runtime::Runtime;
    use crate::store::Store;
    use crate::vision::Pipeline;

    fn pipeline() -> Arc<Pipeline> {
        static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
        PIPELINE.get_or_init(|| pipeline_with_padding(None)).clone()
    }

    /// The default pipeline, or with another dlib chip padding: another crop layout.
    fn pipeline_with_padding(padding: Option<f32>) -> Arc<Pipeline> {
        let config = crate::config::merge(None, "-", &HashMap::<String, String>::new())
            .expect("default config");
        let runtime = Runtime::locate_and_load(config.runtime_library()).expect("LiteRT");
        let mut options = config.pipeline_options();
        if let Some(p) = padding {
            options.chip_padding = p;
        }
        Arc::new(Pipeline::load(&runtime, options).expect("models"))
    }

    fn photo(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/vision/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Sync on (an outbox), default thresholds, crops kept.
    fn open(dir: &std::path::Path) -> Gallery {
        open_with(dir, pipeline())
    }

    fn open_with(dir: &std::path::Path, pipeline: Arc<Pipeline>) -> Gallery {
        let config = crate::config::merge(None, "-", &HashMap::<String, String>::new()).unwrap();
        let settings = Settings {
            outbox: Some(OutboxSettings {
                origin: "door-1".into(),
                limit: 1000,
            }),
            ..Settings::from_config(&config)
        };
        let store = Arc::new(Store::open(dir, 4).unwrap());
        Gallery::open(store, pipeline, settings).unwrap()
    }

    fn enroll(g: &Gallery, user_id: &str, picture: &str) {
        g.enroll(
            "kiosk",
            &EnrollRequest {
                gallery: "door",
                user_id,
                user_name: user_id,
                image: &photo(picture),
                force: true,
            },
        )
        .unwrap();
    }

    /// A gallery on the store at `dir` with the client `kiosk`, the gallery `door` and
    /// `people` (user id, photo) enrolled.
    fn door(dir: &std::path::Path, people: &[(&str, &str)]) -> Gallery {
        let g = open(dir);
        g.accounts().add_client("kiosk", None).unwrap();
        g.create_gallery("kiosk", "door").unwrap();
        for (user, picture) in people {
            enroll(&g, user, picture);
        }
        g
    }

    /// `user`'s first stored template.
    fn template(g: &Gallery, user: &str) -> TemplateRecord {
        g.read_store(|r| r.templates_of("kiosk", "door", user))
            .unwrap()
            .remove(0)
            .1
    }

    /// Replaces `user`'s first template by what `change` makes of it, out of the index,
    /// as an older model or store left it.
    fn rewrite(g: &Gallery, user: &str, change: impl FnOnce(TemplateRecord) -> TemplateRecord) {
        let (id, t) = g
            .read_store(|r| r.templates_of("kiosk", "door", user))
            .unwrap()
            .remove(0);
        let old = change(t);
        g.writes
            .commit(|tx| {
                tx.put_template("kiosk", "door", user, id, &old)?;
                tx.index_remove_template("kiosk", "door", id);
                Ok(())
            })
            .unwrap();
    }

    fn identify(g: &Gallery, picture: &str) -> Option<String> {
        g.identify("kiosk", "door", &photo(picture))
            .unwrap()
            .map(|m| m.user_id)
    }

    #[test]
    fn reembedded_templates_are_what_identify_finds_in_the_running_gallery() {
        let dir = tempfile::tempdir().unwrap();
        let g = door(
            dir.path(),
            &[("amy", "amy1.png"), ("sheldon", "sheldon1.png")],
        );
        assert_eq!(identify(&g, "amy2.png").as_deref(), Some("amy"));
        // Amy's template as an older model left it: another fingerprint, and a vector
        // of that old space (here: Sheldon's, the hard case: it points at someone else).
        let sheldon = template(&g, "sheldon");
        let (amy_id, amy) = g
            .read_store(|r| r.templates_of("kiosk", "door", "amy"))
            .unwrap()
            .remove(0);
        rewrite(&g, "amy", |t| TemplateRecord {
            fingerprint: "old-model".into(),
            embedding: sheldon.embedding.clone(),
            ..t
        });
        drop(g);
        // Reopened, as after a model change: the old template is not searchable.
        let g = open(dir.path());
        assert_eq!(g.indexed_templates(), 1);
        assert_ne!(identify(&g, "amy2.png").as_deref(), Some("amy"));
        let outbox = g.outbox_len().unwrap();

        let report = g.reembed(false).unwrap();
        assert_eq!(
            report,
            ReembedReport {
                updated: 1,
                current: 1,
                without_crop: 0,
                changed_meanwhile: 0,
                ..ReembedReport::default()
            }
        );
        // Same gallery, not reopened: the commit put the new template in the index.
        assert_eq!(g.indexed_templates(), 2);
        assert_eq!(identify(&g, "amy2.png").as_deref(), Some("amy"));
        assert_eq!(identify(&g, "sheldon3.png").as_deref(), Some("sheldon"));
        let stored = g
            .read_store(|r| r.templates_of("kiosk", "door", "amy"))
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0, amy_id, "re-embedding keeps the template id");
        assert_eq!(stored[0].1.fingerprint, pipeline().fingerprint());
        let cosine = crate::index::dot_f32(
            &crate::index::normalized(&stored[0].1.embedding).unwrap(),
            &crate::index::normalized(&amy.embedding).unwrap(),
        );
        // The crop is a JPEG of the aligned face: the same vector up to its loss.
        assert!(
            cosine > 0.99,
            "the crop gives back the enrolled embedding ({cosine})"
        );
        assert_eq!(
            g.outbox_len().unwrap(),
            outbox,
            "reembed publishes nothing (module docs)"
        );
        // What the index finds after a restart is the same.
        drop(g);
        let g = open(dir.path());
        assert_eq!(g.indexed_templates(), 2);
        assert_eq!(identify(&g, "amy2.png").as_deref(), Some("amy"));
    }

    #[test]
    fn a_crop_stored_before_points_were_recorded_keeps_its_reading_across_reembeds() {
        // A store from before crop points: amy's crop is the shipped 150x150 dlib chip
        // and records nothing. The door moves to another crop layout (dlib padding
        // 0.35) and re-embeds, then re-embeds again with --force. Had the first run
        // not recorded how it read the crop, the second would take it for the new
        // model's own chip (the template now has the new fingerprint).
        let dir = tempfile::tempdir().unwrap();
        let g = door(dir.path(), &[("amy", "amy1.png")]);
        // What enrollment stored then: the bare chip.
        let chip = pipeline()
            .analyze_bytes(&photo("amy1.png"), crate::vision::FaceSelection::Largest)
            .unwrap()
            .remove(0)
            .aligned;
        rewrite(&g, "amy", |t| TemplateRecord {
            fingerprint: "old-model".into(),
            crop_jpeg: Some(crop::encode(&chip).unwrap()),
            crop_points: None,
            ..t
        });
        drop(g);

        let wider = pipeline_with_padding(Some(0.35));
        assert_ne!(wider.crop_points(), pipeline().crop_points());
        let g = open_with(dir.path(), wider.clone());
        assert_eq!(g.reembed(false).unwrap().updated, 1);
        let first = template(&g, "amy");
        assert_eq!(first.crop_points, Some(pipeline().crop_points().pixels()));
        let direct = wider
            .analyze_bytes(&photo("amy1.png"), crate::vision::FaceSelection::Largest)
            .unwrap()
            .remove(0)
            .embedding;
        let cosine = |a: &[f32], b: &[f32]| {
            crate::index::dot_f32(
                &crate::index::normalized(a).unwrap(),
                &crate::index::normalized(b).unwrap(),
            )
        };
        assert!(cosine(&first.embedding, &direct.0) > 0.99);
        assert_eq!(g.reembed(true).unwrap().updated, 1);
        let second = template(&g, "amy");
        assert_eq!(second.crop_points, first.crop_points);
        assert!(cosine(&second.embedding, &first.embedding) > 0.9999);
    }

    #[test]
    fn a_crop_this_model_cannot_read_is_left_and_counted_while_the_rest_move_on() {
        // One template of an old store whose crop is of an unknown layout (112x112,
        // no points), one whose JPEG is damaged, one good: the run does not stop at
        // the first, and says what it left.
        let dir = tempfile::tempdir().unwrap();
        let people = [
            ("amy", "amy1.png"),
            ("sheldon", "sheldon1.png"),
            ("penny", "penny1.png"),
        ];
        let g = door(dir.path(), &people);
        let unknown = crop::encode(&image::RgbImage::new(112, 112)).unwrap();
        for (user, crop_jpeg) in [("amy", unknown), ("sheldon", vec![0xFF, 0xD8, 0, 1])] {
            rewrite(&g, user, |t| TemplateRecord {
                fingerprint: "old-model".into(),
                crop_jpeg: Some(crop_jpeg),
                crop_points: None,
                ..t
            });
        }
        let report = g.reembed(true).unwrap();
        assert_eq!(
            (
                report.updated,
                report.unusable_crop,
                report.from_other_layout
            ),
            (1, 2, 0),
            "{report:?}"
        );
        assert_eq!(
            template(&g, "amy").fingerprint,
            "old-model",
            "left as it was"
        );
    }
}
