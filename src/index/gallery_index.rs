//! One gallery's templates: two tiers of 4-bit codes with per-vector scales and error
//! bounds (`quantized.rs`), the coarse tier scanned in full for every search, then the
//! rows it keeps taken best bound first, re-scored with the fine tier and re-ranked
//! exactly in f32 only until the bounds settle the answer (`search.rs`).
//!
//! Memory per template (d = embedding dimension, padded to a multiple of 64): d / 2
//! bytes of coarse codes + d / 2 of fine codes + 16 (two scales, two error bounds) + 8
//! (template id) + 16 (user id handle) + the id -> row map entry (~17-34 bytes with the
//! hash table's spare room), plus one interned string per user. 128-d: ~190 bytes (the
//! f32 brute force it replaced held ~560). The scan reads 72 of them (coarse codes,
//! scale, error). The f32 embeddings stay in the store; the search asks the caller for
//! the few it re-ranks.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

mod lines;
mod search;

use super::quantized::{normalize_into, padded_dim, quantize4};
use super::Error;
use lines::LineBytes;

/// Largest embedding dimension: keeps the integer dot products far from i32 overflow
/// (127 * 15 * 65,536 < 2^31) and matches the store's u16 dimension field.
pub const MAX_DIM: usize = 65_535;

/// Templates in one gallery at most: a row number fits 32 bits in the search's keys
/// (memory runs out long before: ~200 bytes a template).
pub const MAX_TEMPLATES: usize = u32::MAX as usize;

/// Rows the coarse scan keeps: 1/64 of the gallery between these bounds (see
/// `search::coarse_candidates`).
const COARSE_KEPT: (usize, usize) = (128, 4096);

/// Rows whose coarse bounds are computed in one kernel call (2 KB of f32 bounds and a
/// 64-byte mask on the stack; one CPU-feature dispatch per block). The floors the kernel
/// compares with rise between calls.
const BLOCK_ROWS: usize = 512;

/// A fast hash for the index's own keys (template ids, user ids): the start-up build
/// inserts every template once, and SipHash's resistance to chosen keys buys nothing for
/// ids the daemon assigns itself (user ids are the client's own, in its own gallery).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The multiplications mix upwards only, and hashbrown takes the bucket from the
        // low bits: finish with MurmurHash3's 64-bit mixer (every bit affects all).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517C_C1B7_2722_0A95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A template found by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub user_id: Arc<str>,
    pub template_id: u64,
    /// Cosine similarity between the query and the template (exact, f32).
    pub cosine: f32,
}

/// A search's answer and what it cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// Best template of each of the best users, best first; ties by template id.
    pub matches: Vec<Match>,
    /// Templates whose f32 embedding was fetched and scored exactly.
    pub reranked: usize,
    /// Templates re-scored with the fine codes.
    pub refined: usize,
    /// Passes over the coarse codes (1 unless the bounds made the candidate set grow).
    pub scans: usize,
}

#[derive(Debug, Default)]
pub struct GalleryIndex {
    /// 0 until the first insert, unless given to [`GalleryIndex::with_dim`].
    dim: usize,
    fixed_dim: bool,
    /// `dim` rounded up to a multiple of 64; a row of codes is `padded / 2` bytes.
    padded: usize,
    /// `len() * padded / 2` packed 4-bit codes; row `i` is template `ids[i]`. Starts
    /// on a cache line (the scan reads it all).
    coarse: LineBytes,
    /// The coarse residual's codes, same layout.
    fine: Vec<u8>,
    coarse_scales: Vec<f32>,
    /// Per row: `||v - coarse||`, rounded up.
    coarse_errors: Vec<f32>,
    fine_scales: Vec<f32>,
    /// Per row: `||v - coarse - fine||`, rounded up.
    fine_errors: Vec<f32>,
    ids: Vec<u64>,
    users: Vec<Arc<str>>,
    /// template id -> row.
    rows: IdMap<u64, usize>,
    /// Interned user ids with their number of templates (one allocation per user).
    user_refs: IdMap<Arc<str>, u32>,
    /// Work buffers of `insert` (the normalised vector and residuals), kept so that a
    /// bulk build allocates nothing per template.
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct Scratch {
    unit: Vec<f32>,
    residual: Vec<f32>,
    rest: Vec<f32>,
}

impl GalleryIndex {
    /// An index whose dimension is set by its first insert (and again whenever it is
    /// empty).
    pub fn new() -> GalleryIndex {
        GalleryIndex::default()
    }

