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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReembedReport {
    /// Templates re-embedded.
    pub updated: usize,
    /// Already in the current embedding space (skipped unless `force`).
    pub current: usize,
    /// Without a stored crop: cannot be re-embedded.
    pub without_crop: usize,
    /// Deleted or replaced between reading and writing them: left as they are.
    pub changed_meanwhile: usize,
}

const BATCH: usize = 500;

impl Gallery {
    /// Re-embeds stored templates (`facegate reembed` runs it with the daemon stopped,
    /// refused while `facegate serve` holds the data folder). `force` also re-embeds
    /// templates already in the current space.
    pub fn reembed(&self, force: bool) -> Result<ReembedReport, Error> {
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
        for batch in rows.chunks(BATCH) {
            let mut updated = Vec::with_capacity(batch.len());
            for row in batch {
                let Some(jpeg) = &row.record.crop_jpeg else {
                    continue;
                };
                let chip = crop::decode(jpeg)?;
                let embedding = self.pipeline.embed_chip(&chip).map_err(Error::Vision)?;
                updated.push((
                    row,
                    TemplateRecord {
                        fingerprint: fingerprint.clone(),
                        embedding: embedding.0.to_vec(),
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
        PIPELINE
            .get_or_init(|| {
                let config = crate::config::merge(None, "-", &HashMap::<String, String>::new())
                    .expect("default config");
                let runtime = Runtime::locate_and_load(config.runtime_library()).expect("LiteRT");
                Arc::new(Pipeline::load(&runtime, config.pipeline_options()).expect("models"))
            })
            .clone()
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
        let config = crate::config::merge(None, "-", &HashMap::<String, String>::new()).unwrap();
        let settings = Settings {
            outbox: Some(OutboxSettings {
                origin: "door-1".into(),
                limit: 1000,
            }),
            ..Settings::from_config(&config)
        };
        let store = Arc::new(Store::open(dir, 4).unwrap());
        Gallery::open(store, pipeline(), settings).unwrap()
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

    fn identify(g: &Gallery, picture: &str) -> Option<String> {
        g.identify("kiosk", "door", &photo(picture))
            .unwrap()
            .map(|m| m.user_id)
    }

    #[test]
    fn reembedded_templates_are_what_identify_finds_in_the_running_gallery() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(dir.path());
        g.accounts().add_client("kiosk", None).unwrap();
        g.create_gallery("kiosk", "door").unwrap();
        enroll(&g, "amy", "amy1.png");
        enroll(&g, "sheldon", "sheldon1.png");
        assert_eq!(identify(&g, "amy2.png").as_deref(), Some("amy"));
        // Amy's template as an older model left it: another fingerprint, and a vector
        // of that old space (here: Sheldon's, the hard case: it points at someone else).
        let sheldon = g
            .read_store(|r| r.templates_of("kiosk", "door", "sheldon"))
            .unwrap();
        let (amy_id, amy) = g
            .read_store(|r| r.templates_of("kiosk", "door", "amy"))
            .unwrap()
            .remove(0);
        let old = TemplateRecord {
            fingerprint: "old-model".into(),
            embedding: sheldon[0].1.embedding.clone(),
            ..amy.clone()
        };
        g.writes
            .commit(|tx| {
                tx.put_template("kiosk", "door", "amy", amy_id, &old)?;
                tx.index_remove_template("kiosk", "door", amy_id);
                Ok(())
            })
            .unwrap();
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
                changed_meanwhile: 0
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
}
