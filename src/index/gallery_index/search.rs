//! The search of one gallery: the coarse scan over every row, then a best-first walk
//! over the rows it keeps, each taken at its tightest known upper bound (coarse, then
//! fine, then the exact f32 score), which stops as soon as no bound left can reach the
//! k-th user's exact score.
//!
//! A search allocates nothing but its answer: its buffers live in a per-thread
//! [`SearchScratch`] that the next search on the thread reuses.

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::{better, GalleryIndex, BLOCK_ROWS, COARSE_KEPT};
use crate::index::quantized::{dot4, dot_f32, normalize_into, QueryCodes};
use crate::index::simd::{coarse_uppers, BoundTerms, CoarseOut, CoarseRows, CoarseScan};
use crate::index::{Error, Found, Match};

/// Rows the coarse scan keeps: 1/64 of the gallery between [`COARSE_KEPT`]'s bounds (16
/// per requested result at least). Keeping more costs little (a threshold test per row;
/// the walk looks only at the best of them), and a query with no good match needs
/// several hundred at a million templates; too few would mean another pass.
pub(super) fn coarse_candidates(n: usize, k: usize) -> usize {
    (n / 64)
        .clamp(COARSE_KEPT.0, COARSE_KEPT.1)
        .max(k.saturating_mul(16))
        .min(n)
}

/// Entries of the scratch's candidate list kept between searches at most: a search whose
/// coarse set grew to a whole large gallery gives the memory back afterwards.
const SCRATCH_KEPT_MAX: usize = 1 << 16;

thread_local! {
    static SCRATCH: RefCell<SearchScratch> = RefCell::new(SearchScratch::default());
}

/// The buffers of one search.
#[derive(Default)]
struct SearchScratch {
    /// The normalised query.
    query: Vec<f32>,
    coded: CodedQuery,
    /// The coarse scan's selection (keys, see [`rank_key`]).
    kept: Vec<u64>,
    /// Rows still to look at, by their tightest upper bound.
    pending: BinaryHeap<Pending>,
    /// Rows scored exactly (sorted before another coarse pass, which skips them).
    scored: Vec<usize>,
    /// The best template of each of the best users so far, best first (at most k).
    top: Vec<Scored>,
    /// A candidate's stored embedding, then normalised.
    embedding: Vec<f32>,
    unit: Vec<f32>,
}

impl SearchScratch {
    /// Runs `f` with this thread's scratch, or a fresh one when it is in use (an `exact`
    /// callback that searches again).
    fn with<T>(f: impl FnOnce(&mut SearchScratch) -> T) -> T {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let out = f(&mut scratch);
                if scratch.kept.capacity() > SCRATCH_KEPT_MAX {
                    scratch.kept = Vec::new();
                    scratch.pending = BinaryHeap::new();
                    scratch.scored = Vec::new();
                }
                out
            }
            Err(_) => f(&mut SearchScratch::default()),
        })
    }
}

/// Rows of the coarse pass's first block.
const FIRST_BLOCK_ROWS: usize = 64;

/// What the coarse pass leaves out besides the rows below the selection's floor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Floor {
    /// Nothing else.
    Selection,
    /// For a search of the one best template: every row whose upper bound is below the
    /// highest lower bound seen so far (that row's exact score is at least its lower
    /// bound, so a row below it can neither win nor tie); the cutoff then covers those
    /// rows too. With a genuine match, almost nothing is kept once the scan passed it.
    BestLower,
}

/// A row waiting in the walk, at an upper bound of its exact score.
#[derive(Clone, Copy, Debug)]
struct Pending {
    bound: f64,
    row: usize,
    /// The bound is the fine one (next step: the exact score); else the coarse one.
    refined: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// The highest bound first (a max-heap); then the lower row (any order would be
    /// exact: the walk stops only below every bound left).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bound
            .total_cmp(&other.bound)
            .then(other.row.cmp(&self.row))
            .then(self.refined.cmp(&other.refined))
    }
}

/// A row scored exactly.
#[derive(Clone, Copy, Debug)]
struct Scored {
    cosine: f32,
    template_id: u64,
    row: usize,
}