    /// An index that accepts only `dim`-dimensional embeddings.
    pub fn with_dim(dim: usize) -> Result<GalleryIndex, Error> {
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::BadDimension(dim));
        }
        Ok(GalleryIndex {
            dim,
            padded: padded_dim(dim),
            fixed_dim: true,
            ..GalleryIndex::default()
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Users with at least one template.
    pub fn users(&self) -> usize {
        self.user_refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Room for `additional` more templates without growing (a bulk build that knows
    /// its size; only once the dimension is known).
    pub fn reserve(&mut self, additional: usize) {
        let bytes = additional.saturating_mul(self.padded / 2);
        self.coarse.reserve(bytes);
        self.fine.reserve(bytes);
        self.coarse_scales.reserve(additional);
        self.coarse_errors.reserve(additional);
        self.fine_scales.reserve(additional);
        self.fine_errors.reserve(additional);
        self.ids.reserve(additional);
        self.users.reserve(additional);
        self.rows.reserve(additional);
    }

    /// Adds (or replaces) a template; the embedding is normalised, then quantised.
    /// Refused: another dimension than the gallery's, a zero or non-finite vector.
    pub fn insert(
        &mut self,
        user_id: &str,
        template_id: u64,
        embedding: &[f32],
    ) -> Result<(), Error> {
        if self.ids.is_empty() && !self.fixed_dim {
            if embedding.is_empty() || embedding.len() > MAX_DIM {
                return Err(Error::BadDimension(embedding.len()));
            }
            self.dim = embedding.len();
            self.padded = padded_dim(self.dim);
        }
        if embedding.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: embedding.len(),
            });
        }
        if !normalize_into(embedding, &mut self.scratch.unit) {
            return Err(Error::NotAVector);
        }
        if self.rows.contains_key(&template_id) {
            self.remove_template(template_id);
        }
        if self.ids.len() >= MAX_TEMPLATES {
            return Err(Error::GalleryFull(MAX_TEMPLATES));
        }
        let Scratch {
            unit,
            residual,
            rest,
        } = &mut self.scratch;
        let bytes = self.padded / 2;
        let (coarse_scale, coarse_error) =
            quantize4(unit, self.padded, self.coarse.extend(bytes), residual);
        let start = self.fine.len();
        self.fine.resize(start + bytes, 0);
        let (fine_scale, rest_error) =
            quantize4(residual, self.padded, &mut self.fine[start..], rest);
        // The fine tier approximates the residual as rounded to f32; the true residual
        // differs by at most 2^-24 of each entry, i.e. 6e-8 of its norm (`coarse_error`):
        // added by the triangle inequality (generously).
        let fine_error = rest_error + coarse_error * 1e-7 + 1e-9;
        self.coarse_scales.push(coarse_scale);
        self.coarse_errors.push(coarse_error);
        self.fine_scales.push(fine_scale);
        self.fine_errors.push(fine_error);
        self.rows.insert(template_id, self.ids.len());
        self.ids.push(template_id);
        let user = match self.user_refs.get_key_value(user_id) {
            Some((user, _)) => user.clone(),
            None => Arc::from(user_id),
        };
        *self.user_refs.entry(user.clone()).or_insert(0) += 1;
        self.users.push(user);
        Ok(())
    }

    pub fn remove_template(&mut self, template_id: u64) -> bool {
        let Some(row) = self.rows.remove(&template_id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        let bytes = self.padded / 2;
        if row != last {
            self.coarse
                .copy_within(last * bytes..(last + 1) * bytes, row * bytes);
            self.fine
                .copy_within(last * bytes..(last + 1) * bytes, row * bytes);
            self.coarse_scales.swap(row, last);
            self.coarse_errors.swap(row, last);
            self.fine_scales.swap(row, last);
            self.fine_errors.swap(row, last);
            self.ids.swap(row, last);
            self.users.swap(row, last);
            self.rows.insert(self.ids[row], row);
        }
        self.coarse.truncate(last * bytes);
        self.fine.truncate(last * bytes);
        self.coarse_scales.pop();
        self.coarse_errors.pop();
        self.fine_scales.pop();
        self.fine_errors.pop();
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

    /// Gives back the spare room the arrays grew with (after a bulk build whose size
    /// was not known in advance). Large arrays are shrunk in place by the allocator.
    pub fn shrink_to_fit(&mut self) {
        self.coarse.shrink_to_fit();
        self.fine.shrink_to_fit();
        self.coarse_scales.shrink_to_fit();
        self.coarse_errors.shrink_to_fit();
        self.fine_scales.shrink_to_fit();
        self.fine_errors.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.users.shrink_to_fit();
        self.scratch = Scratch::default();
    }

    /// Approximate heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.coarse.capacity()
            + self.fine.capacity()
            + (self.coarse_scales.capacity()
                + self.coarse_errors.capacity()
                + self.fine_scales.capacity()
                + self.fine_errors.capacity())
                * 4
            + self.ids.capacity() * 8
            + self.users.capacity() * 16
            // hashbrown: (key, value) per bucket plus one control byte.
            + self.rows.capacity() * (16 + 1)
            + self
                .user_refs
                .keys()
                // The Arc allocation (two counters + text) and the map entry.
                .map(|u| u.len() + 16 + 16 + 4 + 1)
                .sum::<usize>()
    }

    /// Bytes one search reads per template: the coarse codes, scale and error bound.
    pub fn scanned_bytes_per_template(&self) -> usize {
        self.padded / 2 + 8
    }
}

/// Higher score first, then the lower template id.
fn better(a: (f32, u64), b: (f32, u64)) -> bool {
    match a.0.total_cmp(&b.0) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.1 < b.1,
    }
}

#[cfg(test)]
mod tests {
    use super::search::{rank_of_key, CodedQuery, Floor};
    use super::*;
    use crate::index::quantized::{dot_f32, normalized};
    use crate::index::simd::{coarse_uppers, CoarseOut, CoarseRows, CoarseScan};

