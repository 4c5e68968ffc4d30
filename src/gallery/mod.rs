//! The Face API's use cases: clients and tokens, galleries, enrollment, 1:1 and 1:N
//! recognition, quotas. This is the one place that writes the store, the index and the
//! sync outbox, all through one function (`commit.rs`, [`WritePath::commit`]); it knows
//! nothing about HTTP. Readers outside (the API's /healthz and /metrics) get narrow
//! methods ([`Gallery::schema_version`], [`Gallery::indexed_templates`]), not the store.
//!
//! Public face: [`Gallery`] (faces and galleries, needs the vision pipeline),
//! [`Accounts`] (clients, tokens, passwords, quotas; no models needed, used by the admin
//! commands), [`Settings`], the outcome types and [`Error`].

mod accounts;
mod central;
mod clock;
mod commit;
mod crop;
mod door;
mod error;
mod export;
mod faces;
mod galleries;
mod hits;
mod login_throttle;
pub use login_throttle::PEER_BURST as PEER_LOGIN_BURST;
mod ops;
mod outbox;
mod reembed;
mod replica;
mod search;
mod seen;
mod state;
mod visits;

use std::sync::Arc;

use crate::index::Index;
use crate::store::Store;
use crate::vision::Pipeline;
use commit::WritePath;

pub use crate::store::MAX_ID_BYTES;
pub use accounts::{
    Accounts, ClientSummary, Principal, Remaining, Scope, MAX_OAUTH_TOKENS, UNLIMITED_REPORTED,
};
pub use central::{central_ops, wire_template, CentralUser};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crop::{decode as decode_crop, encode as encode_crop, of_face as crop_of_face};
pub use door::OpenCommand;
pub use error::{check_id, Error, ImageRole, QuotaKind};
pub use export::{
    read_export, write_export, ExportError, ExportHeader, EXPORT_FORMAT, EXPORT_VERSION,
};
pub use faces::{
    CompareOutcome, EnrollOutcome, EnrollRequest, IdentifyMatch, KtpOutcome, PrecomputedFace,
    VerifyOutcome,
};
pub use ops::{
    decode_embedding, encode_embedding, Applied, Op, OpKind, Refusal, StateUser, WireTemplate,
    OP_NAMES, PROTOCOL_VERSION,
};
pub use reembed::ReembedReport;
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
    /// All of a client's galleries removed (`galleries`: their ids).
    ClientDeleted {
        client: &'a str,
        galleries: &'a [String],
    },
    /// A remote operation this device refused, reported as a `refused` event.
    Refused {
        op: &'a Op,
        reason: String,
    },
    /// A camera kiosk visit, published as a `recognized` event.
    Visit(visits::VisitEvent<'a>),
    /// A visit that opens the door, published as an `open` command (src/door).
    DoorOpen(&'a door::OpenCommand),
}

pub struct Gallery {
    /// For reads; every write goes through `writes`.
    store: Arc<Store>,
    /// The store, the index and the outbox, written together (shared with `accounts`).
    writes: Arc<WritePath>,
    pipeline: Arc<Pipeline>,
    accounts: Accounts,
    settings: Settings,
    /// Live camera visits, sent after they are committed.
    visits: tokio::sync::broadcast::Sender<Visit>,
    /// Live door action lines, sent after they are committed.
    door_lines: tokio::sync::broadcast::Sender<crate::store::DoorLine>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("store", &self.store)
            .field("index", self.writes.index())
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
        Gallery::open_with_clock(store, pipeline, settings, Arc::new(SystemClock))
    }

    /// [`Gallery::open`] with the clock every write takes its time from (clock.rs).
    pub fn open_with_clock(
        store: Arc<Store>,
        pipeline: Arc<Pipeline>,
        settings: Settings,
        clock: Arc<dyn Clock>,
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
        let writes = Arc::new(WritePath::new(
            store.clone(),
            index,
            settings.outbox.clone(),
            fingerprint,
            clock,
        ));
        let accounts = Accounts::sharing(store.clone(), writes.clone(), settings.quota);
        Ok(Gallery {
            store,
            writes,
            pipeline,
            accounts,
            settings,
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

    /// The store's schema version (None: not initialised); for /healthz.
    pub fn schema_version(&self) -> Result<Option<u32>, Error> {
        Ok(self.store.read(|r| r.schema_version())?)
    }

    /// Templates in the 1:N index (searchable ones); for /healthz and /metrics.
    pub fn indexed_templates(&self) -> usize {
        self.index().len()
    }

    /// Memory the 1:N index holds, in bytes; for /metrics.
    pub fn index_memory_bytes(&self) -> usize {
        self.index().memory_bytes()
    }

    /// Runs `f` in a read transaction of the gallery's store (tests, diagnostics). The
    /// store itself is not handed out: its writes go through the gallery's one write
    /// path, and a reader cannot write.
    pub fn read_store<T, E: From<crate::store::Error>>(
        &self,
        f: impl FnOnce(&crate::store::Reader<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.store.read(f)
    }

    /// Flushes the store to disk (every commit already is; for the admin commands' exit).
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.store.sync()?)
    }

    fn index(&self) -> &Index {
        self.writes.index()
    }
}
