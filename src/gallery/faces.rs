//! Face use cases: enroll (plain and against an ID card), verify (1:1), identify (1:N),
//! compare two pictures, list and delete enrolled users.

use super::commit::Tx;
use super::{crop, Change, Error, Gallery, ImageRole, QuotaKind};
use crate::store::{TemplateRecord, UserRecord};
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

/// A face to store whose embedding was made elsewhere ([`Gallery::enroll_embeddings`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PrecomputedFace {
    pub user_id: String,
    pub user_name: String,
    /// Made with this gallery's model.
    pub embedding: Vec<f32>,
    /// Kept only when the gallery keeps crops.
    pub crop_jpeg: Option<Vec<u8>>,
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
    /// The faces of a picture to enroll from, each with the crop to store when crops
    /// are kept.
    fn faces_to_enroll(
        &self,
        bytes: &[u8],
        role: ImageRole,
        selection: FaceSelection,
    ) -> Result<Vec<Face>, Error> {
        // Decoded once a model session is admitted (see `Pipeline::analyze_bytes`).
        let faces = if self.settings.keep_crops {
            self.pipeline.analyze_bytes_to_store(bytes, selection)
        } else {
            self.pipeline.analyze_bytes(bytes, selection)
        };
        faces.map_err(|e| Error::image(role, e))
    }

    fn largest_face(&self, bytes: &[u8], role: ImageRole) -> Result<Face, Error> {
        self.faces_to_enroll(bytes, role, FaceSelection::Largest)?
            .into_iter()
            .next()
            .ok_or(Error::NoFace(role))
    }

    /// The largest face for a read whose decision is `decision_cosine(embedding)` against
    /// `threshold` (a similarity): the mirrored chip is embedded only when the single
    /// embedding's decision is within `recognition.flip_margin_cosine` of it
    /// (src/vision/flip.rs). `None` from `decision_cosine`: nothing to decide.
    fn largest_face_deciding(
        &self,
        bytes: &[u8],
        threshold: f32,
        listed: usize,
        ranked_cosines: &dyn Fn(&vision::Embedding) -> Vec<f32>,
    ) -> Result<Face, Error> {
        let threshold_cosine = self.pipeline.calibration().cosine_for(threshold);
        let margin = self.settings.flip_margin_cosine;
        let near = |e: &vision::Embedding| {
            vision::ranking_near(&ranked_cosines(e), threshold_cosine, margin, listed)
        };
        self.pipeline
            .analyze_bytes_deciding(bytes, FaceSelection::Largest, &near)
            .map_err(|e| Error::image(ImageRole::Image, e))?
            .into_iter()
            .next()
            .ok_or(Error::NoFace(ImageRole::Image))
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
        let faces = self.faces_to_enroll(req.image, ImageRole::Image, FaceSelection::All)?;
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
        super::check_id("user_id", user_id)?;
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
        let (crop_jpeg, crop_points) = if self.settings.keep_crops {
            let (jpeg, points) = crop::of_face(face, self.pipeline.crop_points())?;
            (Some(jpeg), Some(points.pixels()))
        } else {
            (None, None)
        };
        let record = TemplateRecord {
            fingerprint: self.pipeline.fingerprint().to_string(),
            embedding: face.embedding.0.to_vec(),
            crop_points,
            crop_jpeg,
            masked: face.masked,
            created_at: self.writes.clock().now_secs(),
        };
        let (new_user, templates) = self.writes.commit(|tx| {
            if tx.reader().gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            self.add_template_in(tx, client, gallery, user_id, user_name, &record)
        })?;
        Ok(EnrollOutcome {
            masked: face.masked,
            face_px: face.quality.face_px,
            new_user,
            templates,
        })
    }

    /// Stores faces whose embeddings were made elsewhere with this gallery's model (one
    /// template each), in one commit, each as an enrollment would (quota, template cap,
    /// index, outbox). For filling large galleries without running the models per face
    /// (`facegate bench index --fill-store`, benches/identify_scale.rs).
    pub fn enroll_embeddings(
        &self,
        client: &str,
        gallery: &str,
        faces: &[PrecomputedFace],
    ) -> Result<(), Error> {
        for face in faces {
            super::check_id("user_id", &face.user_id)?;
        }
        let now = self.writes.clock().now_secs();
        let records: Vec<TemplateRecord> = faces
            .iter()
            .map(|f| TemplateRecord {
                fingerprint: self.pipeline.fingerprint().to_string(),
                embedding: f.embedding.clone(),
                crop_jpeg: f.crop_jpeg.clone().filter(|_| self.settings.keep_crops),
                // Made with this gallery's model: its chips.
                crop_points: f
                    .crop_jpeg
                    .as_ref()
                    .filter(|_| self.settings.keep_crops)
                    .map(|_| self.pipeline.crop_points().pixels()),
                masked: false,
                created_at: now,
            })
            .collect();
        self.writes.commit(|tx| {
            if tx.reader().gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            for (face, record) in faces.iter().zip(&records) {
                self.add_template_in(tx, client, gallery, &face.user_id, &face.user_name, record)?;
            }
            Ok(())
        })
    }

    /// An enrollment's writes in its transaction: the user (counted against the faces
    /// quota when new), the template (the oldest dropped beyond the cap), their index
    /// edits and the `upsert_user` operation. Returns (new user, templates kept).
    fn add_template_in(
        &self,
        tx: &mut Tx<'_, '_, '_>,
        client: &str,
        gallery: &str,
        user_id: &str,
        user_name: &str,
        record: &TemplateRecord,
    ) -> Result<(bool, usize), Error> {
        let cap = self.settings.max_templates_per_user;
        let face_quota = self.accounts.quota().faces;
        let now = tx.now_secs();
        let existing = tx.reader().user(client, gallery, user_id)?;
        let new_user = existing.is_none();
        if new_user {
            let mut counters = tx.reader().counters(client)?;
            if face_quota > 0 && counters.faces >= face_quota {
                return Err(Error::QuotaExhausted(QuotaKind::Faces));
            }
            counters.faces += 1;
            tx.put_counters(client, &counters)?;
        }
        let user = UserRecord {
            user_name: user_name.to_string(),
            created_at: existing.map(|u| u.created_at).unwrap_or(now),
            updated_at: now,
        };
        tx.put_user(client, gallery, user_id, &user)?;
        let old = tx.reader().templates_of(client, gallery, user_id)?;
        let excess = (old.len() + 1).saturating_sub(cap);
        for (id, _) in old.iter().take(excess) {
            tx.delete_template(client, gallery, user_id, *id)?;
            tx.index_remove_template(client, gallery, *id);
        }
        let added = tx.add_template(client, gallery, user_id, record)?;
        tx.index_insert(client, gallery, user_id, added, &record.embedding);
        tx.publish(Change::FaceEnrolled {
            client,
            gallery,
            user_id,
        })?;
        Ok((new_user, old.len() + 1 - excess))
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
        let templates: Vec<vision::Embedding> = templates
            .iter()
            .filter(|(_, t)| t.fingerprint == fingerprint)
            .filter_map(|(_, t)| vision::Embedding::from_raw(&t.embedding))
            .collect();
        let best_cosine = |query: &vision::Embedding| {
            templates
                .iter()
                .map(|t| query.cosine(t))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        let face = self.largest_face_deciding(image, self.settings.verify_threshold, 1, &|e| {
            Some(best_cosine(e))
                .filter(|c| c.is_finite())
                .into_iter()
                .collect()
        })?;
        let best = best_cosine(&face.embedding);
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
        Ok(self
            .identify_top(client, gallery, image, 1)?
            .into_iter()
            .next())
    }

    /// 1:N: up to `max_results` users whose best template reaches the identify
    /// threshold, best first (each user once).
    pub fn identify_top(
        &self,
        client: &str,
        gallery: &str,
        image: &[u8],
        max_results: usize,
    ) -> Result<Vec<IdentifyMatch>, Error> {
        self.require_gallery(client, gallery)?;
        // The search made for the single embedding's decision is the answer too when
        // the mirror was not needed (one search per request at any gallery size).
        // One candidate more than listed: whether the runner-up could swap in decides
        // the mirror too (src/vision/flip.rs).
        // The open-set normalisation may need more runners-up than that.
        let candidates = self
            .pipeline
            .identify_candidates(max_results.saturating_add(1));
        let first_search = std::cell::RefCell::new(None);
        let face = self.largest_face_deciding(
            image,
            self.settings.identify_threshold,
            max_results,
            &|e| {
                let found = self.search_index(client, gallery, &e.0, candidates);
                let cosines = found
                    .as_ref()
                    .map(|matches| matches.iter().map(|m| m.cosine).collect())
                    .unwrap_or_default();
                *first_search.borrow_mut() = Some((e.clone(), found));
                cosines
            },
        )?;
        let found = match first_search.into_inner() {
            Some((single, found)) if single == face.embedding => found?,
            _ => self.search_index(client, gallery, &face.embedding.0, candidates)?,
        };
        let cosines: Vec<f32> = found.iter().map(|m| m.cosine).collect();
        let users = self.index().users(client, gallery);
        let scores = self.pipeline.identify_scores(&cosines, users);
        let found: Vec<_> = scores
            .into_iter()
            .zip(found)
            .take(max_results)
            .filter(|(confidence, _)| *confidence >= self.settings.identify_threshold)
            .collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        // The index and the store are updated under one lock; a user missing here was
        // deleted between the search and this read: not a match.
        self.store.read(|r| {
            let mut out = Vec::with_capacity(found.len());
            for (confidence, m) in &found {
                if let Some(user) = r.user(client, gallery, &m.user_id)? {
                    out.push(IdentifyMatch {
                        user_id: m.user_id.to_string(),
                        user_name: user.user_name,
                        confidence: *confidence,
                        masked: face.masked,
                    });
                }
            }
            Ok(out)
        })
    }

    /// compare-images: the largest face of each picture; nothing is stored.
    pub fn compare(&self, source: &[u8], target: &[u8]) -> Result<CompareOutcome, Error> {
        const ROLES: [ImageRole; 2] = [ImageRole::Source, ImageRole::Target];
        let faces = self
            .pipeline
            .analyze_all_bytes(&[source, target], FaceSelection::Largest)
            .map_err(|(i, e)| Error::image(ROLES[i.min(1)], e))?;
        let mut largest = faces
            .into_iter()
            .zip(ROLES)
            .map(|(faces, role)| faces.into_iter().next().ok_or(Error::NoFace(role)));
        let (Some(s), Some(t)) = (largest.next(), largest.next()) else {
            // analyze_all_bytes answers one list per picture, two pictures were given.
            return Err(Error::NoFace(ImageRole::Source));
        };
        let (s, t) = (s?, t?);
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
        self.writes.commit(|tx| {
            if tx.reader().gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            if tx.reader().user(client, gallery, user_id)?.is_none() {
                return Err(Error::UserNotFound);
            }
            tx.delete_user(client, gallery, user_id)?;
            tx.index_remove_user(client, gallery, user_id);
            let mut counters = tx.reader().counters(client)?;
            counters.faces = counters.faces.saturating_sub(1);
            tx.put_counters(client, &counters)?;
            tx.publish(Change::FaceDeleted {
                client,
                gallery,
                user_id,
            })
        })
    }
}