    /// Deterministic pseudo-random vector in [-0.5, 0.5)^dim (not normalised).
    fn v(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The stored f32 embeddings, as the store keeps them (the exact source).
    #[derive(Default)]
    struct Stored(HashMap<u64, (String, Vec<f32>)>);

    impl Stored {
        fn add(&mut self, g: &mut GalleryIndex, user: &str, id: u64, e: Vec<f32>) {
            g.insert(user, id, &e).unwrap();
            self.0.insert(id, (user.to_string(), e));
        }

        fn remove(&mut self, g: &mut GalleryIndex, id: u64) {
            assert!(g.remove_template(id));
            self.0.remove(&id);
        }

        fn search(&self, g: &GalleryIndex, q: &[f32], k: usize) -> Found {
            g.search(q, k, |_, id, out| {
                let stored = self.0.get(&id);
                if let Some((_, e)) = stored {
                    out.extend_from_slice(e);
                }
                Ok::<_, Error>(stored.is_some())
            })
            .unwrap()
        }

        /// f32 brute force: every template scored, best per user, k best users.
        fn brute_force(&self, q: &[f32], k: usize) -> Vec<(String, u64, f32)> {
            let q = normalized(q).unwrap();
            let mut best: HashMap<&str, (f32, u64)> = HashMap::new();
            for (id, (user, e)) in &self.0 {
                let s = dot_f32(&q, &normalized(e).unwrap());
                let e = best.entry(user).or_insert((s, *id));
                if better((s, *id), *e) {
                    *e = (s, *id);
                }
            }
            let mut out: Vec<(String, u64, f32)> = best
                .into_iter()
                .map(|(u, (s, id))| (u.to_string(), id, s))
                .collect();
            out.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
            out.truncate(k);
            out
        }
    }

    fn answer(found: &Found) -> Vec<(String, u64, f32)> {
        found
            .matches
            .iter()
            .map(|m| (m.user_id.to_string(), m.template_id, m.cosine))
            .collect()
    }

    #[test]
    fn results_equal_an_f32_brute_force_on_random_data() {
        for dim in [128, 100, 512] {
            let mut g = GalleryIndex::new();
            let mut s = Stored::default();
            for i in 0..3000u64 {
                s.add(&mut g, &format!("user{}", i / 3), i, v(i, dim));
            }
            for q in 0..40u64 {
                // Random queries (no good match: the hardest case for the coarse order)
                // and noisy copies of stored templates.
                let query: Vec<f32> = if q % 2 == 0 {
                    v(1_000_000 + q, dim)
                } else {
                    v(q * 71, dim)
                        .iter()
                        .zip(v(5_000 + q, dim))
                        .map(|(a, n)| a + 0.3 * n)
                        .collect()
                };
                for k in [1, 5, 20] {
                    let found = s.search(&g, &query, k);
                    assert_eq!(
                        answer(&found),
                        s.brute_force(&query, k),
                        "dim {dim} q {q} k {k}"
                    );
                    assert!(found.reranked < 600, "re-ranked {}", found.reranked);
                }
            }
        }
    }

    #[test]
    fn duplicates_and_ties_give_the_brute_force_answer_with_the_lowest_template_id() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        // 200 strangers, then the same vector under three users (two templates for
        // "twin-b", one of them scaled: equal after normalisation), and a near copy.
        for i in 0..200u64 {
            s.add(&mut g, &format!("stranger{i}"), 1000 + i, v(i, 128));
        }
        let face = v(7777, 128);
        s.add(&mut g, "twin-c", 30, face.clone());
        s.add(&mut g, "twin-b", 20, face.iter().map(|x| x * 3.0).collect());
        s.add(&mut g, "twin-b", 21, face.clone());
        s.add(&mut g, "twin-a", 25, face.clone());
        let mut near = face.clone();
        near[0] += 0.01;
        s.add(&mut g, "near", 10, near);
        for k in [1, 2, 3, 4, 10] {
            let found = s.search(&g, &face, k);
            assert_eq!(answer(&found), s.brute_force(&face, k), "k {k}");
        }
        let top: Vec<u64> = s
            .search(&g, &face, 4)
            .matches
            .iter()
            .map(|m| m.template_id)
            .collect();
        // The three exact copies tie; "near" follows (unless its cosine rounds to 1).
        assert_eq!(&top[..3], &[20, 25, 30]);
        // A gallery of nothing but the same vector: every row ties.
        let mut same = GalleryIndex::new();
        let mut ss = Stored::default();
        for i in (0..500u64).rev() {
            ss.add(&mut same, &format!("u{}", i % 7), i, face.clone());
        }
        let found = ss.search(&same, &face, 3);
        assert_eq!(answer(&found), ss.brute_force(&face, 3));
        assert_eq!(
            found
                .matches
                .iter()
                .map(|m| m.template_id)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn top_k_lists_distinct_users_best_first() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        let face = v(1, 128);
        // Users at decreasing similarity to `face`; "amy" has three templates.
        for (i, (user, noise)) in [
            ("amy", 0.05),
            ("amy", 0.5),
            ("amy", 0.1),
            ("bob", 0.2),
            ("cat", 0.4),
            ("dan", 0.8),
        ]
        .into_iter()
        .enumerate()
        {
            let e = face
                .iter()
                .zip(v(100 + i as u64, 128))
                .map(|(a, n)| a + noise * n)
                .collect();
            s.add(&mut g, user, i as u64, e);
        }
        let found = s.search(&g, &face, 3);
        let users: Vec<&str> = found.matches.iter().map(|m| m.user_id.as_ref()).collect();
        assert_eq!(users, ["amy", "bob", "cat"]);
        assert_eq!(found.matches[0].template_id, 0);
        assert!(found.matches.windows(2).all(|w| w[0].cosine >= w[1].cosine));
        // More results asked than users: every user once.
        assert_eq!(s.search(&g, &face, 10).matches.len(), 4);
        assert!(s.search(&g, &face, 0).matches.is_empty());
    }

    #[test]
    fn removed_templates_and_users_are_never_found() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..20 {
            s.add(&mut g, &format!("user{}", i / 5), i, v(i, 128));
        }
        s.remove(&mut g, 7);
        assert_ne!(s.search(&g, &v(7, 128), 1).matches[0].template_id, 7);
        assert_eq!(g.remove_user("user0"), 5);
        for i in 0..5 {
            s.0.remove(&i);
        }
        assert_eq!(g.len(), 14);
        for i in 0..20 {
            let found = s.search(&g, &v(i, 128), 20);
            assert_eq!(answer(&found), s.brute_force(&v(i, 128), 20));
            assert!(found.matches.iter().all(|m| m.user_id.as_ref() != "user0"));
            assert!(found.matches.iter().all(|m| m.template_id != 7));
            if i >= 5 && i != 7 {
                assert_eq!(found.matches[0].template_id, i);
            }
        }
        // Re-inserting an id replaces its row.
        s.add(&mut g, "user9", 8, v(999, 128));
        assert_eq!(g.len(), 14);
        assert_eq!(
            s.search(&g, &v(999, 128), 1).matches[0].user_id.as_ref(),
            "user9"
        );
    }

