//! `facegate reembed`: recompute every template's embedding from its stored aligned
//! crop with the current model, so a model change needs no re-enrollment.

use super::{crop, Error};
use crate::store::{Store, TemplateRecord, TemplateRow};
use crate::vision::Pipeline;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReembedReport {
    /// Templates re-embedded.
    pub updated: usize,
    /// Already in the current embedding space (skipped unless `force`).
    pub current: usize,
    /// Without a stored crop: cannot be re-embedded.
    pub without_crop: usize,
}

const BATCH: usize = 500;

/// Re-embeds stored templates. Run it with the daemon stopped (the daemon builds its
/// index at start). `force` also re-embeds templates already in the current space.
pub fn reembed(store: &Store, pipeline: &Pipeline, force: bool) -> Result<ReembedReport, Error> {
    let fingerprint = pipeline.fingerprint().to_string();
    let mut rows: Vec<TemplateRow> = Vec::new();
    let mut report = ReembedReport::default();
    store.read(|r| {
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
            let embedding = pipeline.embed_chip(&chip).map_err(Error::Vision)?;
            updated.push(TemplateRecord {
                fingerprint: fingerprint.clone(),
                embedding: embedding.0.to_vec(),
                ..row.record.clone()
            });
        }
        store.write(|w| {
            for (row, record) in batch.iter().zip(&updated) {
                w.put_template(&row.client, &row.gallery, &row.user_id, row.id, record)?;
            }
            Ok::<_, Error>(())
        })?;
        report.updated += updated.len();
    }
    Ok(report)
}
