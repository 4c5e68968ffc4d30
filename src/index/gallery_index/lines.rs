//! Packed codes in memory that starts on a cache line.
//!
//! A 128-d row of coarse codes is 64 bytes: aligned, each row is one cache line and the
//! scan's two 32-byte loads per row never straddle two lines. A `Vec<u8>` of that size
//! comes from the allocator 16 bytes past a line (glibc's large-block header), which made
//! every other load a split one (measured: the 10k scan took ~30 % longer).

use bytemuck::{Pod, Zeroable};

const LINE: usize = 64;

/// One cache line of bytes (the alignment is the point).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; LINE]);

/// A growable byte buffer whose first byte is 64-byte aligned: the subset of `Vec<u8>`
/// the index uses.
#[derive(Clone, Default)]
pub(super) struct LineBytes {
    lines: Vec<Line>,
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
        self.len += n;
        self.lines.resize(self.len.div_ceil(LINE), Line([0; LINE]));
        &mut self.as_mut_slice()[start..]
    }

    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.lines.truncate(len.div_ceil(LINE));
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        let lines = (self.len + additional).div_ceil(LINE);
        self.lines.reserve(lines.saturating_sub(self.lines.len()));
    }

    pub fn shrink_to_fit(&mut self) {
        self.lines.shrink_to_fit();
    }

    pub fn capacity(&self) -> usize {
        self.lines.capacity() * LINE
    }

    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<Line, u8>(&self.lines)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..self.len]
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
        assert_eq!(bytes.capacity(), 192);
        bytes.truncate(0);
        assert!(bytes.is_empty());
    }
}