    #[test]
    fn a_template_gone_from_the_store_is_skipped() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..50 {
            s.add(&mut g, &format!("user{i}"), i, v(i, 64));
        }
        s.0.remove(&3);
        let found = s.search(&g, &v(3, 64), 1);
        assert_ne!(found.matches[0].template_id, 3);
    }

    #[test]
    fn another_dimension_is_refused_on_insert_and_search() {
        let mut g = GalleryIndex::new();
        g.insert("a", 1, &v(1, 128)).unwrap();
        assert_eq!(g.dim(), 128);
        assert_eq!(
            g.insert("a", 2, &v(2, 512)),
            Err(Error::DimensionMismatch {
                expected: 128,
                got: 512
            })
        );
        assert_eq!(g.len(), 1);
        let r = g.search(&v(1, 64), 1, |_, _, _| Ok::<_, Error>(false));
        assert_eq!(
            r,
            Err(Error::DimensionMismatch {
                expected: 128,
                got: 64
            })
        );
        assert_eq!(g.insert("a", 3, &[0.0; 128]), Err(Error::NotAVector));
        // Fixed by the constructor: even the first insert must match.
        let mut fixed = GalleryIndex::with_dim(512).unwrap();
        assert!(fixed.insert("a", 1, &v(1, 128)).is_err());
        fixed.insert("a", 1, &v(1, 512)).unwrap();
        assert!(GalleryIndex::with_dim(0).is_err());
        // An index emptied takes the next insert's dimension (a re-embedded gallery).
        g.remove_template(1);
        g.insert("a", 4, &v(4, 512)).unwrap();
        assert_eq!(g.dim(), 512);
    }

