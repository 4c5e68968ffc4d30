//! In-memory 1:N search: per gallery, every template as two tiers of 4-bit codes with
//! per-vector scales (half a byte per dimension each); the coarse tier is scanned in
//! full with a vectorised integer dot product, then the rows it keeps are re-scored with
//! the fine tier and re-ranked with their f32 embeddings (which the caller fetches from
//! the store), best bound first, until no bound left can change the answer; so every
//! answer equals an f32 brute force (see [`GalleryIndex::search`] for the bounds that
//! decide how many).
//!
//! Built from the store at start and updated by `gallery` in the same code path as
//! every store write. Public face: [`Index`] (all galleries, thread-safe) and
//! [`GalleryIndex`] (one gallery; used directly by the benchmarks).

mod gallery_index;
mod quantized;
mod simd;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use gallery_index::{Found, GalleryIndex, Match, MAX_DIM, MAX_TEMPLATES};
pub use quantized::{dot_f32, normalized};

/// Why the index refused an embedding or a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("embedding has {got} dimensions, the gallery's index holds {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("embedding dimension {0} is outside 1..={MAX_DIM}")]
    BadDimension(usize),
    #[error("embedding is zero or not finite")]
    NotAVector,
    #[error("the gallery holds {0} templates, the most one index can search")]
    GalleryFull(usize),
}

/// client -> gallery -> index: looked up with borrowed names (no allocation per insert
/// or search).
type Galleries = HashMap<String, HashMap<String, Arc<RwLock<GalleryIndex>>>>;

/// Every gallery's index. Each gallery has its own lock, so a search in one gallery
/// never waits for a write to another.
#[derive(Default)]
pub struct Index {
    galleries: RwLock<Galleries>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("templates", &self.len())
            .finish()
    }
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    fn get(&self, client: &str, gallery: &str) -> Option<Arc<RwLock<GalleryIndex>>> {
        let map = self.galleries.read().unwrap_or_else(|e| e.into_inner());
        map.get(client)?.get(gallery).cloned()
    }

    fn get_or_create(&self, client: &str, gallery: &str) -> Arc<RwLock<GalleryIndex>> {
        if let Some(g) = self.get(client, gallery) {
            return g;
        }
        let mut map = self.galleries.write().unwrap_or_else(|e| e.into_inner());
        map.entry(client.to_string())
            .or_default()
            .entry(gallery.to_string())
            .or_default()
            .clone()
    }

    /// Adds a template (the embedding is normalised here). Refused: a dimension other
    /// than the gallery's, a zero vector.
    pub fn insert(
        &self,
        client: &str,
        gallery: &str,
        user_id: &str,
        template_id: u64,
        embedding: &[f32],
    ) -> Result<(), Error> {
        let g = self.get_or_create(client, gallery);
        let mut g = g.write().unwrap_or_else(|e| e.into_inner());
        g.insert(user_id, template_id, embedding)
    }

    pub fn remove_template(&self, client: &str, gallery: &str, template_id: u64) {
        if let Some(g) = self.get(client, gallery) {
            g.write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_template(template_id);
        }
    }

    pub fn remove_user(&self, client: &str, gallery: &str, user_id: &str) {
        if let Some(g) = self.get(client, gallery) {
            g.write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_user(user_id);
        }
    }

    pub fn remove_gallery(&self, client: &str, gallery: &str) {
        let mut map = self.galleries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(galleries) = map.get_mut(client) {
            galleries.remove(gallery);
            if galleries.is_empty() {
                map.remove(client);
            }
        }
    }

    /// The `k` users of a gallery with the most similar templates, best first (see
    /// [`GalleryIndex::search`]; `exact` writes a candidate's f32 embedding into its
    /// buffer and says whether it exists).
    pub fn search<E: From<Error>>(
        &self,
        client: &str,
        gallery: &str,
        query: &[f32],
        k: usize,
        exact: impl FnMut(&str, u64, &mut Vec<f32>) -> Result<bool, E>,
    ) -> Result<Vec<Match>, E> {
        let Some(g) = self.get(client, gallery) else {
            return Ok(Vec::new());
        };
        let g = g.read().unwrap_or_else(|e| e.into_inner());
        Ok(g.search(query, k, exact)?.matches)
    }

    /// Users with a searchable template in a gallery (what a stranger's best match is
    /// the best of: the open-set score of src/vision/open_set.rs depends on it).
    pub fn users(&self, client: &str, gallery: &str) -> usize {
        self.get(client, gallery)
            .map_or(0, |g| g.read().unwrap_or_else(|e| e.into_inner()).users())
    }

    /// Gives back the spare room of every gallery's arrays (after building at start).
    pub fn shrink_to_fit(&self) {
        let map = self.galleries.read().unwrap_or_else(|e| e.into_inner());
        for g in map.values().flat_map(|galleries| galleries.values()) {
            g.write().unwrap_or_else(|e| e.into_inner()).shrink_to_fit();
        }
    }

    /// Templates in all galleries.
    pub fn len(&self) -> usize {
        self.each(|g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap memory of all galleries, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.each(|g| g.memory_bytes())
    }

    fn each(&self, f: impl Fn(&GalleryIndex) -> usize) -> usize {
        let map = self.galleries.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .flat_map(|galleries| galleries.values())
            .map(|g| f(&g.read().unwrap_or_else(|e| e.into_inner())))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 128];
        v[i] = 1.0;
        v
    }

    fn best(index: &Index, client: &str) -> Option<String> {
        index
            .search(client, "g", &unit(0), 1, |_, _, out| {
                out.extend_from_slice(&unit(0));
                Ok::<_, Error>(true)
            })
            .unwrap()
            .first()
            .map(|m| m.user_id.to_string())
    }

    #[test]
    fn galleries_are_searched_separately() {
        let index = Index::new();
        index.insert("c1", "g", "alice", 1, &unit(0)).unwrap();
        index.insert("c2", "g", "bob", 2, &unit(0)).unwrap();
        assert_eq!(best(&index, "c1").as_deref(), Some("alice"));
        assert_eq!(best(&index, "c2").as_deref(), Some("bob"));
        assert_eq!(best(&index, "c3"), None);
        index.remove_gallery("c1", "g");
        assert_eq!(best(&index, "c1"), None);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn each_gallery_has_its_own_dimension() {
        let index = Index::new();
        index.insert("c", "small", "a", 1, &[1.0; 128]).unwrap();
        index.insert("c", "large", "a", 2, &[1.0; 512]).unwrap();
        assert_eq!(
            index.insert("c", "small", "b", 3, &[1.0; 512]),
            Err(Error::DimensionMismatch {
                expected: 128,
                got: 512
            })
        );
        assert_eq!(index.len(), 2);
    }
}
