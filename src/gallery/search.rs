//! The gallery's side of the 1:N index: searches re-rank their candidates with the f32
//! embeddings kept in the store (read in the search's own read transaction), and index
//! updates that the index refuses are logged, never fatal.

use super::{Error, Gallery};
use crate::index::{self, Index, Match};

impl Gallery {
    /// The `k` users whose templates are most similar to `embedding`, best first: the
    /// same answer as an f32 brute force over the stored templates.
    pub fn search_index(
        &self,
        client: &str,
        gallery: &str,
        embedding: &[f32],
        k: usize,
    ) -> Result<Vec<Match>, Error> {
        let fingerprint = self.pipeline.fingerprint();
        self.store.read(|r| {
            self.index()
                .search(client, gallery, embedding, k, |user, id, out| {
                    Ok::<_, Error>(r.template_vector_into(
                        client,
                        gallery,
                        user,
                        id,
                        fingerprint,
                        out,
                    )?)
                })
        })
    }
}

/// Adds a template to the index; one the index refuses (another dimension than its
/// gallery's, a zero vector) stays in the store, unsearchable, and is logged.
pub(crate) fn index_insert(
    index: &Index,
    client: &str,
    gallery: &str,
    user_id: &str,
    template_id: u64,
    embedding: &[f32],
) {
    if let Err(error) = index.insert(client, gallery, user_id, template_id, embedding) {
        tracing::warn!(
            %client, %gallery, %user_id, template_id, %error,
            "template not searchable"
        );
    }
}

impl From<index::Error> for Error {
    fn from(e: index::Error) -> Error {
        Error::Index(e)
    }
}