    #[test]
    fn user_ids_are_interned_and_released_with_their_last_template() {
        let mut g = GalleryIndex::new();
        g.insert("amy", 1, &v(1, 8)).unwrap();
        g.insert("amy", 2, &v(2, 8)).unwrap();
        g.insert("raj", 3, &v(3, 8)).unwrap();
        assert_eq!(g.user_refs.len(), 2);
        assert_eq!(g.user_refs["amy"], 2);
        g.remove_user("amy");
        assert_eq!(g.user_refs.len(), 1);
        g.remove_template(3);
        assert!(g.user_refs.is_empty() && g.is_empty());
    }

    #[test]
    fn an_empty_gallery_or_a_zero_query_has_no_match() {
        let r: Result<Found, Error> =
            GalleryIndex::new().search(&v(1, 128), 1, |_, _, _| Ok(false));
        assert_eq!(r.unwrap(), Found::default());
        let mut g = GalleryIndex::new();
        g.insert("a", 1, &v(1, 4)).unwrap();
        let r: Result<Found, Error> = g.search(&[0.0; 4], 1, |_, _, _| Ok(false));
        assert!(r.unwrap().matches.is_empty());
    }

    #[test]
    fn a_128d_template_takes_about_200_bytes_after_a_bulk_build() {
        let mut g = GalleryIndex::with_dim(128).unwrap();
        g.reserve(20_000);
        for i in 0..20_000u64 {
            g.insert(&format!("user{}", i / 2), i, &v(i, 128)).unwrap();
        }
        g.shrink_to_fit();
        let per = g.memory_bytes() as f64 / g.len() as f64;
        // 64 + 64 code bytes + 16 scales/errors + 8 id + 16 user + ~28 map entry + half
        // a user.
        assert!((170.0..230.0).contains(&per), "{per}");
        // What a search reads per template: the coarse codes, scale and error bound.
        assert_eq!(g.scanned_bytes_per_template(), 72);
    }

    /// Near copies of the query: every coarse bound (~0.1 wide) overlaps the best exact
    /// score, so the coarse candidate set must grow to the whole gallery, and the fine
    /// bounds (~0.01) overlap too for the closest ones, so the re-rank grows as well.
    #[test]
    fn a_crowd_of_near_copies_still_gives_the_brute_force_answer() {
        let face = v(42, 128);
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..3000u64 {
            // Cosine ~0.999 down to ~0.98 with the face; ids in a shuffled order.
            let noise = 0.002 + 0.02 * (i % 97) as f32 / 97.0;
            let e = face
                .iter()
                .zip(v(10_000 + i, 128))
                .map(|(a, n)| a + noise * n)
                .collect();
            s.add(&mut g, &format!("u{}", i % 1000), (i * 7919) % 3001, e);
        }
        for k in [1, 3, 50] {
            let found = s.search(&g, &face, k);
            assert_eq!(answer(&found), s.brute_force(&face, k), "k {k}");
            assert!(found.scans > 1, "the coarse set grew: {found:?}");
        }
    }

