//! The Face API's use cases: clients and tokens, galleries, enrollment, 1:1 and 1:N
//! recognition, quotas. This is the one place that writes the store and the index
//! together; it knows nothing about HTTP.
//!
//! Public face: [`Gallery`] (faces and galleries, needs the vision pipeline),
//! [`Accounts`] (clients, tokens, passwords, quotas; no models needed, used by the admin
//! commands), [`Settings`], the outcome types and [`Error`].

mod accounts;
mod crop;
mod error;
mod faces;
mod galleries;
mod reembed;

use std::sync::{Arc, Mutex};

use crate::index::Index;
use crate::store::{Store, Writer};
use crate::vision::Pipeline;

pub use accounts::{Accounts, ClientSummary, Remaining, UNLIMITED_REPORTED};
pub use error::{Error, ImageRole, QuotaKind};
pub use faces::{
    CompareOutcome, EnrollOutcome, EnrollRequest, IdentifyMatch, KtpOutcome, VerifyOutcome,
};
pub use reembed::{reembed, ReembedReport};

/// Limits and thresholds, from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub verify_threshold: f32,
    pub identify_threshold: f32,
    pub ktp_minimum_similarity: f32,
    pub min_face_px: f32,
    pub keep_crops: bool,
    pub max_templates_per_user: usize,
    pub quota: Quota,
}

/// Per-client quotas; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub api_hits: u64,
    pub faces: u64,
    pub galleries: u64,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let r = &config.recognition;
        Settings {
            verify_threshold: r.verify_threshold,
            identify_threshold: r.identify_threshold,
            ktp_minimum_similarity: r.ktp_minimum_similarity,
            min_face_px: r.min_face_px,
            keep_crops: config.store.keep_crops,
            max_templates_per_user: config.store.max_templates_per_user.max(1),
            quota: Quota {
                api_hits: config.quota.api_hits,
                faces: config.quota.faces,
                galleries: config.quota.galleries,
            },
        }
    }
}

/// A local change, as the sync outbox (issue 4) will publish it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change<'a> {
    GalleryCreated {
        client: &'a str,
        gallery: &'a str,
    },
    GalleryDeleted {
        client: &'a str,
        gallery: &'a str,
    },
    FaceEnrolled {
        client: &'a str,
        gallery: &'a str,
        user_id: &'a str,
    },
    FaceDeleted {
        client: &'a str,
        gallery: &'a str,
        user_id: &'a str,
    },
    ClientDeleted {
        client: &'a str,
    },
}

pub struct Gallery {
    store: Arc<Store>,
    index: Index,
    pipeline: Arc<Pipeline>,
    accounts: Accounts,
    settings: Settings,
    /// Held from the store commit to the index update, so that the index applies
    /// changes in commit order.
    write: Mutex<()>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("store", &self.store)
            .field("index", &self.index)
            .finish()
    }
}

impl Gallery {
    /// Builds the in-memory index from every stored template of the pipeline's
    /// embedding space (templates of another space wait for `facegate reembed`).
    pub fn open(
        store: Arc<Store>,
        pipeline: Arc<Pipeline>,
        settings: Settings,
    ) -> Result<Gallery, Error> {
        let index = Index::new();
        let fingerprint = pipeline.fingerprint().to_string();
        let mut foreign = 0usize;
        store.read(|r| {
            r.for_each_template(|row| {
                if row.record.fingerprint == fingerprint {
                    index.insert(
                        &row.client,
                        &row.gallery,
                        &row.user_id,
                        row.id,
                        &row.record.embedding,
                    );
                } else {
                    foreign += 1;
                }
                Ok(())
            })
        })?;
        if foreign > 0 {
            tracing::warn!(
                templates = foreign,
                "templates from another model are not searchable: run `facegate reembed`"
            );
        }
        tracing::info!(templates = index.len(), "index built");
        let accounts = Accounts::new(store.clone(), settings.quota);
        Ok(Gallery {
            store,
            index,
            pipeline,
            accounts,
            settings,
            write: Mutex::new(()),
        })
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The single write path: runs `f` in a store transaction together with the
    /// change's outbox event, commits, then applies `index_update` before any other
    /// write can commit.
    fn commit<T>(
        &self,
        change: Change<'_>,
        mut f: impl FnMut(&mut Writer<'_, '_>) -> Result<T, Error>,
        index_update: impl FnOnce(&T, &Index),
    ) -> Result<T, Error> {
        let _order = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let value = self.store.write(|w| {
            let value = f(w)?;
            // Issue 4 (sync) adds here: w.outbox_push(&change.encode())?;
            let _ = &change;
            Ok::<_, Error>(value)
        })?;
        index_update(&value, &self.index);
        tracing::debug!(?change, "committed");
        Ok(value)
    }
}
