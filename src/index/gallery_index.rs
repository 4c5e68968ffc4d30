//! One gallery's templates: int8 codes with a per-vector scale and error bound, scanned
//! in full for every search, then the best candidates re-ranked exactly in f32.
//!
//! Memory per template (d = embedding dimension): d bytes of codes + 4 (scale) + 4
//! (error bound) + 8 (template id) + 16 (user id handle) + the id -> row map entry
//! (~24-40 bytes with the hash table's spare room), plus one interned string per user.
//! 128-d: ~190 bytes (the f32 brute force it replaces held ~560). The f32 embeddings
//! stay in the store; the search asks the caller for the few it re-ranks.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::quantized::{dot_f32, normalized, quantize};
use super::simd::dots;
use super::Error;

/// Largest embedding dimension: keeps the integer dot product far from i32 overflow
/// (127 * 127 * 65535 < 2^31) and matches the store's u16 dimension field.
pub const MAX_DIM: usize = 65_535;

/// Candidates re-ranked in f32 at least (per search), before the bound says whether more
/// are needed. Four per requested result, at least this many.
const MIN_CANDIDATES: usize = 32;

/// Rows whose integer dot products are computed in one call (a 2 KB buffer on the
/// stack; one CPU-feature dispatch per block).
const BLOCK_ROWS: usize = 512;

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
}

#[derive(Debug, Default)]
pub struct GalleryIndex {
    /// 0 until the first insert, unless given to [`GalleryIndex::with_dim`].
    dim: usize,
    fixed_dim: bool,
    /// `len() * dim` codes; row `i` is template `ids[i]`.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Per row: `||v - scale * codes||`, rounded up.
    errors: Vec<f32>,
    ids: Vec<u64>,
    users: Vec<Arc<str>>,
    /// template id -> row.
    rows: HashMap<u64, usize>,
    /// Interned user ids with their number of templates (one allocation per user).
    user_refs: HashMap<Arc<str>, u32>,
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

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
        }
        if embedding.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: embedding.len(),
            });
        }
        let unit = normalized(embedding).ok_or(Error::NotAVector)?;
        self.remove_template(template_id);
        let (scale, error) = quantize(&unit, &mut self.codes);
        self.scales.push(scale);
        self.errors.push(error);
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
        let dim = self.dim;
        if row != last {
            self.codes
                .copy_within(last * dim..(last + 1) * dim, row * dim);
            self.scales.swap(row, last);
            self.errors.swap(row, last);
            self.ids.swap(row, last);
            self.users.swap(row, last);
            self.rows.insert(self.ids[row], row);
        }
        self.codes.truncate(last * dim);
        self.scales.pop();
        self.errors.pop();
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

    /// The `k` users with the most similar templates (cosine), each with its best
    /// template, best first; equal scores by template id. The same answer as an f32
    /// brute force over `exact`'s embeddings (normalised, [`dot_f32`]).
    ///
    /// `exact(user_id, template_id)` gives a candidate's stored f32 embedding (None: it
    /// is gone, and is skipped). A zero query finds nothing; a query of another
    /// dimension is refused.
    pub fn search<E: From<Error>>(
        &self,
        query: &[f32],
        k: usize,
        mut exact: impl FnMut(&str, u64) -> Result<Option<Vec<f32>>, E>,
    ) -> Result<Found, E> {
        if self.ids.is_empty() || k == 0 {
            return Ok(Found::default());
        }
        if query.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: query.len(),
            }
            .into());
        }
        let Some(query) = normalized(query) else {
            return Ok(Found::default());
        };
        let coded = CodedQuery::new(&query);
        let n = self.len();
        let mut scored: HashMap<usize, Option<f32>> = HashMap::new();
        let mut take = (k.saturating_mul(4)).max(MIN_CANDIDATES).min(n);
        loop {
            let (candidates, cutoff) = self.top_upper_bounds(&coded, take);
            for row in candidates {
                if let std::collections::hash_map::Entry::Vacant(slot) = scored.entry(row) {
                    let score = exact(&self.users[row], self.ids[row])?
                        .and_then(|v| normalized(&v))
                        .filter(|v| v.len() == self.dim)
                        .map(|v| dot_f32(&query, &v));
                    slot.insert(score);
                }
            }
            let best = self.best_users(&scored, k);
            // Every row outside the candidates has an upper bound <= cutoff: if that is
            // below the k-th user's exact score, none of them can enter the answer
            // (nor tie with it).
            let settled = match best.get(k - 1) {
                Some(kth) => cutoff < kth.cosine,
                None => false,
            };
            if settled || take == n {
                return Ok(Found {
                    matches: best,
                    reranked: scored.len(),
                });
            }
            take = take.saturating_mul(4).min(n);
        }
    }

    /// The `k` best templates by the int8 codes alone (no re-rank): (template id,
    /// approximate cosine), best first. For measuring what the re-rank corrects.
    pub fn search_approximate(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || self.ids.is_empty() {
            return Vec::new();
        }
        let Some(query) = normalized(query) else {
            return Vec::new();
        };
        let coded = CodedQuery::new(&query);
        let mut heap = BinaryHeap::with_capacity(k + 1);
        self.scan(&coded.codes, |row, dot| {
            let approx = dot as f32 * (coded.scale * self.scales[row]);
            heap.push(Reverse(Ranked(approx, row)));
            if heap.len() > k {
                heap.pop();
            }
        });
        let mut out: Vec<(u64, f32)> = heap
            .into_iter()
            .map(|Reverse(Ranked(s, row))| (self.ids[row], s))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The `take` rows with the highest upper bound of their exact score, and the
    /// lowest of those bounds (-inf when every row is taken). One pass over the codes.
    fn top_upper_bounds(&self, query: &CodedQuery, take: usize) -> (Vec<usize>, f32) {
        let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(take + 1);
        let mut floor = f32::NEG_INFINITY;
        self.scan(&query.codes, |row, dot| {
            let approx = dot as f32 * (query.scale * self.scales[row]);
            let upper = approx + query.lift + query.grow * self.errors[row];
            if heap.len() < take {
                heap.push(Reverse(Ranked(upper, row)));
                if heap.len() == take {
                    floor = heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
                }
            } else if upper > floor {
                heap.pop();
                heap.push(Reverse(Ranked(upper, row)));
                floor = heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
            }
        });
        let cutoff = if take >= self.len() {
            f32::NEG_INFINITY
        } else {
            floor
        };
        (heap.into_iter().map(|Reverse(r)| r.1).collect(), cutoff)
    }

    /// Calls `visit(row, integer dot product with the query's codes)` for every row, in
    /// order.
    fn scan(&self, query: &[i16], mut visit: impl FnMut(usize, i32)) {
        let mut block = [0i32; BLOCK_ROWS];
        for (b, codes) in self.codes.chunks(BLOCK_ROWS * self.dim).enumerate() {
            let rows = codes.len() / self.dim;
            dots(query, codes, &mut block[..rows]);
            for (i, dot) in block[..rows].iter().enumerate() {
                visit(b * BLOCK_ROWS + i, *dot);
            }
        }
    }

    /// Best template per user among the scored rows, the `k` best users.
    fn best_users(&self, scored: &HashMap<usize, Option<f32>>, k: usize) -> Vec<Match> {
        let mut per_user: HashMap<&Arc<str>, (f32, u64)> = HashMap::new();
        for (&row, score) in scored {
            let Some(score) = *score else { continue };
            let candidate = (score, self.ids[row]);
            per_user
                .entry(&self.users[row])
                .and_modify(|best| {
                    if better(candidate, *best) {
                        *best = candidate;
                    }
                })
                .or_insert(candidate);
        }
        let mut out: Vec<Match> = per_user
            .into_iter()
            .map(|(user, (cosine, template_id))| Match {
                user_id: user.clone(),
                template_id,
                cosine,
            })
            .collect();
        out.sort_by(|a, b| {
            b.cosine
                .total_cmp(&a.cosine)
                .then(a.template_id.cmp(&b.template_id))
        });
        out.truncate(k);
        out
    }

    /// Gives back the spare room the arrays grew with (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        self.codes.shrink_to_fit();
        self.scales.shrink_to_fit();
        self.errors.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.users.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.user_refs.shrink_to_fit();
    }

    /// Approximate heap memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity()
            + self.scales.capacity() * 4
            + self.errors.capacity() * 4
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
}

