//! The Face API's endpoints: path, accepted methods, request fields. Routing,
//! method checks and /openapi.json all read this one table.

use axum::http::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ClientRegister,
    ClientDelete,
    GetCounters,
    MyGalleries,
    CreateGallery,
    DeleteGallery,
    Enroll,
    EnrollKtp,
    ListFaces,
    Verify,
    Identify,
    DeleteFace,
    Compare,
}

/// (name, JSON type, required)
pub type FieldSpec = (&'static str, &'static str, bool);

const TRX: FieldSpec = ("trx_id", "string", false);
const GALLERY: FieldSpec = ("facegallery_id", "string", true);
const USER: FieldSpec = ("user_id", "string", true);
const NAME: FieldSpec = ("user_name", "string", true);
const IMAGE: FieldSpec = ("image", "string", true);

const GET_POST: &[Method] = &[Method::GET, Method::POST];
const POST: &[Method] = &[Method::POST];
const DELETE_POST: &[Method] = &[Method::DELETE, Method::POST];

impl Endpoint {
    pub const ALL: [Endpoint; 13] = [
        Endpoint::ClientRegister,
        Endpoint::ClientDelete,
        Endpoint::GetCounters,
        Endpoint::MyGalleries,
        Endpoint::CreateGallery,
        Endpoint::DeleteGallery,
        Endpoint::Enroll,
        Endpoint::EnrollKtp,
        Endpoint::ListFaces,
        Endpoint::Verify,
        Endpoint::Identify,
        Endpoint::DeleteFace,
        Endpoint::Compare,
    ];

    /// Path below `/face-api/` (and `/risetai/face-api/`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ClientRegister => "client/register",
            Endpoint::ClientDelete => "client/delete",
            Endpoint::GetCounters => "client/get-counters",
            Endpoint::MyGalleries => "facegallery/my-facegalleries",
            Endpoint::CreateGallery => "facegallery/create-facegallery",
            Endpoint::DeleteGallery => "facegallery/delete-facegallery",
            Endpoint::Enroll => "facegallery/enroll-face",
            Endpoint::EnrollKtp => "facegallery/enroll-face-ktp",
            Endpoint::ListFaces => "facegallery/list-faces",
            Endpoint::Verify => "facegallery/verify-face",
            Endpoint::Identify => "facegallery/identify-face",
            Endpoint::DeleteFace => "facegallery/delete-face",
            Endpoint::Compare => "compare-images",
        }
    }

    pub fn methods(self) -> &'static [Method] {
        match self {
            Endpoint::GetCounters | Endpoint::ListFaces | Endpoint::MyGalleries => GET_POST,
            Endpoint::ClientDelete | Endpoint::DeleteGallery | Endpoint::DeleteFace => DELETE_POST,
            _ => POST,
        }
    }

    /// Runs the models (bounded by the inference permits).
    pub fn needs_inference(self) -> bool {
        matches!(
            self,
            Endpoint::Enroll
                | Endpoint::EnrollKtp
                | Endpoint::Verify
                | Endpoint::Identify
                | Endpoint::Compare
        )
    }

    pub fn fields(self) -> Vec<FieldSpec> {
        match self {
            Endpoint::ClientRegister | Endpoint::ClientDelete | Endpoint::MyGalleries => vec![TRX],
            Endpoint::GetCounters => vec![TRX],
            Endpoint::CreateGallery | Endpoint::DeleteGallery | Endpoint::ListFaces => {
                vec![GALLERY, TRX]
            }
            Endpoint::Enroll => vec![
                USER,
                NAME,
                GALLERY,
                ("force_register", "boolean", false),
                IMAGE,
                TRX,
            ],
            Endpoint::EnrollKtp => vec![
                USER,
                NAME,
                GALLERY,
                IMAGE,
                TRX,
                ("minimum_similarity", "number", false),
            ],
            Endpoint::Verify => vec![USER, GALLERY, IMAGE, TRX],
            Endpoint::Identify => vec![GALLERY, IMAGE, TRX],
            Endpoint::DeleteFace => vec![USER, GALLERY, TRX],
            Endpoint::Compare => vec![
                ("source_image", "string", true),
                ("target_image", "string", true),
                TRX,
            ],
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Endpoint::ClientRegister => "Create the client's default gallery <client>@trial",
            Endpoint::ClientDelete => "Remove all of the client's galleries and faces",
            Endpoint::GetCounters => "Remaining quota: API hits, faces, galleries",
            Endpoint::MyGalleries => "List the client's galleries",
            Endpoint::CreateGallery => "Create a gallery",
            Endpoint::DeleteGallery => "Delete a gallery with its faces",
            Endpoint::Enroll => "Enroll the largest face of an image for a user",
            Endpoint::EnrollKtp => "Enroll the live face if it matches the ID-card photo",
            Endpoint::ListFaces => "List the users enrolled in a gallery",
            Endpoint::Verify => "1:1 - does the image show this user",
            Endpoint::Identify => "1:N - who in the gallery is in the image",
            Endpoint::DeleteFace => "Delete a user and their templates",
            Endpoint::Compare => "Compare the largest faces of two images",
        }
    }
}
