//! One gallery's templates as a contiguous row-major matrix of unit vectors.

use std::collections::HashMap;
use std::sync::Arc;

/// The best template found by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub user_id: Arc<str>,
    pub template_id: u64,
    /// Cosine similarity between the query and the template.
    pub cosine: f32,
}

#[derive(Debug, Default)]
pub struct GalleryIndex {
    dim: usize,
    /// `rows.len() * dim` floats, row `i` is template `ids[i]`.
    vectors: Vec<f32>,
    ids: Vec<u64>,
    users: Vec<Arc<str>>,
    /// template id -> row.
    rows: HashMap<u64, usize>,
    /// Interned user ids with their number of templates (one allocation per user).
    user_refs: HashMap<Arc<str>, u32>,
}

impl GalleryIndex {
    pub fn new() -> GalleryIndex {
        GalleryIndex::default()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds (or replaces) a template; the embedding is stored normalised. A vector whose
    /// length differs from the gallery's first one is ignored (another embedding space).
    pub fn insert(&mut self, user_id: &str, template_id: u64, embedding: &[f32]) {
        if self.ids.is_empty() {
            self.dim = embedding.len();
        }
        if embedding.len() != self.dim || self.dim == 0 {
            return;
        }
        self.remove_template(template_id);
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        self.vectors.extend(embedding.iter().map(|v| v * scale));
        self.rows.insert(template_id, self.ids.len());
        self.ids.push(template_id);
        let user = match self.user_refs.get_key_value(user_id) {
            Some((user, _)) => user.clone(),
            None => Arc::from(user_id),
        };
        *self.user_refs.entry(user.clone()).or_insert(0) += 1;
        self.users.push(user);
    }

    pub fn remove_template(&mut self, template_id: u64) -> bool {
        let Some(row) = self.rows.remove(&template_id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if row != last {
            let (head, tail) = self.vectors.split_at_mut(last * self.dim);
            head[row * self.dim..(row + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.ids.swap(row, last);
            self.users.swap(row, last);
            self.rows.insert(self.ids[row], row);
        }
        self.vectors.truncate(last * self.dim);
        self.ids.pop();
        if let Some(user) = self.users.pop() {
            if let Some(n) = self.user_refs.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    self.user_refs.remove(&user);
                }
            }
        }
        true
    }

    pub fn remove_user(&mut self, user_id: &str) -> usize {
        let doomed: Vec<u64> = self
            .ids
            .iter()
            .zip(&self.users)
            .filter(|(_, u)| u.as_ref() == user_id)
            .map(|(id, _)| *id)
            .collect();
        for id in &doomed {
            self.remove_template(*id);
        }
        doomed.len()
    }

    /// The template with the highest cosine similarity to `query`.
    pub fn search(&self, query: &[f32]) -> Option<Match> {
        if query.len() != self.dim || self.ids.is_empty() {
            return None;
        }
        let norm = query.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm <= 0.0 || !norm.is_finite() {
            return None;
        }
        let q: Vec<f32> = query.iter().map(|v| v / norm).collect();
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (row, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            let d = dot(&q, v);
            if d > best.0 {
                best = (d, row);
            }
        }
        Some(Match {
            user_id: self.users[best.1].clone(),
            template_id: self.ids[best.1],
            cosine: best.0,
        })
    }

    /// Approximate heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.ids.capacity() * 8
            + self.users.capacity() * 16
            + self.rows.capacity() * 24
            + self
                .user_refs
                .keys()
                .map(|u| u.len() + 16 + 16 + 4)
                .sum::<usize>()
    }
}

/// Dot product with eight independent accumulators (lets the compiler vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (x, y) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seed: u64) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..128)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn search_finds_the_template_itself_as_best_match() {
        let mut g = GalleryIndex::new();
        for i in 0..500 {
            g.insert(&format!("user{}", i / 5), i, &v(i));
        }
        let m = g.search(&v(123)).unwrap();
        assert_eq!(m.template_id, 123);
        assert_eq!(m.user_id.as_ref(), "user24");
        assert!((m.cosine - 1.0).abs() < 1e-5);
    }

    #[test]
    fn removed_templates_and_users_are_never_found() {
        let mut g = GalleryIndex::new();
        for i in 0..20 {
            g.insert(&format!("user{}", i / 5), i, &v(i));
        }
        assert!(g.remove_template(7));
        assert_ne!(g.search(&v(7)).unwrap().template_id, 7);
        assert_eq!(g.remove_user("user0"), 5);
        assert_eq!(g.len(), 14);
        for i in 0..20 {
            let m = g.search(&v(i)).unwrap();
            assert_ne!(m.user_id.as_ref(), "user0");
            if i >= 5 && i != 7 {
                assert_eq!(m.template_id, i);
            }
        }
    }

    #[test]
    fn user_ids_are_interned_and_released_with_their_last_template() {
        let mut g = GalleryIndex::new();
        g.insert("amy", 1, &v(1));
        g.insert("amy", 2, &v(2));
        g.insert("raj", 3, &v(3));
        assert_eq!(g.user_refs.len(), 2);
        assert_eq!(g.user_refs["amy"], 2);
        g.remove_user("amy");
        assert_eq!(g.user_refs.len(), 1);
        g.remove_template(3);
        assert!(g.user_refs.is_empty() && g.is_empty());
    }

    #[test]
    fn an_empty_gallery_has_no_match() {
        assert!(GalleryIndex::new().search(&v(1)).is_none());
    }
}