/// Higher score first, then the lower template id.
fn better(a: (f32, u64), b: (f32, u64)) -> bool {
    match a.0.total_cmp(&b.0) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.1 < b.1,
    }
}

/// The normalised query quantised like the templates, with the terms of the bound
/// `|q.v - approx| <= |q - q'| |v| + |q'| |v - v'|` that do not depend on the row.
struct CodedQuery {
    codes: Vec<i16>,
    scale: f32,
    /// `|q - q'|` with a margin for f32 rounding of the approximate and exact scores.
    lift: f32,
    /// Bound on `|q'|`, which multiplies each row's own error.
    grow: f32,
}

impl CodedQuery {
    fn new(query: &[f32]) -> CodedQuery {
        let mut codes = Vec::with_capacity(query.len());
        let (scale, error) = quantize(query, &mut codes);
        // f32 rounding: the exact dot product (|sum| <= 1, dim terms) and the
        // approximate one's products; generous against f32's 6e-8 relative step.
        let rounding = 1e-5 + query.len() as f32 * 2.5e-7;
        CodedQuery {
            codes: codes.into_iter().map(i16::from).collect(),
            scale,
            lift: error * 1.0001 + rounding,
            grow: 1.0001 + error,
        }
    }
}

/// (score, row) ordered by score (total order) then row.
#[derive(Clone, Copy, Debug)]
struct Ranked(f32, usize);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            g.search(q, k, |_, id| {
                Ok::<_, Error>(self.0.get(&id).map(|(_, e)| e.clone()))
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
                // Random queries (no good match: the hardest case for the int8 order)
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
        let r = g.search(&v(1, 64), 1, |_, _| Ok::<_, Error>(None));
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
        let r: Result<Found, Error> = GalleryIndex::new().search(&v(1, 128), 1, |_, _| Ok(None));
        assert_eq!(r.unwrap(), Found::default());
        let mut g = GalleryIndex::new();
        g.insert("a", 1, &v(1, 4)).unwrap();
        let r: Result<Found, Error> = g.search(&[0.0; 4], 1, |_, _| Ok(None));
        assert!(r.unwrap().matches.is_empty());
    }

    #[test]
    fn a_128d_template_takes_about_200_bytes_after_a_bulk_build() {
        let mut g = GalleryIndex::new();
        for i in 0..20_000u64 {
            g.insert(&format!("user{}", i / 2), i, &v(i, 128)).unwrap();
        }
        g.shrink_to_fit();
        let per = g.memory_bytes() as f64 / g.len() as f64;
        // 128 code bytes + 8 scale/error + 8 id + 16 user + ~28 map entry + half a user.
        assert!((170.0..230.0).contains(&per), "{per}");
    }
}