    /// Values at the edges of f32 and of the 4-bit grid: one huge component with tiny
    /// ones (most codes 0), components exactly halfway between two codes, tiny and huge
    /// overall scales (normalised away), and templates that differ from the query only
    /// in the last bits. The bounds must hold for all of them (else the answer would
    /// differ from the brute force).
    #[test]
    fn the_bounds_hold_at_adversarial_scales() {
        let dim = 100;
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        let mut id = 0u64;
        let mut add = |g: &mut GalleryIndex, s: &mut Stored, e: Vec<f32>| {
            id += 1;
            s.add(g, &format!("u{id}"), id, e);
        };
        for scale in [1e-15f32, 1e-6, 1.0, 1e6, 1e15] {
            let mut spike = vec![1e-4 * scale; dim];
            spike[3] = scale;
            add(&mut g, &mut s, spike);
            // x / (max / 7) lands on k + 0.5 for every component.
            let halves: Vec<f32> = (0..dim)
                .map(|i| {
                    scale * (((i % 7) as f32 + 0.5) / 7.0) * if i % 2 == 0 { 1.0 } else { -1.0 }
                })
                .collect();
            add(&mut g, &mut s, halves);
            add(
                &mut g,
                &mut s,
                v(scale.to_bits() as u64, dim)
                    .iter()
                    .map(|x| x * scale)
                    .collect(),
            );
        }
        let base = v(5, dim);
        for ulp in 0..20u32 {
            let mut e = base.clone();
            e[(ulp as usize * 13) % dim] = f32::from_bits(e[0].to_bits() + ulp);
            add(&mut g, &mut s, e);
        }
        for i in 0..300u64 {
            add(&mut g, &mut s, v(1000 + i, dim));
        }
        let mut queries = vec![base.clone()];
        for scale in [1e-15f32, 1.0, 1e15] {
            let mut spike = vec![1e-4 * scale; dim];
            spike[3] = scale;
            queries.push(spike);
            queries.push(v(77, dim).iter().map(|x| x * scale).collect());
        }
        for (n, q) in queries.iter().enumerate() {
            for k in [1, 4, 30] {
                assert_eq!(
                    answer(&s.search(&g, q, k)),
                    s.brute_force(q, k),
                    "q {n} k {k}"
                );
            }
        }
    }

    /// Quantisation errors chosen against the search: 200 decoys whose coarse codes
    /// score above the true best's, and whose residuals add a little to their exact
    /// score; the true best's residual (below half a code step everywhere, so its codes
    /// stay) adds much more. The coarse order alone gives a decoy; only the coarse
    /// bound (each row's error) shows that the rows left out may still win.
    #[test]
    fn rounding_errors_aligned_against_the_query_do_not_hide_the_best() {
        let dim = 128;
        let q = normalized(&v(9, dim)).unwrap();
        // A base direction with cosine ~0.5 to the query, on the 4-bit grid.
        let u = normalized(
            &q.iter()
                .zip(normalized(&v(10, dim)).unwrap())
                .map(|(a, b)| a + 1.7 * b)
                .collect::<Vec<f32>>(),
        )
        .unwrap();
        let max = u.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let step = max / 7.0;
        let codes: Vec<f32> = u.iter().map(|x| (x / step).round()).collect();
        // Few strangers: the true best is not even a coarse candidate; many: it is one
        // (the coarse set grows with the gallery) but ranked below the first re-scored.
        for strangers in [300, 13_000] {
            aligned_errors_scene(dim, &q, &codes, step, strangers);
        }
    }

    fn aligned_errors_scene(dim: usize, q: &[f32], codes: &[f32], step: f32, strangers: u64) {
        let with_residual = |codes: &[f32], size: f32| -> Vec<f32> {
            codes
                .iter()
                .zip(q)
                .map(|(c, qi)| {
                    // Not on the largest codes, which fix the scale.
                    let r = if c.abs() < 7.0 {
                        size * qi.signum()
                    } else {
                        0.0
                    };
                    (c + r) * step
                })
                .collect()
        };
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..strangers {
            s.add(
                &mut g,
                &format!("stranger{i}"),
                100_000 + i,
                v(500 + i, dim),
            );
        }
        for i in 0..200u64 {
            s.add(
                &mut g,
                &format!("decoy{i}"),
                1000 + i,
                with_residual(codes, 0.1),
            );
        }
        // One code lowered where the query is large and positive: the coarse score
        // drops below the decoys'.
        let mut lowered = codes.to_vec();
        let j = (0..dim)
            .filter(|&i| codes[i].abs() < 7.0)
            .max_by(|&a, &b| q[a].total_cmp(&q[b]))
            .unwrap();
        lowered[j] -= 1.0;
        s.add(&mut g, "best", 1, with_residual(&lowered, 0.45));
        // The scene is what it claims: best by far in f32, below every decoy coarsely.
        assert_eq!(s.brute_force(q, 1)[0].1, 1);
        let coarse: Vec<u64> = g.search_approximate(q, 201).iter().map(|m| m.0).collect();
        assert!(
            coarse[..200].iter().all(|id| (1000..1200).contains(id)),
            "{coarse:?}"
        );
        for k in [1, 2, 10] {
            let found = s.search(&g, q, k);
            assert_eq!(
                answer(&found),
                s.brute_force(q, k),
                "strangers {strangers} k {k}"
            );
        }
    }

