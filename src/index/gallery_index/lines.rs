//! Packed codes in memory that starts on a cache line.
//!
//! A 128-d row of coarse codes is 64 bytes: aligned, each row is one cache line and the
//! scan's two 32-byte loads per row never straddle two lines. A `Vec<u8>` of that size
//! comes from the allocator 16 bytes past a line (glibc's large-block header), which made
//! every other load a split one (measured: the 10k scan took ~30 % longer).
//!
//! The bytes live in a `Vec<u8>` with a line of slack, starting at its first 64-byte
//! boundary, rather than in a `Vec` of 64-byte-aligned lines: Rust grows an over-aligned
//! allocation by allocate-copy-free, and glibc then keeps every freed intermediate block
//! (its mmap threshold rises with each freed mapping), which left ~20 MB of dead heap in a
//! daemon that loaded 1M templates. A byte vector grows by `realloc` (`mremap` for large
//! blocks) and frees nothing on the way; when a reallocation moves the start off a line,
//! the bytes are moved to the next boundary inside the same block.

const LINE: usize = 64;

/// A growable byte buffer whose first byte is 64-byte aligned: the subset of `Vec<u8>`
/// the index uses.
#[derive(Default)]
pub(super) struct LineBytes {
    /// `offset` bytes of padding, then the `len` bytes; its capacity always leaves room
    /// for the largest padding (`LINE - 1`) after a reallocation.
    block: Vec<u8>,
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for LineBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineBytes").field("len", &self.len).finish()
    }
}

impl LineBytes {
    /// Appends `n` bytes (contents unspecified) and returns them.
    pub fn extend(&mut self, n: usize) -> &mut [u8] {
        let start = self.len;
        self.reserve(n);
        self.len += n;
        self.block.resize(self.offset + self.len, 0);
        &mut self.as_mut_slice()[start..]
    }

    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.block.truncate(self.offset + len);
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional + LINE - 1;
        if self.block.capacity() < needed {
            self.block.reserve(needed - self.block.len());
            self.realign();
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.block.shrink_to(self.len + LINE - 1);
        self.realign();
    }

    pub fn capacity(&self) -> usize {
        self.block.capacity()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.block[self.offset..]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.block[self.offset..]
    }

    /// Moves the bytes to the block's first line boundary if a reallocation moved the
    /// block. Needs `capacity >= len + LINE - 1`, which `reserve` and `shrink_to_fit`
    /// keep, so the move never reallocates.
    fn realign(&mut self) {
        if self.block.capacity() == 0 {
            // No allocation yet (len is 0): nothing to align, and resizing would allocate.
            self.offset = 0;
            return;
        }
        let offset = self.block.as_ptr().align_offset(LINE);
        if offset != self.offset {
            let (from, len) = (self.offset, self.len);
            self.block.resize(from.max(offset) + len, 0);
            self.block.copy_within(from..from + len, offset);
            self.block.truncate(offset + len);
            self.offset = offset;
        }
    }
}

impl std::ops::Deref for LineBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for LineBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_start_on_a_line_and_behave_like_a_vec() {
        let mut bytes = LineBytes::default();
        let mut reference = Vec::new();
        for (i, n) in [32usize, 64, 96, 1, 200].into_iter().enumerate() {
            bytes.extend(n).fill(i as u8);
            reference.resize(reference.len() + n, i as u8);
            assert_eq!(bytes.as_slice(), reference.as_slice());
            assert_eq!(bytes.as_ptr() as usize % LINE, 0);
        }
        bytes.copy_within(0..32, 100);
        reference.copy_within(0..32, 100);
        bytes.truncate(130);
        reference.truncate(130);
        assert_eq!(bytes.as_slice(), reference.as_slice());
        assert_eq!(bytes.len(), 130);
        bytes.shrink_to_fit();
        assert_eq!(bytes.as_slice(), reference.as_slice());
        assert_eq!(bytes.as_ptr() as usize % LINE, 0);
        assert!(bytes.capacity() < 130 + LINE, "{}", bytes.capacity());
        bytes.truncate(0);
        assert!(bytes.is_empty());
        bytes.shrink_to_fit();
        assert!(bytes.is_empty());
    }

    #[test]
    fn the_bytes_stay_aligned_and_intact_through_large_reallocations() {
        let mut bytes = LineBytes::default();
        bytes.shrink_to_fit();
        let mut reference = Vec::new();
        // Sizes past glibc's mmap threshold, grown by realloc (mremap) and shrunk back.
        for (i, n) in [1usize, 4_000, 70_000, 300_000, 1 << 20, 3 << 20]
            .into_iter()
            .enumerate()
        {
            let fill = (i as u8).wrapping_mul(37).wrapping_add(1);
            bytes.extend(n).fill(fill);
            reference.resize(reference.len() + n, fill);
            assert_eq!(bytes.as_ptr() as usize % LINE, 0);
            assert!(bytes.as_slice() == reference.as_slice(), "after {n}");
        }
        bytes.truncate(100_001);
        reference.truncate(100_001);
        bytes.shrink_to_fit();
        assert_eq!(bytes.as_ptr() as usize % LINE, 0);
        assert!(bytes.as_slice() == reference.as_slice());
        assert!(bytes.capacity() < 100_001 + LINE);
    }
}
