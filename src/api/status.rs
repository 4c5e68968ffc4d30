//! The status codes of the Face API and the ONE mapping from domain errors to them.

use crate::gallery::{Error, ImageRole};
use crate::vision::{self, DecodeError};

/// A body status code (sent as a string) with its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const MALFORMED: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const DENIED: Status = Status(403);
    /// Not in the original list: create-facegallery with an id that exists.
    pub const GALLERY_EXISTS: Status = Status(409);
    pub const NOT_VERIFIED: Status = Status(411);
    pub const NO_FACE: Status = Status(412);
    pub const FACE_TOO_SMALL: Status = Status(413);
    pub const USER_NOT_FOUND: Status = Status(415);
    pub const GALLERY_NOT_FOUND: Status = Status(416);
    pub const IMAGE_MISSING: Status = Status(451);
    pub const USER_ID_MISSING: Status = Status(452);
    pub const USER_NAME_MISSING: Status = Status(453);
    pub const GALLERY_ID_MISSING: Status = Status(454);
    pub const TARGET_MISSING: Status = Status(455);
    pub const SOURCE_MISSING: Status = Status(456);
    pub const IMAGE_BASE64: Status = Status(490);
    pub const IMAGE_TYPE: Status = Status(491);
    pub const TARGET_BASE64: Status = Status(492);
    pub const IMAGE_BROKEN: Status = Status(493);
    pub const SOURCE_BASE64: Status = Status(494);
    pub const SOURCE_TYPE: Status = Status(495);
    /// Not in the original list: target_image is not JPEG or PNG (symmetry with 491/495).
    pub const TARGET_TYPE: Status = Status(496);
    /// Not in the original list: request body over `server.body_limit_bytes`
    /// (413 is taken by "face too small"; the HTTP status line says 413).
    pub const BODY_TOO_LARGE: Status = Status(498);
    /// Not in the original list: the token endpoints after too many failed logins
    /// (per client name or in all), refused before any password hashing.
    pub const TOO_MANY_ATTEMPTS: Status = Status(429);
    /// Not in the original list: the body did not arrive within `server.body_timeout_secs`.
    pub const BODY_TIMEOUT: Status = Status(408);
    /// Not in the original list: the URI is over 8 KiB.
    pub const URI_TOO_LONG: Status = Status(414);
    /// Not in the original list: the request's headers are over 32 KiB or 100 lines.
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    pub const SERVER_ERROR: Status = Status(500);
    /// Not in the original list: every inference session is busy and the queue is full,
    /// or the request waited `runtime.queue_timeout_ms` without getting one.
    pub const BUSY: Status = Status(503);

    pub fn message(self) -> &'static str {
        match self.0 {
            200 => "Success",
            400 => "Request malformed",
            401 => "Access token not authorized",
            403 => "Requested resource denied",
            409 => "facegallery_id already exists",
            411 => "Face not verified or not registered",
            412 => "Face not detected",
            413 => "Face too small",
            415 => "user_id not found",
            416 => "facegallery_id not found",
            451 => "image is null",
            452 => "user_id is null",
            453 => "user_name is null",
            454 => "facegallery_id is null",
            455 => "target_image is null",
            456 => "source_image is null",
            490 => "Cannot decode image base64",
            491 => "image type not recognized",
            492 => "Cannot decode target_image base64",
            493 => "image error: broken, truncated or too large",
            494 => "Cannot decode source_image base64",
            495 => "source_image type not recognized",
            496 => "target_image type not recognized",
            408 => "Request body not received in time",
            414 => "Request URI too long",
            429 => "Too many failed logins, retry later",
            431 => "Request headers too large",
            498 => "Request body too large",
            503 => "Service busy, retry later",
            _ => "Server error",
        }
    }

    /// The status of a base64 field that does not decode.
    pub fn bad_base64(role: ImageRole) -> Status {
        match role {
            ImageRole::Image => Status::IMAGE_BASE64,
            ImageRole::Source => Status::SOURCE_BASE64,
            ImageRole::Target => Status::TARGET_BASE64,
        }
    }

    /// The ONE mapping from domain errors to status codes.
    pub fn of(error: &Error) -> Status {
        match error {
            Error::Unauthorized => Status::UNAUTHORIZED,
            Error::TooManyAttempts { .. } => Status::TOO_MANY_ATTEMPTS,
            Error::QuotaExhausted(_) | Error::OutOfScope => Status::DENIED,
            Error::GalleryNotFound => Status::GALLERY_NOT_FOUND,
            Error::GalleryExists => Status::GALLERY_EXISTS,
            Error::UserNotFound => Status::USER_NOT_FOUND,
            Error::NoFace(_) => Status::NO_FACE,
            Error::FaceTooSmall { .. } => Status::FACE_TOO_SMALL,
            Error::Image { role, source } => match (role, source) {
                (ImageRole::Image, vision::Error::Decode(DecodeError::UnsupportedFormat)) => {
                    Status::IMAGE_TYPE
                }
                (ImageRole::Source, vision::Error::Decode(DecodeError::UnsupportedFormat)) => {
                    Status::SOURCE_TYPE
                }
                (ImageRole::Target, vision::Error::Decode(DecodeError::UnsupportedFormat)) => {
                    Status::TARGET_TYPE
                }
                _ => Status::IMAGE_BROKEN,
            },
            Error::UnknownClient(_) | Error::ClientExists(_) | Error::InvalidName(_) => {
                Status::MALFORMED
            }
            Error::Vision(vision::Error::Busy(_)) => Status::BUSY,
            Error::Store(_) | Error::Vision(_) | Error::Crop(_) | Error::Index(_) => {
                Status::SERVER_ERROR
            }
        }
    }

    /// The HTTP status line for this body status under the "mirror" rule: the same
    /// code, except 498 (body too large) which is HTTP 413.
    pub fn http_mirror(self) -> u16 {
        match self.0 {
            498 => 413,
            code => code,
        }
    }
}