    /// Both bounds the search relies on, checked row by row: random rows, and rows whose
    /// fine-tier rounding is aligned with the query (the fine codes alone then
    /// underestimate the exact score by more than the query's own rounding covers).
    #[test]
    fn every_bound_the_search_uses_is_at_least_the_exact_score() {
        let dim = 128;
        let q = normalized(&v(3, dim)).unwrap();
        let mut rows: Vec<Vec<f32>> = (0..300).map(|i| v(700 + i, dim)).collect();
        for seed in 0..20u64 {
            // Coarse codes from a random direction; the largest fixes the coarse scale
            // and carries no fine part.
            // One large component: a large coarse step, so the fine step (1/15 of it)
            // and the aligned fine rounding are large too.
            let mut base = normalized(&v(900 + seed, dim)).unwrap();
            let top = (seed as usize * 7) % dim;
            base[top] = 0.8;
            let s1 = base[top].abs() / 7.0;
            let s2 = s1 / 15.0;
            let row: Vec<f32> = (0..dim)
                .map(|i| {
                    let c1 = (base[i] / s1).round().clamp(-7.0, 7.0);
                    // Fine part: code 7 on one other component (fixes the fine scale),
                    // else a code in -6..=6 plus 0.45 of a step towards the query.
                    let fine = if i == top {
                        0.0
                    } else if i == (top + 1) % dim {
                        7.0 * s2
                    } else {
                        let c2 = ((seed as usize + i) % 13) as f32 - 6.0;
                        (c2 + 0.45 * q[i].signum()) * s2
                    };
                    c1 * s1 + fine
                })
                .collect();
            rows.push(row);
        }
        let mut g = GalleryIndex::new();
        for (i, row) in rows.iter().enumerate() {
            g.insert("u", i as u64, row).unwrap();
        }
        // The rows lean towards the query: its mirror image tests the lower bounds.
        let mirrored: Vec<f32> = q.iter().map(|x| -x).collect();
        for q in [q, mirrored] {
            let mut coded = CodedQuery::default();
            coded.encode(&q, g.padded);
            let mut coarse = Vec::new();
            g.top_coarse_bounds(&coded, g.len(), Floor::Selection, &mut coarse);
            assert_eq!(coarse.len(), g.len());
            let exact = |row: usize| {
                let id = g.ids[row] as usize;
                dot_f32(&q, &normalized(&rows[id]).unwrap())
            };
            let bytes = g.padded / 2;
            for (upper, row) in coarse.into_iter().map(rank_of_key) {
                assert!(upper >= exact(row), "coarse row {row}");
                let fine = g.fine_bound(&coded, row);
                assert!(fine >= f64::from(exact(row)), "fine row {row}");
                // The lower bound `Floor::BestLower` relies on, from the scan's kernel.
                let one = CoarseRows {
                    codes: &g.coarse[row * bytes..(row + 1) * bytes],
                    scales: &g.coarse_scales[row..=row],
                    errors: &g.coarse_errors[row..=row],
                };
                let pass = CoarseScan {
                    query: &coded.codes.codes,
                    terms: &coded.terms(),
                    rows: one,
                    floor: 0.0,
                };
                let out = CoarseOut {
                    uppers: &mut [0.0],
                    above: &mut [0],
                };
                let lower = coarse_uppers(pass, out);
                assert!(
                    lower <= exact(row),
                    "lower row {row}: {lower} > {}",
                    exact(row)
                );
            }
        }
    }

    fn noisy(face: &[f32], seed: u64, size: f32) -> Vec<f32> {
        face.iter()
            .zip(v(seed, face.len()))
            .map(|(a, n)| a + size * n)
            .collect()
    }

