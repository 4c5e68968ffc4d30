//! The values stored in each database. Small records are JSON (easy to migrate by
//! adding defaulted fields); templates use a compact binary layout because a gallery
//! may hold a million of them and all are read at start.

use serde::{Deserialize, Serialize};

use super::Error;

/// An API client (one tenant): its galleries, users and counters hang off its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub name: String,
    pub created_at: u64,
    /// PBKDF2-HMAC-SHA256 hash for `/oauth/client/token`, if a password was set.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// An access token, stored under its public id; only the SHA-256 of the whole token
/// is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub client: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: u64,
    /// "cli" or "oauth".
    pub origin: String,
    /// What the token may do: absent for a full-power token, "kiosk" for one that only
    /// reads its client's kiosk routes (gallery::Scope). Scoped tokens are stored under
    /// a key with the scope's prefix, so a binary that predates scopes finds none of
    /// them (a downgrade refuses them instead of granting full power).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GalleryRecord {
    pub created_at: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_name: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Per-client usage: what quotas are checked against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub api_hits: u64,
    /// Enrolled users (persons) over all of the client's galleries.
    pub faces: u64,
    pub galleries: u64,
}

/// One camera kiosk visit: a person (or an unknown face) recognized at the door.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisitRecord {
    pub client: String,
    pub gallery: String,
    pub device_id: String,
    /// None for an unknown person.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    /// Calibrated similarity (0..1) of the best match in the gallery, known or not.
    pub similarity: f32,
    pub mask: bool,
    /// Milliseconds since the Unix epoch, when the frame was captured.
    pub timestamp_ms: u64,
    /// A small JPEG of the aligned face.
    #[serde(default, with = "base64_bytes")]
    pub face_jpeg: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// One enrolled face template.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateRecord {
    /// The embedding space it belongs to (`vision::Pipeline::fingerprint`).
    pub fingerprint: String,
    pub embedding: Vec<f32>,
    /// The aligned face crop as JPEG, when crops are kept.
    pub crop_jpeg: Option<Vec<u8>>,
    /// Where the crop shows the face (`vision::CropPoints`): dlib's mean-face right eye,
    /// left eye and mouth centre in crop pixels. `None` for crops stored before it was
    /// recorded, and always without a crop.
    pub crop_points: Option<[[f32; 2]; 3]>,
    pub masked: bool,
    pub created_at: u64,
}

const TEMPLATE_LAYOUT: u8 = 1;

/// Marks the crop points after the crop. Layout 1 readers stop at the crop, so records
/// with points still read in binaries from before them (a downgrade loses nothing).
const CROP_POINTS_TAG: u8 = 1;

