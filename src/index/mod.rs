//! In-memory 1:N search: per gallery, every template's unit-length embedding in one
//! contiguous `f32` array, searched by brute force (a dot product per template).
//!
//! Built from the store at start and updated by `gallery` in the same code path as
//! every store write. Public face: [`Index`] (all galleries, thread-safe) and
//! [`GalleryIndex`] (one gallery; used directly by the benchmark).

mod gallery_index;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use gallery_index::{GalleryIndex, Match};

type Key = (String, String);

/// Every gallery's index. Each gallery has its own lock, so a search in one gallery
/// never waits for a write to another.
#[derive(Default)]
pub struct Index {
    galleries: RwLock<HashMap<Key, Arc<RwLock<GalleryIndex>>>>,
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
        map.get(&(client.to_string(), gallery.to_string())).cloned()
    }

    fn get_or_create(&self, client: &str, gallery: &str) -> Arc<RwLock<GalleryIndex>> {
        if let Some(g) = self.get(client, gallery) {
            return g;
        }
        let mut map = self.galleries.write().unwrap_or_else(|e| e.into_inner());
        map.entry((client.to_string(), gallery.to_string()))
            .or_default()
            .clone()
    }

    /// Adds a template (the embedding is normalised here).
    pub fn insert(
        &self,
        client: &str,
        gallery: &str,
        user_id: &str,
        template_id: u64,
        embedding: &[f32],
    ) {
        let g = self.get_or_create(client, gallery);
        let mut g = g.write().unwrap_or_else(|e| e.into_inner());
        g.insert(user_id, template_id, embedding);
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
        map.remove(&(client.to_string(), gallery.to_string()));
    }

    /// The best-matching template in a gallery (cosine similarity), if it has any.
    pub fn search(&self, client: &str, gallery: &str, query: &[f32]) -> Option<Match> {
        let g = self.get(client, gallery)?;
        let g = g.read().unwrap_or_else(|e| e.into_inner());
        g.search(query)
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

    #[test]
    fn galleries_are_searched_separately() {
        let index = Index::new();
        index.insert("c1", "g", "alice", 1, &unit(0));
        index.insert("c2", "g", "bob", 2, &unit(0));
        assert_eq!(
            index.search("c1", "g", &unit(0)).unwrap().user_id.as_ref(),
            "alice"
        );
        assert_eq!(
            index.search("c2", "g", &unit(0)).unwrap().user_id.as_ref(),
            "bob"
        );
        assert!(index.search("c3", "g", &unit(0)).is_none());
        index.remove_gallery("c1", "g");
        assert!(index.search("c1", "g", &unit(0)).is_none());
        assert_eq!(index.len(), 1);
    }
}