impl GalleryIndex {
    /// The `k` users with the most similar templates (cosine), each with its best
    /// template, best first; equal scores by template id. The same answer as an f32
    /// brute force over `exact`'s embeddings (normalised, [`dot_f32`]).
    ///
    /// `exact(user_id, template_id, out)` writes a candidate's stored f32 embedding into
    /// `out` (given empty) and returns true, or false when it is gone (it is skipped). A
    /// zero query finds nothing; a query of another dimension is refused.
    ///
    /// How it stays exact: every row has an upper bound of its exact score from the
    /// coarse codes (one pass over all rows), and a tighter one from the fine codes. The
    /// coarse pass keeps the rows with the highest coarse bounds; the walk then takes
    /// them by their tightest known bound, highest first: a coarse one is replaced by the
    /// fine one, a fine one by the exact score. The answer is settled once the k-th
    /// user's exact score is above the highest bound still waiting and above the best
    /// coarse bound the pass left out: no row not scored exactly can then enter the
    /// answer or tie with it. If the walk runs out first, the coarse pass repeats with
    /// 4x the rows (rows already scored are not fetched again).
    pub fn search<E: From<Error>>(
        &self,
        query: &[f32],
        k: usize,
        mut exact: impl FnMut(&str, u64, &mut Vec<f32>) -> Result<bool, E>,
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
        SearchScratch::with(|s| {
            if !normalize_into(query, &mut s.query) {
                return Ok(Found::default());
            }
            s.coded.encode(&s.query, self.padded);
            s.scored.clear();
            s.top.clear();
            let n = self.len();
            let mut coarse_take = coarse_candidates(n, k);
            let floor = if k == 1 {
                Floor::BestLower
            } else {
                Floor::Selection
            };
            let mut found = Found::default();
            loop {
                let coarse_cutoff =
                    self.top_coarse_bounds(&s.coded, coarse_take, floor, &mut s.kept);
                found.scans += 1;
                s.scored.sort_unstable();
                let mut pending = std::mem::take(&mut s.pending).into_vec();
                pending.clear();
                pending.extend(
                    s.kept
                        .iter()
                        .map(|&key| rank_of_key(key))
                        .filter(|(_, row)| s.scored.binary_search(row).is_err())
                        .map(|(bound, row)| Pending {
                            bound: f64::from(bound),
                            row,
                            refined: false,
                        }),
                );
                s.pending = BinaryHeap::from(pending);
                loop {
                    let kth = s.top.get(k - 1).map(|t| f64::from(t.cosine));
                    let settled = |bound: f64| kth.is_some_and(|kth| bound < kth);
                    let open = s.pending.peek().is_some_and(|p| !settled(p.bound));
                    let next = if open { s.pending.pop() } else { None };
                    let Some(next) = next else {
                        if coarse_take == n || settled(f64::from(coarse_cutoff)) {
                            found.matches = self.matches(&s.top);
                            return Ok(found);
                        }
                        break;
                    };
                    if !next.refined {
                        found.refined += 1;
                        s.pending.push(Pending {
                            bound: self.fine_bound(&s.coded, next.row).min(next.bound),
                            row: next.row,
                            refined: true,
                        });
                        continue;
                    }
                    found.reranked += 1;
                    s.scored.push(next.row);
                    s.embedding.clear();
                    let (user, template_id) = (&self.users[next.row], self.ids[next.row]);
                    if exact(user, template_id, &mut s.embedding)?
                        && s.embedding.len() == self.dim
                        && normalize_into(&s.embedding, &mut s.unit)
                    {
                        let scored = Scored {
                            cosine: dot_f32(&s.query, &s.unit),
                            template_id,
                            row: next.row,
                        };
                        offer_user(&mut s.top, k, scored, &self.users);
                    }
                }
                coarse_take = coarse_take.saturating_mul(4).min(n);
            }
        })
    }

