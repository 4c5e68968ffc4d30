//! What can go wrong in a use case, in the domain's terms. `api` maps each variant to
//! one status code, in one place.

use crate::{store, vision};

/// Which picture of a request an image error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageRole {
    /// `image` (enroll, verify, identify).
    Image,
    /// `source_image` (compare).
    Source,
    /// `target_image` (compare).
    Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaKind {
    ApiHits,
    Faces,
    Galleries,
}

/// An id (gallery id, user id) must fit the store's keys: at most
/// [`crate::store::MAX_ID_BYTES`] bytes of UTF-8 (120 emoji are 480 bytes).
pub fn check_id(what: &str, id: &str) -> Result<(), Error> {
    if id.len() > crate::store::MAX_ID_BYTES {
        return Err(Error::InvalidName(format!(
            "{what} is {} bytes, at most {} allowed",
            id.len(),
            crate::store::MAX_ID_BYTES
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("access token missing or not valid")]
    Unauthorized,
    /// A valid token whose scope does not cover this route (a kiosk token elsewhere).
    #[error("the access token's scope does not allow this")]
    OutOfScope,
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("quota exhausted: {0:?}")]
    QuotaExhausted(QuotaKind),
    #[error("facegallery_id not found")]
    GalleryNotFound,
    #[error("facegallery_id already exists")]
    GalleryExists,
    #[error("user_id not found")]
    UserNotFound,
    #[error("no face detected in {0:?}")]
    NoFace(ImageRole),
    #[error("face too small: {face_px:.0} px, at least {min_px:.0} px needed")]
    FaceTooSmall { face_px: f32, min_px: f32 },
    #[error("{role:?}: {source}")]
    Image {
        role: ImageRole,
        source: vision::Error,
    },
    #[error("client {0} not found")]
    UnknownClient(String),
    #[error("client {0} already exists")]
    ClientExists(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("recognition failed: {0}")]
    Vision(vision::Error),
    #[error("stored face crop cannot be encoded: {0}")]
    Crop(String),
    #[error("index: {0}")]
    Index(crate::index::Error),
}

impl Error {
    /// Every inference session stayed busy: the work can be tried again later.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Vision(crate::vision::Error::Busy(_)))
    }

    /// An error from decoding or analysing the picture in `role`: decoding problems
    /// are the caller's, runtime problems are ours.
    pub(crate) fn image(role: ImageRole, source: vision::Error) -> Error {
        match source {
            vision::Error::Decode(_) => Error::Image { role, source },
            other => Error::Vision(other),
        }
    }
}