    /// A clear best match: its fine bound is taken first and its exact score is above
    /// every other row's bound, so one fetch settles the answer (32 before the walk).
    #[test]
    fn a_clear_match_is_settled_by_one_exact_score() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..3000u64 {
            s.add(&mut g, &format!("user{}", i / 2), i, v(i, 128));
        }
        for q in [5u64, 777, 2999] {
            let query = noisy(&v(q, 128), 50_000 + q, 0.1);
            let found = s.search(&g, &query, 1);
            assert_eq!(answer(&found), s.brute_force(&query, 1));
            assert_eq!(found.matches[0].template_id, q);
            assert_eq!((found.reranked, found.refined, found.scans), (1, 1, 1));
        }
    }

    /// Equal exact scores: a copy's bound is at least the k-th score, so every copy is
    /// scored before the walk may stop, and the lowest template id wins, for any k.
    #[test]
    fn the_walk_does_not_stop_before_every_tie_is_scored() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..2000u64 {
            s.add(&mut g, &format!("stranger{i}"), 10_000 + i, v(i, 128));
        }
        let face = v(4242, 128);
        // Inserted highest id first (the rows come in the opposite order of the ids).
        for (n, id) in [90u64, 70, 50, 30, 10].into_iter().enumerate() {
            // Powers of two: the same vector after normalisation, bit for bit.
            let scaled: Vec<f32> = face.iter().map(|x| x * (1u32 << n) as f32).collect();
            s.add(&mut g, &format!("copy{}", n % 3), id, scaled);
        }
        for k in [1, 2, 3, 4] {
            let found = s.search(&g, &face, k);
            assert_eq!(answer(&found), s.brute_force(&face, k), "k {k}");
            assert!(found.reranked >= 5, "k {k}: {found:?}");
        }
        assert_eq!(s.search(&g, &face, 1).matches[0].template_id, 10);
    }

    /// k > 1: the walk stops at the k-th user's exact score; a user's second template
    /// does not count as another user.
    #[test]
    fn top_k_stops_at_the_kth_users_score() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..3000u64 {
            s.add(&mut g, &format!("stranger{i}"), 10_000 + i, v(i, 128));
        }
        let face = v(888_888, 128);
        for (id, user, size) in [
            (1u64, "amy", 0.05),
            (2, "amy", 0.06),
            (3, "bob", 0.1),
            (4, "cat", 0.15),
            (5, "dan", 0.2),
        ] {
            s.add(&mut g, user, id, noisy(&face, 600 + id, size));
        }
        for k in [1, 2, 3, 4, 6] {
            let found = s.search(&g, &face, k);
            assert_eq!(answer(&found), s.brute_force(&face, k), "k {k}");
            if k <= 4 {
                // Some of the five close templates, none of the strangers.
                assert!(found.reranked <= 5, "k {k}: {found:?}");
            }
        }
    }

    /// Removing the best template (from the index and the store), or only from the
    /// store: the walk goes on to the next row and still equals the brute force.
    #[test]
    fn the_walk_continues_past_removed_and_missing_templates() {
        let mut g = GalleryIndex::new();
        let mut s = Stored::default();
        for i in 0..2000u64 {
            s.add(&mut g, &format!("stranger{i}"), 10_000 + i, v(i, 128));
        }
        let face = v(777_777, 128);
        s.add(&mut g, "amy", 1, noisy(&face, 1, 0.05));
        s.add(&mut g, "amy", 2, noisy(&face, 2, 0.2));
        s.add(&mut g, "bob", 3, noisy(&face, 3, 0.1));
        assert_eq!(s.search(&g, &face, 1).matches[0].template_id, 1);
        s.remove(&mut g, 1);
        for k in [1, 2] {
            assert_eq!(answer(&s.search(&g, &face, k)), s.brute_force(&face, k));
        }
        assert_eq!(s.search(&g, &face, 1).matches[0].template_id, 3);
        // Gone from the store only: skipped, the next one is fetched.
        s.0.remove(&3);
        let found = s.search(&g, &face, 1);
        assert_eq!(answer(&found), s.brute_force(&face, 1));
        assert_eq!(found.matches[0].template_id, 2);
        assert!(found.reranked >= 2);
    }

    #[test]
    fn the_id_hash_spreads_sequential_and_text_keys() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        let buckets: std::collections::HashSet<u64> =
            (0..4096u64).map(|i| build.hash_one(i) & 4095).collect();
        assert!(buckets.len() > 2400, "{}", buckets.len());
        assert_ne!(build.hash_one("user1"), build.hash_one("user2"));
        assert_ne!(build.hash_one("abcdefgh1"), build.hash_one("abcdefgh2"));
    }
}
