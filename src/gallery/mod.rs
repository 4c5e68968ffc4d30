//! The Face API's use cases: clients and tokens, galleries, enrollment, 1:1 and 1:N
//! recognition, quotas. This is the one place that writes the store and the index
//! together; it knows nothing about HTTP.
//!
//! Public face: [`Gallery`] (faces and galleries, needs the vision pipeline),
//! [`Accounts`] (clients, tokens, passwords, quotas; no models needed, used by the admin
//! commands), [`Settings`], the outcome types and [`Error`].

mod accounts;
mod central;
mod crop;
mod door;
mod error;
mod export;
mod faces;
mod galleries;
mod login_throttle;
pub use login_throttle::PEER_BURST as PEER_LOGIN_BURST;
mod ops;
mod reembed;
mod replica;
mod search;
mod seen;
mod state;
mod visits;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::index::Index;
use crate::store::{Store, Writer};
use crate::vision::Pipeline;

pub use crate::store::MAX_ID_BYTES;
pub use accounts::{
    Accounts, ClientSummary, Principal, Remaining, Scope, MAX_OAUTH_TOKENS, UNLIMITED_REPORTED,
};
pub use central::{central_ops, wire_template, CentralUser};
pub use door::OpenCommand;
pub use error::{check_id, Error, ImageRole, QuotaKind};
pub use export::{
    read_export, write_export, ExportError, ExportHeader, EXPORT_FORMAT, EXPORT_VERSION,
};
pub use faces::{
    CompareOutcome, EnrollOutcome, EnrollRequest, IdentifyMatch, KtpOutcome, VerifyOutcome,
};
pub use ops::{
    decode_embedding, encode_embedding, Applied, Op, OpKind, Refusal, StateUser, WireTemplate,
    OP_NAMES, PROTOCOL_VERSION,
};
pub use reembed::{reembed, ReembedReport};
pub use replica::OutboxSettings;
pub use visits::{rfc3339_millis, Sighting, Visit, MAX_EVENT_FACE_BYTES};

/// Limits and thresholds, from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub verify_threshold: f32,
    pub identify_threshold: f32,
    pub ktp_minimum_similarity: f32,
    pub min_face_px: f32,
    /// identify and verify embed the mirrored chip only when the single embedding's
    /// cosine is within this of the threshold's (src/vision/flip.rs); >= 2: always.
    pub flip_margin_cosine: f32,
    pub keep_crops: bool,
    pub max_templates_per_user: usize,
    pub quota: Quota,
    /// Sync on: the device id and outbox bound; every local change then writes its
    /// operation to the outbox in its own transaction. None: sync off, no outbox.
    pub outbox: Option<OutboxSettings>,
    /// Camera visits kept in the store; older ones are pruned (`camera.history`).
    pub visit_history: usize,
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
            flip_margin_cosine: r.flip_margin_cosine,
            keep_crops: config.store.keep_crops,
            max_templates_per_user: config.store.max_templates_per_user.max(1),
            quota: Quota {
                api_hits: config.quota.api_hits,
                faces: config.quota.faces,
                galleries: config.quota.galleries,
            },
            outbox: (!config.sync.url.is_empty()).then(|| OutboxSettings {
                origin: config.sync.device_id.clone(),
                limit: config.sync.outbox_limit,
            }),
            visit_history: config.camera.history.max(1),
        }
    }
}

/// A local change, as the sync outbox (issue 4) publishes it.
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
    /// A camera kiosk visit, published as a `recognized` event.
    Visit(visits::VisitEvent<'a>),
    /// A visit that opens the door, published as an `open` command (src/door).
    DoorOpen(&'a door::OpenCommand),
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
    /// Outbox events dropped because the outbox was full (since start).
    outbox_dropped: AtomicU64,
    /// Live camera visits, sent after they are committed.
    visits: tokio::sync::broadcast::Sender<Visit>,
    /// Live door action lines, sent after they are committed.
    door_lines: tokio::sync::broadcast::Sender<crate::store::DoorLine>,
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
            r.for_each_template_without_crop(|row| {
                if row.record.fingerprint == fingerprint {
                    search::index_insert(
                        &index,
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
        index.shrink_to_fit();
        // The scan touched a page of the data file per template: give them back.
        store.release_mapped_pages()?;
        tracing::info!(
            templates = index.len(),
            index_bytes = index.memory_bytes(),
            "index built"
        );
        let accounts = Accounts::new(store.clone(), settings.quota);
        Ok(Gallery {
            store,
            index,
            pipeline,
            accounts,
            settings,
            write: Mutex::new(()),
            outbox_dropped: AtomicU64::new(0),
            visits: tokio::sync::broadcast::channel(visits::BROADCAST_CAPACITY).0,
            door_lines: tokio::sync::broadcast::channel(visits::BROADCAST_CAPACITY).0,
        })
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The inference pool's sessions and queue (for /healthz and /metrics).
    pub fn inference_status(&self) -> crate::vision::PoolStatus {
        self.pipeline.pool_status()
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
            let before = match (&change, &self.settings.outbox) {
                (Change::ClientDeleted { client }, Some(_)) => w.reader().galleries(client)?,
                _ => Vec::new(),
            };
            let value = f(w)?;
            if let Some(out) = &self.settings.outbox {
                self.write_outbox(w, out, &change, &before)?;
            }
            Ok::<_, Error>(value)
        })?;
        index_update(&value, &self.index);
        tracing::debug!(?change, "committed");
        Ok(value)
    }
}