impl TemplateRecord {
    /// Layout 1: [1][fp len u8][fp][dims u16 LE][dims x f32 LE][masked u8]
    /// [created_at u64 LE][crop len u32 LE][crop], then, with a crop and its points,
    /// [CROP_POINTS_TAG][6 x f32 LE].
    pub fn encode(&self) -> Vec<u8> {
        let fp = self.fingerprint.as_bytes();
        let fp = &fp[..fp.len().min(255)];
        let crop = self.crop_jpeg.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(16 + fp.len() + self.embedding.len() * 4 + crop.len());
        out.push(TEMPLATE_LAYOUT);
        out.push(fp.len() as u8);
        out.extend_from_slice(fp);
        out.extend_from_slice(&(self.embedding.len() as u16).to_le_bytes());
        for v in &self.embedding {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(u8::from(self.masked));
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.extend_from_slice(&(crop.len() as u32).to_le_bytes());
        out.extend_from_slice(crop);
        if let (false, Some(points)) = (crop.is_empty(), &self.crop_points) {
            out.push(CROP_POINTS_TAG);
            for v in points.iter().flatten() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<TemplateRecord, Error> {
        Self::decode_layout(bytes, true)
    }

    /// Everything but the crop (`crop_jpeg` None); the crop's bytes are not read.
    pub fn decode_without_crop(bytes: &[u8]) -> Result<TemplateRecord, Error> {
        Self::decode_layout(bytes, false)
    }

    /// Only the embedding, into `out` (cleared first), when the record's fingerprint is
    /// `fingerprint`; false (and `out` empty) for another embedding space. No record is
    /// built: the index's exact re-rank reads a few of these per search.
    pub fn embedding_into(
        bytes: &[u8],
        fingerprint: &str,
        out: &mut Vec<f32>,
    ) -> Result<bool, Error> {
        out.clear();
        let (mut r, stored_fingerprint) = Self::head(bytes)?;
        // What `encode` keeps of a longer fingerprint.
        let wanted = &fingerprint.as_bytes()[..fingerprint.len().min(255)];
        if stored_fingerprint != wanted {
            return Ok(false);
        }
        out.extend(r.embedding()?);
        Ok(true)
    }

    /// Checks the layout byte and returns the fingerprint's bytes, with the cursor left
    /// at the embedding.
    fn head(bytes: &[u8]) -> Result<(Cursor<'_>, &[u8]), Error> {
        let mut r = Cursor { bytes, at: 0 };
        let layout = r.take(1)?[0];
        if layout != TEMPLATE_LAYOUT {
            return Err(Error::Corrupt(format!("template layout {layout}")));
        }
        let fp_len = usize::from(r.take(1)?[0]);
        let fingerprint = r.take(fp_len)?;
        Ok((r, fingerprint))
    }

    fn decode_layout(bytes: &[u8], with_crop: bool) -> Result<TemplateRecord, Error> {
        let (mut r, fingerprint) = Self::head(bytes)?;
        let fingerprint = String::from_utf8_lossy(fingerprint).into_owned();
        let embedding = r.embedding()?.collect();
        let masked = r.take(1)?[0] != 0;
        let created_at = u64::from_le_bytes(r.array()?);
        let crop_len = u32::from_le_bytes(r.array()?) as usize;
        let (crop, crop_points) = if with_crop {
            let crop = r.take(crop_len)?;
            let points = if crop.is_empty() {
                None
            } else {
                r.crop_points()?
            };
            (crop, points)
        } else {
            (&[][..], None)
        };
        Ok(TemplateRecord {
            fingerprint,
            embedding,
            crop_jpeg: (!crop.is_empty()).then(|| crop.to_vec()),
            crop_points,
            masked,
            created_at,
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The crop points after a crop, if the record has them.
    fn crop_points(&mut self) -> Result<Option<[[f32; 2]; 3]>, Error> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let tag = self.take(1)?[0];
        if tag != CROP_POINTS_TAG {
            return Err(Error::Corrupt(format!("template trailer {tag}")));
        }
        let mut v = [0f32; 6];
        for x in &mut v {
            *x = f32::from_le_bytes(self.array()?);
        }
        Ok(Some([[v[0], v[1]], [v[2], v[3]], [v[4], v[5]]]))
    }

    /// The embedding: its dimension (u16) then that many little-endian f32.
    fn embedding(&mut self) -> Result<impl Iterator<Item = f32> + 'a, Error> {
        let dims = usize::from(u16::from_le_bytes(self.array()?));
        Ok(self
            .take(dims * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| Error::Corrupt("template record truncated".into()))?;
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_with_and_without_crop() {
        let mut t = TemplateRecord {
            fingerprint: "abcd".into(),
            embedding: (0..128).map(|i| i as f32 / 7.0).collect(),
            crop_jpeg: Some(vec![0xFF, 0xD8, 1, 2, 3]),
            crop_points: None,
            masked: true,
            created_at: 1_700_000_000,
        };
        assert_eq!(TemplateRecord::decode(&t.encode()).unwrap(), t);
        t.crop_jpeg = None;
        assert_eq!(TemplateRecord::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn crop_points_follow_the_crop_so_records_without_them_still_read() {
        let without = TemplateRecord {
            fingerprint: "abcd".into(),
            embedding: vec![0.5; 128],
            crop_jpeg: Some(vec![0xFF, 0xD8, 1, 2, 3]),
            crop_points: None,
            masked: false,
            created_at: 1_700_000_000,
        };
        let with = TemplateRecord {
            crop_points: Some([[51.25, 55.0], [98.5, 55.0], [74.75, 110.5]]),
            ..without.clone()
        };
        let (old, new) = (without.encode(), with.encode());
        assert_eq!(TemplateRecord::decode(&new).unwrap(), with);
        assert_eq!(TemplateRecord::decode(&old).unwrap(), without);
        // The points only append: a reader that stops at the crop (every binary from
        // before them) reads the same record.
        assert_eq!(&new[..old.len()], &old[..]);
        assert_eq!(new.len(), old.len() + 1 + 24);
        let listed = TemplateRecord::decode_without_crop(&new).unwrap();
        assert_eq!((listed.crop_jpeg, listed.crop_points), (None, None));
        // Points without a crop mean nothing and are not written.
        let no_crop = TemplateRecord {
            crop_jpeg: None,
            ..with.clone()
        };
        assert_eq!(
            TemplateRecord::decode(&no_crop.encode())
                .unwrap()
                .crop_points,
            None
        );
        // A truncated trailer or a wrong tag is corruption, not a panic.
        for n in old.len() + 1..new.len() {
            assert!(TemplateRecord::decode(&new[..n]).is_err(), "{n}");
        }
        let mut wrong = new.clone();
        wrong[old.len()] = 9;
        assert!(TemplateRecord::decode(&wrong).is_err());
    }

    #[test]
    fn the_embedding_alone_is_read_for_its_fingerprint_only() {
        let t = TemplateRecord {
            fingerprint: "abcd".into(),
            embedding: (0..128).map(|i| i as f32 / 7.0).collect(),
            crop_jpeg: Some(vec![0xFF, 0xD8, 1, 2, 3]),
            crop_points: None,
            masked: true,
            created_at: 1_700_000_000,
        };
        let bytes = t.encode();
        let mut out = vec![9.0];
        assert!(TemplateRecord::embedding_into(&bytes, "abcd", &mut out).unwrap());
        assert_eq!(out, t.embedding);
        assert!(!TemplateRecord::embedding_into(&bytes, "abc", &mut out).unwrap());
        assert!(!TemplateRecord::embedding_into(&bytes, "abcde", &mut out).unwrap());
        assert!(out.is_empty());
        // Up to the end of the vector: truncated before it is an error, after it not.
        let vector_end = 1 + 1 + 4 + 2 + 128 * 4;
        for n in 0..vector_end {
            assert!(TemplateRecord::embedding_into(&bytes[..n], "abcd", &mut out).is_err());
        }
        assert!(TemplateRecord::embedding_into(&bytes[..vector_end], "abcd", &mut out).unwrap());
    }

    #[test]
    fn truncated_template_is_an_error_not_a_panic() {
        let t = TemplateRecord {
            fingerprint: "f".into(),
            embedding: vec![1.0; 128],
            crop_jpeg: None,
            crop_points: None,
            masked: false,
            created_at: 1,
        };
        let bytes = t.encode();
        for n in 0..bytes.len() {
            assert!(TemplateRecord::decode(&bytes[..n]).is_err());
        }
    }
}