    /// The `k` best templates by the coarse codes alone (no re-rank): (template id,
    /// approximate cosine), best first. For measuring what the re-rank corrects.
    pub fn search_approximate(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || self.ids.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut unit = Vec::new();
        if !normalize_into(query, &mut unit) {
            return Vec::new();
        }
        let mut coded = CodedQuery::default();
        coded.encode(&unit, self.padded);
        // The coarse bound without its margins is the approximate cosine.
        let terms = BoundTerms {
            lift: 0.0,
            grow: 0.0,
            ..coded.terms()
        };
        let mut kept = Vec::new();
        self.select_coarse(&coded.codes.codes, &terms, k, Floor::Selection, &mut kept);
        let mut out: Vec<(u64, f32)> = kept
            .into_iter()
            .map(|key| {
                let (s, row) = rank_of_key(key);
                (self.ids[row], s)
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Puts into `kept` the keys ([`rank_key`]) of the `take` rows with the highest
    /// coarse upper bound of their exact score (fewer with [`Floor::BestLower`]), and
    /// returns the highest bound of the rows left out (-inf when every row is taken).
    pub(super) fn top_coarse_bounds(
        &self,
        query: &CodedQuery,
        take: usize,
        floor: Floor,
        kept: &mut Vec<u64>,
    ) -> f32 {
        self.select_coarse(&query.codes.codes, &query.terms(), take, floor, kept)
    }

    /// One pass over the coarse codes: the bounds of a block of rows are computed
    /// together (vectorised, `simd/`) with a bit per row above the floor, and only
    /// those rows are offered to the selection (after the first blocks, few).
    fn select_coarse(
        &self,
        codes: &[i8],
        terms: &BoundTerms,
        take: usize,
        floor: Floor,
        kept: &mut Vec<u64>,
    ) -> f32 {
        let mut best = Selection::new(take, self.len(), std::mem::take(kept));
        let mut uppers = [0f32; BLOCK_ROWS];
        let mut above = [0u64; BLOCK_ROWS / 64];
        // Below this, a row cannot be the best one (`Floor::BestLower` only).
        let mut best_lower = f32::NEG_INFINITY;
        let bytes = self.padded / 2;
        let n = self.len();
        let mut first = 0;
        while first < n {
            // A short first block: the floors rise before a whole block is offered.
            let rows = if first == 0 {
                FIRST_BLOCK_ROWS
            } else {
                BLOCK_ROWS
            }
            .min(n - first);
            let block = &self.coarse[first * bytes..(first + rows) * bytes];
            let coarse = CoarseRows {
                codes: block,
                scales: &self.coarse_scales[first..first + rows],
                errors: &self.coarse_errors[first..first + rows],
            };
            // `upper > best_lower.next_down()` is `upper >= best_lower`: a tie stays.
            let block_floor = best.floor.max(best_lower.next_down());
            let pass = CoarseScan {
                query: codes,
                terms,
                rows: coarse,
                floor: block_floor,
            };
            let out = CoarseOut {
                uppers: &mut uppers[..rows],
                above: &mut above,
            };
            let lower = coarse_uppers(pass, out);
            if floor == Floor::BestLower {
                best_lower = best_lower.max(lower);
            }
            for (w, word) in above.iter().enumerate() {
                let mut mask = *word;
                while mask != 0 {
                    let i = w * 64 + mask.trailing_zeros() as usize;
                    best.offer(uppers[i], first + i);
                    mask &= mask - 1;
                }
            }
            best.prune();
            first += rows;
        }
        // Rows left out for the lower bound had uppers of at most its predecessor.
        best.finish(kept).max(best_lower.next_down())
    }

    /// The fine upper bound of a row's exact score (in f64: few rows get one).
    pub(super) fn fine_bound(&self, query: &CodedQuery, row: usize) -> f64 {
        let bytes = self.padded / 2;
        let codes = &query.codes;
        let range = row * bytes..(row + 1) * bytes;
        let coarse = dot4(&codes.codes, &self.coarse[range.clone()]) - codes.bias;
        let fine = dot4(&codes.codes, &self.fine[range]) - codes.bias;
        let approx = f64::from(codes.scale)
            * (f64::from(coarse) * f64::from(self.coarse_scales[row])
                + f64::from(fine) * f64::from(self.fine_scales[row]));
        approx + f64::from(query.lift) + f64::from(query.grow) * f64::from(self.fine_errors[row])
    }

    fn matches(&self, top: &[Scored]) -> Vec<Match> {
        top.iter()
            .map(|t| Match {
                user_id: self.users[t.row].clone(),
                template_id: t.template_id,
                cosine: t.cosine,
            })
            .collect()
    }
}

/// Adds an exactly scored row to `top`, the best template of each of the `k` best users
/// so far (best first; ties by the lower template id). A user who left `top` can only
/// come back with a template better than the k-th, which is then its best.
fn offer_user(top: &mut Vec<Scored>, k: usize, candidate: Scored, users: &[Arc<str>]) {
    let key = |s: &Scored| (s.cosine, s.template_id);
    let user = &users[candidate.row];
    let at = match top.iter().position(|t| users[t.row] == *user) {
        Some(i) if better(key(&candidate), key(&top[i])) => i,
        Some(_) => return,
        None if top.len() < k => {
            top.push(candidate);
            top.len() - 1
        }
        None => match top.last() {
            Some(last) if better(key(&candidate), key(last)) => top.len() - 1,
            _ => return,
        },
    };
    top[at] = candidate;
    // Only `at` moved, and only upwards: one insertion step.
    let mut i = at;
    while i > 0 && better(key(&top[i]), key(&top[i - 1])) {
        top.swap(i, i - 1);
        i -= 1;
    }
}

/// A (score, row) pair as one integer: ordered by score (as `f32::total_cmp`), then by
/// the lower row as the higher key. Selecting on plain integers is several times faster
/// than on a comparison closure, and 64-bit ones twice as fast as 128-bit. `row` is below
/// [`super::MAX_TEMPLATES`] (`insert` refuses more), so it fits the low 32 bits.
pub(super) fn rank_key(score: f32, row: usize) -> u64 {
    let bits = score.to_bits();
    // Positive floats: flip the sign bit; negative: flip every bit (total order).
    let ordered = if bits >> 31 == 0 {
        bits | 0x8000_0000
    } else {
        !bits
    };
    (u64::from(ordered) << 32) | u64::from(u32::MAX - row as u32)
}

/// The (score, row) of a [`rank_key`].
pub(super) fn rank_of_key(key: u64) -> (f32, usize) {
    let ordered = (key >> 32) as u32;
    let bits = if ordered >> 31 == 1 {
        ordered & 0x7FFF_FFFF
    } else {
        !ordered
    };
    (f32::from_bits(bits), (u32::MAX - key as u32) as usize)
}

/// The `take` highest of many scores without a heap: scores above the current floor
/// are appended, and whenever twice `take` are kept, the best `take` are selected
/// (linear time) and the floor rises to the lowest of them. Amortised O(1) per offer;
/// once the floor is high, an offer is one comparison.
struct Selection {
    take: usize,
    /// Every row is taken: no floor, cutoff -inf.
    all: bool,
    /// Keys ([`rank_key`]), unordered.
    kept: Vec<u64>,
    floor: f32,
}

impl Selection {
    /// `kept`: a buffer to reuse (cleared).
    fn new(take: usize, rows: usize, mut kept: Vec<u64>) -> Selection {
        kept.clear();
        let all = take >= rows;
        kept.reserve(if all { rows } else { 2 * take + BLOCK_ROWS });
        Selection {
            take,
            all,
            kept,
            floor: f32::NEG_INFINITY,
        }
    }

    /// A row below or at the floor can never be among the best `take` (rows come in
    /// increasing order, so an equal score loses its tie too).
    #[inline(always)]
    fn offer(&mut self, score: f32, row: usize) {
        if score > self.floor {
            self.kept.push(rank_key(score, row));
        }
    }

    /// Keeps the best `take` once twice as many are held (call between blocks).
    fn prune(&mut self) {
        if !self.all && self.kept.len() >= 2 * self.take {
            self.select();
        }
    }

    fn select(&mut self) {
        if self.take == 0 {
            self.kept.clear();
            return;
        }
        // The best `take` at the end: the `len - take`-th in ascending order and above.
        let cut = self.kept.len() - self.take;
        self.kept.select_nth_unstable(cut);
        self.kept.drain(..cut);
        // kept[0] is now the lowest of the best `take`.
        self.floor = rank_of_key(self.kept[0]).0;
    }

    /// Moves the best `take` (unordered) into `out` and returns the cutoff: no row left
    /// out scores above it (-inf when every row is taken).
    fn finish(mut self, out: &mut Vec<u64>) -> f32 {
        if self.all {
            *out = self.kept;
            return f32::NEG_INFINITY;
        }
        if self.kept.len() > self.take {
            self.select();
        }
        // Rows left out scored at most the floor at the time, and the floor only rises.
        let cutoff = if self.kept.len() < self.take {
            self.floor
        } else {
            self.kept
                .iter()
                .map(|&key| rank_of_key(key).0)
                .fold(f32::INFINITY, f32::min)
                .max(self.floor)
        };
        *out = self.kept;
        cutoff
    }
}

/// The normalised query quantised to int8, with the terms of the bound
/// `|q.v - approx| <= |q - q'| |v| + |q'| |v - v'|` that do not depend on the row.
#[derive(Default)]
pub(super) struct CodedQuery {
    pub(super) codes: QueryCodes,
    /// `|q - q'|` with a margin for f32 rounding of the approximate and exact scores.
    pub(super) lift: f32,
    /// Bound on `|q'|`, which multiplies each row's own error.
    pub(super) grow: f32,
}

impl CodedQuery {
    pub(super) fn encode(&mut self, query: &[f32], padded: usize) {
        self.codes.encode(query, padded);
        // f32 rounding: the exact dot product (|sum| <= 1, dim terms) and the coarse
        // bound's few f32 operations (relative 6e-8 each on values below 2); generous
        // against f32's 6e-8 relative step.
        let rounding = 1e-5 + query.len() as f32 * 2.5e-7;
        let error = self.codes.error;
        self.lift = error * 1.0001 + rounding;
        self.grow = 1.0001 + error;
    }

    /// The terms of every row's coarse bound for this query.
    pub(super) fn terms(&self) -> BoundTerms {
        BoundTerms {
            bias: self.codes.bias,
            scale: self.codes.scale,
            lift: self.lift,
            grow: self.grow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_keys_order_like_total_cmp_then_the_lower_row_and_round_trip() {
        let scores = [
            f32::NEG_INFINITY,
            -1.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.25,
            1.0,
            f32::INFINITY,
        ];
        for (i, a) in scores.iter().enumerate() {
            for b in &scores[i..] {
                for (ra, rb) in [(3usize, 3usize), (2, 7), (7, 2)] {
                    let (ka, kb) = (rank_key(*a, ra), rank_key(*b, rb));
                    let expected = a.total_cmp(b).then(rb.cmp(&ra));
                    assert_eq!(ka.cmp(&kb), expected, "{a} {ra} / {b} {rb}");
                }
            }
            let (s, row) = rank_of_key(rank_key(*a, 12_345));
            assert_eq!((s.to_bits(), row), (a.to_bits(), 12_345));
        }
    }

    fn offered(users: &[Arc<str>], k: usize, scores: &[(usize, f32)]) -> Vec<(usize, u64)> {
        let mut top = Vec::new();
        for &(row, cosine) in scores {
            let scored = Scored {
                cosine,
                template_id: row as u64 + 100,
                row,
            };
            offer_user(&mut top, k, scored, users);
        }
        top.iter().map(|t| (t.row, t.template_id)).collect()
    }

    #[test]
    fn the_running_top_keeps_each_users_best_template_and_the_k_best_users() {
        let users: Vec<Arc<str>> = ["a", "a", "b", "c", "b", "d", "a"]
            .iter()
            .map(|u| Arc::from(*u))
            .collect();
        // Rows 0..: a 0.5, a 0.7 (replaces a's), b 0.6, c 0.4 (k = 2: out), b 0.9, d 0.65
        // (beats a's 0.7? no), a 0.7 again under a higher id (a tie: the lower id stays).
        let scores = [
            (0, 0.5),
            (1, 0.7),
            (2, 0.6),
            (3, 0.4),
            (4, 0.9),
            (5, 0.65),
            (6, 0.7),
        ];
        assert_eq!(offered(&users, 2, &scores), [(4, 104), (1, 101)]);
        assert_eq!(offered(&users, 3, &scores), [(4, 104), (1, 101), (5, 105)]);
        assert_eq!(offered(&users, 10, &scores).len(), 4);
        // A user pushed out comes back with a better template: that one counts.
        let back = [(0, 0.5), (2, 0.6), (3, 0.7), (1, 0.8)];
        assert_eq!(offered(&users, 2, &back), [(1, 101), (3, 103)]);
        // Equal scores: the lower template id first, whatever the order of arrival.
        let tie = [(3, 0.5), (2, 0.5), (5, 0.5)];
        assert_eq!(offered(&users, 2, &tie), [(2, 102), (3, 103)]);
    }
}
