//! Face use cases: enroll (plain and against an ID card), verify (1:1), identify (1:N),
//! compare two pictures, list and delete enrolled users.

use image::RgbImage;

use super::{crop, Change, Error, Gallery, ImageRole, QuotaKind};
use crate::store::{self, TemplateRecord, UserRecord};
use crate::vision::{self, Face, FaceSelection};

pub struct EnrollRequest<'a> {
    pub gallery: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    /// The decoded request bytes (JPEG or PNG).
    pub image: &'a [u8],
    /// Skip the face-size gate (413) only.
    pub force: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnrollOutcome {
    pub masked: bool,
    pub face_px: f32,
    /// False when the user existed and got another template.
    pub new_user: bool,
    pub templates: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KtpOutcome {
    /// Live face against card photo, 0..1.
    pub similarity: f32,
    pub masked: bool,
    /// False when the similarity was below the minimum (nothing was stored).
    pub enrolled: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyOutcome {
    pub user_name: String,
    pub similarity: f32,
    pub masked: bool,
    pub verified: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IdentifyMatch {
    pub user_id: String,
    pub user_name: String,
    pub confidence: f32,
    pub masked: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompareOutcome {
    pub similarity: f32,
    pub verified: bool,
    /// Whether the face in the source image wears a mask.
    pub masked: bool,
}

impl Gallery {
    fn faces(
        &self,
        bytes: &[u8],
        role: ImageRole,
        selection: FaceSelection,
    ) -> Result<Vec<Face>, Error> {
        let picture: RgbImage = self
            .pipeline
            .decode(bytes)
            .map_err(|e| Error::image(role, e))?;
        self.pipeline
            .analyze(&picture, selection)
            .map_err(|e| Error::image(role, e))
    }

    fn largest_face(&self, bytes: &[u8], role: ImageRole) -> Result<Face, Error> {
        self.faces(bytes, role, FaceSelection::Largest)?
            .into_iter()
            .next()
            .ok_or(Error::NoFace(role))
    }

    pub(super) fn require_gallery(&self, client: &str, gallery: &str) -> Result<(), Error> {
        match self.store.read(|r| r.gallery(client, gallery))? {
            Some(_) => Ok(()),
            None => Err(Error::GalleryNotFound),
        }
    }

    pub fn enroll(&self, client: &str, req: &EnrollRequest<'_>) -> Result<EnrollOutcome, Error> {
        self.require_gallery(client, req.gallery)?;
        let face = self.largest_face(req.image, ImageRole::Image)?;
        if !req.force && face.quality.face_px < self.settings.min_face_px {
            return Err(Error::FaceTooSmall {
                face_px: face.quality.face_px,
                min_px: self.settings.min_face_px,
            });
        }
        self.store_face(client, req.gallery, req.user_id, req.user_name, &face)
    }

    /// enroll-face-ktp: the largest face is the live one, the second largest the photo
    /// on the ID card; below `minimum_similarity` nothing is stored.
    pub fn enroll_ktp(
        &self,
        client: &str,
        req: &EnrollRequest<'_>,
        minimum_similarity: Option<f32>,
    ) -> Result<KtpOutcome, Error> {
        self.require_gallery(client, req.gallery)?;
        let faces = self.faces(req.image, ImageRole::Image, FaceSelection::All)?;
        let (live, card) = match faces.as_slice() {
            [live, card, ..] => (live, card),
            _ => return Err(Error::NoFace(ImageRole::Image)),
        };
        if !req.force && live.quality.face_px < self.settings.min_face_px {
            return Err(Error::FaceTooSmall {
                face_px: live.quality.face_px,
                min_px: self.settings.min_face_px,
            });
        }
        let similarity = self
            .pipeline
            .similarity(live.embedding.cosine(&card.embedding));
        let minimum = minimum_similarity.unwrap_or(self.settings.ktp_minimum_similarity);
        let enrolled = similarity >= minimum;
        if enrolled {
            self.store_face(client, req.gallery, req.user_id, req.user_name, live)?;
        }
        Ok(KtpOutcome {
            similarity,
            masked: live.masked,
            enrolled,
        })
    }

    /// Enrolls a face already analysed by the pipeline (the camera, the tests); the same
    /// write path as [`Gallery::enroll`] without the size gate.
    pub fn enroll_face(
        &self,
        client: &str,
        gallery: &str,
        user_id: &str,
        user_name: &str,
        face: &Face,
    ) -> Result<EnrollOutcome, Error> {
        self.require_gallery(client, gallery)?;
        self.store_face(client, gallery, user_id, user_name, face)
    }

    fn store_face(
        &self,
        client: &str,
        gallery: &str,
        user_id: &str,
        user_name: &str,
        face: &Face,
    ) -> Result<EnrollOutcome, Error> {
        let crop_jpeg = if self.settings.keep_crops {
            Some(crop::encode(&face.aligned)?)
        } else {
            None
        };
        let record = TemplateRecord {
            fingerprint: self.pipeline.fingerprint().to_string(),
            embedding: face.embedding.0.to_vec(),
            crop_jpeg,
            masked: face.masked,
            created_at: store::now(),
        };
        let cap = self.settings.max_templates_per_user;
        let face_quota = self.accounts.quota().faces;
        let (new_user, _added, _dropped, templates) = self.commit(
            Change::FaceEnrolled {
                client,
                gallery,
                user_id,
            },
            |w| {
                if w.reader().gallery(client, gallery)?.is_none() {
                    return Err(Error::GalleryNotFound);
                }
                let now = store::now();
                let existing = w.reader().user(client, gallery, user_id)?;
                let new_user = existing.is_none();
                if new_user {
                    let mut counters = w.reader().counters(client)?;
                    if face_quota > 0 && counters.faces >= face_quota {
                        return Err(Error::QuotaExhausted(QuotaKind::Faces));
                    }
                    counters.faces += 1;
                    w.put_counters(client, &counters)?;
                }
                let user = UserRecord {
                    user_name: user_name.to_string(),
                    created_at: existing.map(|u| u.created_at).unwrap_or(now),
                    updated_at: now,
                };
                w.put_user(client, gallery, user_id, &user)?;
                let old = w.reader().templates_of(client, gallery, user_id)?;
                let excess = (old.len() + 1).saturating_sub(cap);
                let mut dropped = Vec::with_capacity(excess);
                for (id, _) in old.iter().take(excess) {
                    w.delete_template(client, gallery, user_id, *id)?;
                    dropped.push(*id);
                }
                let added = w.add_template(client, gallery, user_id, &record)?;
                Ok((new_user, added, dropped, old.len() + 1 - excess))
            },
            |(_, added, dropped, _), index| {
                for id in dropped {
                    index.remove_template(client, gallery, *id);
                }
                index.insert(client, gallery, user_id, *added, &record.embedding);
            },
        )?;
        Ok(EnrollOutcome {
            masked: face.masked,
            face_px: face.quality.face_px,
            new_user,
            templates,
        })
    }

    /// 1:1: the picture's largest face against the user's best template.
    pub fn verify(
        &self,
        client: &str,
        gallery: &str,
        user_id: &str,
        image: &[u8],
    ) -> Result<VerifyOutcome, Error> {
        let fingerprint = self.pipeline.fingerprint();
        let (user, templates) = self.store.read(|r| {
            if r.gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            let user = r
                .user(client, gallery, user_id)?
                .ok_or(Error::UserNotFound)?;
            Ok((user, r.templates_of(client, gallery, user_id)?))
        })?;
        let face = self.largest_face(image, ImageRole::Image)?;
        let best = templates
            .iter()
            .filter(|(_, t)| t.fingerprint == fingerprint)
            .filter_map(|(_, t)| vision::Embedding::from_raw(&t.embedding))
            .map(|e| face.embedding.cosine(&e))
            .fold(f32::NEG_INFINITY, f32::max);
        let similarity = if best.is_finite() {
            self.pipeline.similarity(best)
        } else {
            0.0
        };
        Ok(VerifyOutcome {
            user_name: user.user_name,
            similarity,
            masked: face.masked,
            verified: similarity >= self.settings.verify_threshold,
        })
    }

    /// 1:N: the best match in the gallery, if it reaches the identify threshold.
    pub fn identify(
        &self,
        client: &str,
        gallery: &str,
        image: &[u8],
    ) -> Result<Option<IdentifyMatch>, Error> {
        self.require_gallery(client, gallery)?;
        let face = self.largest_face(image, ImageRole::Image)?;
        let Some(found) = self.index.search(client, gallery, &face.embedding.0) else {
            return Ok(None);
        };
        let confidence = self.pipeline.identify_score(&face.embedding, found.cosine);
        if confidence < self.settings.identify_threshold {
            return Ok(None);
        }
        let user = self
            .store
            .read(|r| r.user(client, gallery, &found.user_id))?;
        // The index and the store are updated under one lock; a user missing here was
        // deleted between the search and this read: no match.
        let Some(user) = user else {
            return Ok(None);
        };
        Ok(Some(IdentifyMatch {
            user_id: found.user_id.to_string(),
            user_name: user.user_name,
            confidence,
            masked: face.masked,
        }))
    }

    /// compare-images: the largest face of each picture; nothing is stored.
    pub fn compare(&self, source: &[u8], target: &[u8]) -> Result<CompareOutcome, Error> {
        let source_picture = self
            .pipeline
            .decode(source)
            .map_err(|e| Error::image(ImageRole::Source, e))?;
        let target_picture = self
            .pipeline
            .decode(target)
            .map_err(|e| Error::image(ImageRole::Target, e))?;
        let first = |picture: &RgbImage, role| -> Result<Face, Error> {
            self.pipeline
                .analyze(picture, FaceSelection::Largest)
                .map_err(|e| Error::image(role, e))?
                .into_iter()
                .next()
                .ok_or(Error::NoFace(role))
        };
        let s = first(&source_picture, ImageRole::Source)?;
        let t = first(&target_picture, ImageRole::Target)?;
        let similarity = self.pipeline.similarity(s.embedding.cosine(&t.embedding));
        Ok(CompareOutcome {
            similarity,
            verified: similarity >= self.settings.verify_threshold,
            masked: s.masked,
        })
    }

    /// (user_id, user_name) of every user in a gallery, sorted by user_id.
    pub fn list_faces(&self, client: &str, gallery: &str) -> Result<Vec<(String, String)>, Error> {
        let mut users: Vec<(String, String)> = self.store.read(|r| {
            if r.gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            Ok(r.users(client, gallery)?
                .into_iter()
                .map(|(id, u)| (id, u.user_name))
                .collect())
        })?;
        users.sort();
        Ok(users)
    }

    pub fn delete_face(&self, client: &str, gallery: &str, user_id: &str) -> Result<(), Error> {
        self.commit(
            Change::FaceDeleted {
                client,
                gallery,
                user_id,
            },
            |w| {
                if w.reader().gallery(client, gallery)?.is_none() {
                    return Err(Error::GalleryNotFound);
                }
                if w.reader().user(client, gallery, user_id)?.is_none() {
                    return Err(Error::UserNotFound);
                }
                w.delete_user(client, gallery, user_id)?;
                let mut counters = w.reader().counters(client)?;
                counters.faces = counters.faces.saturating_sub(1);
                w.put_counters(client, &counters)?;
                Ok(())
            },
            |_, index| index.remove_user(client, gallery, user_id),
        )
    }
}
