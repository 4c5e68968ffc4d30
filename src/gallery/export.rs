//! Gallery export files (issue 4): JSON lines, a header then one operation per line in
//! the replication format (docs/sync.md), so that an export can be imported on another
//! device or pushed to a fleet, and two exports can be compared.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::ops::wire;
use super::{Error, Gallery, Op, OpKind, StateUser};

pub const EXPORT_FORMAT: &str = "facegate-gallery";
pub const EXPORT_VERSION: u32 = 1;

/// The first line of an export file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub client: String,
    pub gallery: String,
    pub model: String,
    pub exported_at: u64,
    pub users: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Format { line: usize, reason: String },
    #[error(transparent)]
    Gallery(#[from] Error),
}

impl Gallery {
    /// The gallery as operations: `create_gallery`, then one `upsert_user` per user
    /// (sorted by user id) with every template, crops included when stored, and last a
    /// `gallery_state` listing every user (a snapshot then removes users absent from it).
    pub fn export_ops(
        &self,
        client: &str,
        gallery: &str,
        origin: &str,
    ) -> Result<(ExportHeader, Vec<Op>), Error> {
        let model = self.pipeline.fingerprint().to_string();
        let now_ms = || self.writes.clock().now_ms();
        let mut ops = Vec::new();
        let op =
            |version: u64, kind: OpKind| Op::new(origin, &model, client, gallery, version, kind);
        self.store.read(|r| {
            if r.gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            let version = |user: &str| -> Result<u64, Error> {
                Ok(r.entity_version(client, gallery, user)?
                    .map(|v| v.version)
                    .unwrap_or_else(now_ms))
            };
            ops.push(op(version("")?, OpKind::CreateGallery));
            let mut users = r.users(client, gallery)?;
            users.sort_by(|a, b| a.0.cmp(&b.0));
            let mut listed = Vec::with_capacity(users.len());
            let mut latest = 0;
            for (user_id, user) in users {
                let templates = r
                    .templates_of(client, gallery, &user_id)?
                    .iter()
                    .map(|(_, t)| wire(t))
                    .collect();
                let stored = r.entity_version(client, gallery, &user_id)?;
                let v = stored.as_ref().map(|s| s.version).unwrap_or_else(now_ms);
                latest = latest.max(v);
                listed.push(StateUser {
                    user_id: user_id.clone(),
                    version: v,
                    origin: stored.map(|s| s.origin).unwrap_or_else(|| origin.into()),
                });
                ops.push(op(
                    v,
                    OpKind::UpsertUser {
                        user_id,
                        user_name: user.user_name,
                        templates,
                    },
                ));
            }
            // The snapshot's version: now, and never below a listed user's version.
            let state = op(now_ms().max(latest), OpKind::GalleryState { users: listed });
            ops.push(state);
            Ok(())
        })?;
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            client: client.into(),
            gallery: gallery.into(),
            model,
            exported_at: self.writes.clock().now_secs(),
            // create_gallery, the upserts, gallery_state.
            users: ops.len() - 2,
        };
        Ok((header, ops))
    }
}

pub fn write_export(
    out: &mut impl Write,
    header: &ExportHeader,
    ops: &[Op],
) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, header).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    for op in ops {
        serde_json::to_writer(&mut *out, op).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub fn read_export(input: impl BufRead) -> Result<(ExportHeader, Vec<Op>), ExportError> {
    let mut lines = input.lines();
    let bad = |line: usize, reason: String| ExportError::Format { line, reason };
    let first = lines.next().ok_or_else(|| bad(1, "empty file".into()))??;
    let header: ExportHeader =
        serde_json::from_str(&first).map_err(|e| bad(1, format!("header: {e}")))?;
    if header.format != EXPORT_FORMAT || header.version != EXPORT_VERSION {
        return Err(bad(
            1,
            format!(
                "format {} version {} (expected {EXPORT_FORMAT} {EXPORT_VERSION})",
                header.format, header.version
            ),
        ));
    }
    let mut ops = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line).map_err(|e| bad(i + 2, e.to_string()))?;
        ops.push(op);
    }
    Ok((header, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ExportHeader {
        ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            client: "c".into(),
            gallery: "g".into(),
            model: "m".into(),
            exported_at: 1,
            users: 0,
        }
    }

    #[test]
    fn an_export_file_reads_back_as_written() {
        let op = Op {
            v: 1,
            op_id: "x".into(),
            origin: "o".into(),
            version: 2,
            ts: 3,
            client: "c".into(),
            gallery: "g".into(),
            model: "m".into(),
            kind: OpKind::CreateGallery,
        };
        let mut bytes = Vec::new();
        write_export(&mut bytes, &header(), std::slice::from_ref(&op)).unwrap();
        let (h, ops) = read_export(&bytes[..]).unwrap();
        assert_eq!(h, header());
        assert_eq!(ops, [op]);
    }

    #[test]
    fn an_export_of_another_format_version_is_refused_with_its_line() {
        let mut h = header();
        h.version = 99;
        let mut bytes = Vec::new();
        write_export(&mut bytes, &h, &[]).unwrap();
        assert!(matches!(
            read_export(&bytes[..]),
            Err(ExportError::Format { line: 1, .. })
        ));
        bytes.extend_from_slice(b"{not json\n");
        h.version = EXPORT_VERSION;
        let mut good = Vec::new();
        write_export(&mut good, &h, &[]).unwrap();
        good.extend_from_slice(b"{not json\n");
        assert!(matches!(
            read_export(&good[..]),
            Err(ExportError::Format { line: 2, .. })
        ));
    }
}
